#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The `carehare` command against the private broker (TAP): every command,
# interop with rabbitmq-c's amqp-publish/amqp-consume (amqp-tools), and the
# documented exit code and message for bad input.
#
#   test-cli.sh CAREHARE_BINARY EXAMPLES_BUILDDIR BASH_COMPLETION_FILE
#
# CAREHARE_CLI_WRAPPER (optional), e.g. "valgrind --error-exitcode=99 ...",
# runs every carehare invocation under it.
set -uo pipefail

bin=$1
examples=$2
completion=$3
: "${CAREHARE_TEST_AMQP_URI:?start the broker: test-server/broker start}"
export CAREHARE_URI=$CAREHARE_TEST_AMQP_URI
read -r -a wrapper <<<"${CAREHARE_CLI_WRAPPER:-}"
carehare () { "${wrapper[@]}" "$bin" "$@"; }

tmp=$(mktemp -d)
prefix="carehare-cli-$$-$RANDOM"
bg_pids=()
cleanup () {
  for pid in "${bg_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for q in "$prefix"-q "$prefix"-q2 "$prefix"-rpc "$prefix"-full "$prefix"-durable "$prefix"-autodel; do
    "$CAREHARE_TEST_BROKER" ctl delete_queue "$q" >/dev/null 2>&1 || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

n=0
failed=0
ok () {   # ok DESCRIPTION CONDITION-COMMAND...
  local desc=$1; shift
  n=$((n + 1))
  if "$@"; then
    echo "ok $n - $desc"
  else
    echo "not ok $n - $desc"
    failed=$((failed + 1))
    for f in "$tmp"/out "$tmp"/err; do [ -s "$f" ] && sed 's/^/# /' "$f"; done
  fi
}
# run EXPECTED-STATUS CMD...: runs carehare with stdout/stderr to files.
run () {
  local expected=$1; shift
  carehare "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local status=$?
  [ "$status" -eq "$expected" ] || { echo "# exit $status, expected $expected: carehare $*"; return 1; }
}
out_is () { [ "$(cat "$tmp/out")" = "$1" ] || { echo "# stdout: $(cat "$tmp/out")"; return 1; }; }
err_has () { grep -qF -- "$1" "$tmp/err" || { echo "# stderr lacks: $1"; return 1; }; }

q="$prefix-q"
q2="$prefix-q2"
ex="$prefix-x"

# ---- declare, publish, consume ----------------------------------------------
ok "declare-queue prints the name" eval 'run 0 declare-queue "$q" && out_is "$q"'
ok "declare-queue without a name prints the server-named queue" \
  eval 'run 0 declare-queue --exclusive && grep -q "^amq.gen-" "$tmp/out"'
ok "declare-queue with typed arguments" \
  eval 'run 0 declare-queue "$q2" --argument x-message-ttl=60000 --argument x-queue-mode=lazy && out_is "$q2"'
ok "a different argument on redeclare is refused: exit 3, 406" \
  eval 'run 3 declare-queue "$q2" --argument x-message-ttl=5 && err_has "406 PRECONDITION_FAILED"'

ok "publish from stdin, consume --count 1 prints the body" \
  eval 'echo hi | carehare publish --routing-key "$q" && run 0 consume "$q" --count 1 && out_is hi'
printf 'no newline' >"$tmp/body"
ok "publish --file; a body without a newline is printed with one" \
  eval 'carehare publish -r "$q" --file "$tmp/body" && run 0 consume "$q" -c 1 && cmp -s "$tmp/out" <(printf "no newline\n")'

seq 1000 >"$tmp/lines"
ok "publish --lines: 1000 messages, all confirmed, nothing on a non-terminal stderr" \
  eval 'carehare publish --lines -r "$q" --file "$tmp/lines" 2>"$tmp/err" && [ ! -s "$tmp/err" ]'
ok "consume --count 1000 prints them in order" \
  eval 'run 0 consume "$q" --count 1000 --prefetch 50 && cmp -s "$tmp/out" "$tmp/lines"'
ok "purge-queue prints 0 on an empty queue" eval 'run 0 purge-queue "$q" && out_is 0'

# stderr is a terminal here (script(1) gives the command a pseudo-terminal):
# the progress line says how many were published and confirmed, and the rate.
ok "publish --lines: progress on a terminal's stderr, published, confirmed and msg/s" eval '
  script -qec "$(printf "%q " "${wrapper[@]}" "$bin" publish --lines -r "$q" --file "$tmp/lines")" /dev/null \
    </dev/null >"$tmp/err" &&
  grep -q "carehare: 1000 published, 1000 confirmed, [0-9]* msg/s" "$tmp/err" &&
  run 0 purge-queue "$q" && out_is 1000'

ok "publish --lines from stdin, then purge-queue prints the count" \
  eval 'seq 7 | carehare publish --lines -r "$q" && run 0 purge-queue "$q" && out_is 7'

ok "consume --json: routing key, redelivered, properties and typed headers" eval '
  echo "{\"a\": 1}" | carehare publish -r "$q" -p content-type=application/json -p delivery-mode=persistent \
    -p correlation-id=c1 -p priority=3 -H who=me -H n:int=42 -H yes:bool=true &&
  run 0 consume "$q" --count 1 --json &&
  /usr/bin/python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
assert m[\"body\"] == \"{\\\"a\\\": 1}\\n\", m
assert m[\"routing_key\"] == sys.argv[2] and m[\"exchange\"] == \"\" and m[\"redelivered\"] is False, m
p = m[\"properties\"]
assert p == {\"content_type\": \"application/json\", \"delivery_mode\": 2, \"correlation_id\": \"c1\", \"priority\": 3}, p
assert m[\"headers\"] == {\"who\": \"me\", \"n\": 42, \"yes\": True}, m
" "$tmp/out" "$q"'

ok "consume --json: a body that is not UTF-8 is given as body_base64" eval '
  printf "\\377\\376" | carehare publish -r "$q" && run 0 consume "$q" --count 1 --json &&
  /usr/bin/python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
assert m[\"body_base64\"] == \"//4=\" and \"body\" not in m, m
" "$tmp/out"'

ok "consume: a message it cannot print is requeued, not acked (exit 1)" eval '
  echo unprinted | carehare publish -r "$q" &&
  carehare consume "$q" --count 1 >/dev/full 2>"$tmp/err"; [ $? = 1 ] &&
  err_has "cannot write to standard output; message requeued" &&
  run 0 consume "$q" --count 1 && out_is unprinted'

# ---- --exec ---------------------------------------------------------------------
ok "consume --exec: body on the command's stdin, acked on exit 0" eval '
  echo payload | carehare publish -r "$q" &&
  run 0 consume "$q" --count 1 --exec "cat > \"$tmp/exec\"" && [ "$(cat "$tmp/exec")" = payload ] &&
  run 0 purge-queue "$q" && out_is 0'
ok "consume --exec: nacked and requeued when the command fails" eval '
  echo again | carehare publish -r "$q" &&
  run 0 consume "$q" --count 1 --exec "exit 3" &&
  run 0 consume "$q" --count 1 --json && grep -q "\"redelivered\":true" "$tmp/out" &&
  run 0 purge-queue "$q" && out_is 0'
ok "consume --exec: a command that exits 0 without reading a large body acks it" eval '
  head -c 300000 /dev/zero | tr "\\0" x | carehare publish -r "$q" &&
  run 0 consume "$q" --count 1 --exec "exit 0" &&
  run 0 purge-queue "$q" && out_is 0'

# ---- input --------------------------------------------------------------------------
ok "publish with standard input closed: exit 1, said so" eval '
  carehare publish -r "$q" >"$tmp/out" 2>"$tmp/err" <&-; [ $? = 1 ] &&
  err_has "standard input is closed"'
# SIGTERM while publish waits for its input: handled (130, "interrupted"),
# not a kill by the signal (143), once the tool's signal thread is up.
term_while_reading () {
  local pid status
  # A FIFO this shell also holds open for writing: the read never ends.
  mkfifo "$tmp/input.fifo"
  exec 8<>"$tmp/input.fifo"
  "${wrapper[@]}" "$bin" publish -r "$q" >"$tmp/out" 2>"$tmp/err" <"$tmp/input.fifo" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -qx gmain /proc/"$pid"/task/*/comm 2>/dev/null && break
    sleep 0.1
  done
  kill -TERM "$pid"
  wait "$pid"; status=$?
  exec 8>&-
  [ "$status" -eq 130 ] || { echo "# exit $status, expected 130"; return 1; }
  err_has "reading input: interrupted"
}
ok "SIGTERM while publish reads its input: exit 130" term_while_reading

# ---- nacks ------------------------------------------------------------------------
full="$prefix-full"
ok "publish to a full queue with x-overflow=reject-publish: exit 4, basic.nack" eval '
  run 0 declare-queue "$full" --argument x-max-length=1 --argument x-overflow=reject-publish &&
  echo first | carehare publish -r "$full" &&
  echo second | carehare publish -r "$full" 2>"$tmp/err"; [ $? = 4 ] && err_has "publish: The broker refused the message (basic.nack)"'
# Reading stops at the first failure: how many of b and c were sent depends
# on when the nack arrives.
ok "publish --lines names the first nacked line" eval '
  run 0 purge-queue "$full" && out_is 1 &&
  printf "a\nb\nc\n" | carehare publish --lines -r "$full" 2>"$tmp/err"; [ $? = 4 ] &&
  grep -Eq "^carehare: line 2 \((1 of 2|2 of 3) published messages failed\): The broker refused the message \(basic.nack\)" "$tmp/err" &&
  run 0 delete-queue "$full" && out_is 1'

# ---- queue flags reach the broker: a redeclare without them is refused -----------------
ok "declare-queue --durable" eval '
  run 0 declare-queue "$prefix-durable" --durable &&
  run 3 declare-queue "$prefix-durable" && err_has "inequivalent arg '"'"'durable'"'"'" &&
  run 0 delete-queue "$prefix-durable"'
ok "declare-queue --auto-delete" eval '
  run 0 declare-queue "$prefix-autodel" --auto-delete &&
  run 3 declare-queue "$prefix-autodel" && err_has "inequivalent arg '"'"'auto_delete'"'"'" &&
  run 0 delete-queue "$prefix-autodel"'

# ---- TLS through the URI ------------------------------------------------------------
ok "TLS options in the URI's query (amqps:// with a client certificate)" \
  eval 'run 0 --uri "${CAREHARE_TEST_AMQPS_URI:?}" declare-queue --exclusive && grep -q "^amq.gen-" "$tmp/out"'

# ---- exchanges and bindings -------------------------------------------------------
ok "declare-exchange" run 0 declare-exchange "$ex" --type topic
ok "bind" run 0 bind "$q" "$ex" "k.*"
ok "publish --mandatory through the binding" \
  eval 'echo routed | carehare publish -e "$ex" -r k.one --mandatory && run 0 consume "$q" -c 1 && out_is routed'
ok "unbind" run 0 unbind "$q" "$ex" "k.*"
ok "publish --mandatory with no binding: exit 4, 312 NO_ROUTE" \
  eval 'echo lost | carehare publish -e "$ex" -r k.one --mandatory 2>"$tmp/err"; [ $? = 4 ] && err_has "312 NO_ROUTE"'
ok "publish --lines --mandatory names the first failed line" \
  eval 'printf "a\nb\n" | carehare publish --lines -e "$ex" -r nowhere --mandatory 2>"$tmp/err"; [ $? = 4 ] && err_has "line 1" && err_has "NO_ROUTE"'
ok "exchange-to-exchange bind and unbind" \
  eval 'run 0 declare-exchange "$ex-2" --type fanout && run 0 bind --to-exchange "$ex-2" "$ex" "#" && run 0 unbind --to-exchange "$ex-2" "$ex" "#" && run 0 delete-exchange "$ex-2"'
ok "delete-exchange" run 0 delete-exchange "$ex"
ok "publish to a missing exchange: exit 3, 404" \
  eval 'echo x | carehare publish -e "$ex" -r k 2>"$tmp/err"; [ $? = 3 ] && err_has "404 NOT_FOUND - no exchange"'

# ---- call ---------------------------------------------------------------------------
rpc="$prefix-rpc"
"$examples/rpc-server" "$CAREHARE_TEST_AMQP_URI" "$rpc" --count 2 >"$tmp/server" 2>&1 &
bg_pids+=($!)
for _ in $(seq 100); do grep -q "waiting for requests" "$tmp/server" && break; sleep 0.1; done
ok "call: the reply to a request over direct reply-to" \
  eval 'echo -n shout | carehare call "$rpc" --timeout 30 >"$tmp/out" 2>"$tmp/err" && out_is SHOUT'
ok "call --json: the reply as consume --json prints it" eval '
  echo -n loud | carehare call "$rpc" --json --timeout 30 >"$tmp/out" 2>"$tmp/err" &&
  /usr/bin/python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))
assert m[\"body\"] == \"LOUD\" and m[\"redelivered\"] is False and \"headers\" in m, m
assert m[\"routing_key\"].startswith(\"amq.rabbitmq.reply-to\"), m
" "$tmp/out"'
ok "call --timeout with nobody answering: exit 5" \
  eval 'run 0 declare-queue --auto-delete "$prefix-nobody" &&
        echo -n x | carehare call "$prefix-nobody" --timeout 1 >"$tmp/out" 2>"$tmp/err"; [ $? = 5 ] && err_has "no reply within 1 seconds"'
ok "call to a routing key no queue takes: exit 4 at once, not a wait for ever" \
  eval 'echo -n x | carehare call "$prefix-no-such-queue" >"$tmp/out" 2>"$tmp/err"; [ $? = 4 ] && err_has "312 NO_ROUTE"'

# ---- Ctrl-C ---------------------------------------------------------------------------
"${wrapper[@]}" "$bin" consume "$q" --prefetch 7 >"$tmp/sigint" 2>&1 &
consumer_pid=$!
bg_pids+=($consumer_pid)
echo before-sigint | carehare publish -r "$q"
for _ in $(seq 100); do grep -q before-sigint "$tmp/sigint" && break; sleep 0.1; done
ok "consume --prefetch: the broker sees the consumer's prefetch count" \
  eval '"$CAREHARE_TEST_BROKER" ctl list_consumers -q queue_name prefetch_count | grep -qx "$q	7"'
kill -INT "$consumer_pid"
wait "$consumer_pid"
sigint_status=$?
ok "consume stops cleanly on SIGINT with exit 0 after printing and acking" \
  eval '[ $sigint_status = 0 ] && [ "$(cat "$tmp/sigint")" = before-sigint ] && run 0 purge-queue "$q" && out_is 0'

# ---- the connection lost while consuming ------------------------------------------------
lost="$prefix-lost"
"${wrapper[@]}" "$bin" --uri "${CAREHARE_TEST_AMQP_URI}?connection_name=$lost" consume "$q" >"$tmp/lost" 2>&1 &
lost_pid=$!
bg_pids+=($lost_pid)
echo before-close | carehare publish -r "$q"
for _ in $(seq 100); do grep -q before-close "$tmp/lost" && break; sleep 0.1; done
conn_pid=$("$CAREHARE_TEST_BROKER" ctl list_connections -q --no-table-headers pid client_properties |
           grep -F "$lost" | grep -o '^<[^>]*>')
"$CAREHARE_TEST_BROKER" ctl close_connection "$conn_pid" "closed by test-cli" >/dev/null
wait "$lost_pid"
lost_status=$?
ok "consume: the connection closed by an operator: exit 2 with the broker's reason" \
  eval '[ $lost_status = 2 ] && grep -q "closed by test-cli" "$tmp/lost" && grep -q "transient" "$tmp/lost" ||
        { sed "s/^/# /" "$tmp/lost"; false; }'

# ---- interop with rabbitmq-c's amqp-tools ------------------------------------------------
# rabbitmq-c reads the "/" of amqp://host:port/ as the empty vhost name.
amqp_tools_url=${CAREHARE_TEST_AMQP_URI%/}
ok "amqp-publish -> carehare consume" \
  eval 'amqp-publish --url="$amqp_tools_url" -r "$q" -b from-rabbitmq-c && run 0 consume "$q" -c 1 && out_is from-rabbitmq-c'
ok "carehare publish -> amqp-consume" \
  eval 'echo -n from-carehare | carehare publish -r "$q" -H h=v &&
        timeout 30 amqp-consume --url="$amqp_tools_url" -q "$q" -c 1 cat >"$tmp/out" && out_is from-carehare'

# ---- delete ---------------------------------------------------------------------------
ok "delete-queue prints how many messages it held" \
  eval 'seq 3 | carehare publish --lines -r "$q" && run 0 delete-queue "$q" && out_is 3'
ok "delete-queue --if-empty on a queue with messages: exit 3, 406" \
  eval 'echo m | carehare publish -r "$q2" && run 3 delete-queue "$q2" --if-empty && err_has "406 PRECONDITION_FAILED"'
ok "delete-queue" eval 'run 0 delete-queue "$q2" && out_is 1'

# ---- bad input --------------------------------------------------------------------------
ok "no such queue: exit 3 with the broker's 404, not worth retrying" \
  eval 'run 3 consume "$q" --count 1 && err_has "404 NOT_FOUND - no queue" &&
        err_has "retrying will not help"'
ok "wrong password: exit 2, 403, password not shown" \
  eval 'run 2 --uri "amqp://guest:not-the-password@127.0.0.1:$CAREHARE_TEST_BROKER_PORT/" purge-queue "$q" &&
        err_has "403 ACCESS_REFUSED" && ! grep -q not-the-password "$tmp/err"'
ok "--uri wins over CAREHARE_URI" \
  eval 'CAREHARE_URI=amqp://127.0.0.1:1/ run 0 --uri "$CAREHARE_TEST_AMQP_URI" declare-queue --exclusive && grep -q "^amq.gen-" "$tmp/out"'
# Without --uri and CAREHARE_URI the tool uses amqp://localhost (port 5672):
# either nothing listens there (exit 2, naming that URI) or a broker does,
# which has no such queue (exit 3, 404).
default_uri () {
  local status
  env -u CAREHARE_URI "${wrapper[@]}" "$bin" purge-queue "$prefix-none" >"$tmp/out" 2>"$tmp/err" </dev/null
  status=$?
  case $status in
    2) err_has "connecting to amqp://localhost" ;;
    3) err_has "404 NOT_FOUND" && err_has "$prefix-none" ;;
    *) echo "# exit $status, expected 2 or 3"; return 1 ;;
  esac
}
ok "no --uri, no CAREHARE_URI: amqp://localhost" default_uri
ok "nothing listening: exit 2, transient" \
  eval 'CAREHARE_URI=amqp://127.0.0.1:1/ run 2 purge-queue "$q" && err_has "127.0.0.1:1" &&
        err_has "transient: retrying later"'
ok "malformed --header: exit 1" \
  eval 'run 1 publish --header no-equals-sign && err_has "malformed --header '"'"'no-equals-sign'"'"': expected NAME=VALUE"'
ok "--header with an unknown type: exit 1" \
  eval 'run 1 publish --header n:complex=1 && err_has "unknown type '"'"'complex'"'"'"'
ok "--property that does not exist: exit 1" \
  eval 'run 1 publish --property colour=red && err_has "unknown property '"'"'colour'"'"'"'
ok "invalid URI: exit 1 with the library's message" \
  eval 'run 1 --uri "foo://x" purge-queue "$q" && err_has "Invalid AMQP URI"'
ok "unknown command: exit 1" eval 'run 1 frobnicate && err_has "unknown command"'
ok "unknown option: exit 1" eval 'run 1 consume "$q" --no-such-option'
ok "missing argument: exit 1" eval 'run 1 purge-queue'
ok "unreadable --file: exit 1" eval 'run 1 publish -r "$q" --file "$tmp/does-not-exist"'
help_lists_commands () {
  local c
  for c in publish consume declare-queue delete-queue purge-queue declare-exchange delete-exchange bind unbind call; do
    grep -q "^carehare $c.*:$" "$tmp/out" || return 1
  done
  grep -q "^Exit status:" "$tmp/out"
}
ok "--help lists every command and the exit status" eval 'run 0 --help && help_lists_commands'

# ---- stopping against a broker that answers nothing -----------------------------------
# A request the library has sent waits for the broker's answer; Ctrl-C and
# SIGTERM must still stop the tool at once, with exit 130.
silent_log=$tmp/silent.log
python3 "$(dirname "${BASH_SOURCE[0]}")/silent-broker.py" "$tmp/silent.port" >"$silent_log" 2>&1 &
bg_pids+=($!)
for _ in $(seq 1 100); do [ -s "$tmp/silent.port" ] && break; sleep 0.1; done
silent_uri="amqp://guest:guest@127.0.0.1:$(cat "$tmp/silent.port" 2>/dev/null)/"
# interrupted SIGNAL "CLASS METHOD" ARGS...: runs carehare against the silent
# broker, waits until the broker has read the method CLASS METHOD (the
# request, sent), sends SIGNAL and expects exit 130 naming the interruption.
interrupted () {
  local signal=$1 request=$2 pid status before
  shift 2
  before=$(grep -c "^method $request\$" "$silent_log")
  "${wrapper[@]}" "$bin" --uri "$silent_uri" "$@" >"$tmp/out" 2>"$tmp/err" <"${input:-/dev/null}" &
  pid=$!
  for _ in $(seq 1 600); do
    [ "$(grep -c "^method $request\$" "$silent_log")" -gt "$before" ] && break
    sleep 0.1
  done
  kill "-$signal" "$pid"
  # A bound on a hang, not a timing: the tool stops within 60 s or is
  # killed (exit 137, a failure). No background timer: one would keep the
  # test's output open after the test ended.
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid"; status=$?
  [ "$status" -eq 130 ] || { echo "# exit $status, expected 130: carehare $*"; return 1; }
  err_has "interrupted"
}
ok "Ctrl-C while declare-queue waits for the broker: exit 130" \
  interrupted INT "50 10" declare-queue "$prefix-silent"
ok "SIGTERM while purge-queue waits for the broker: exit 130" \
  interrupted TERM "50 30" purge-queue "$prefix-silent"
ok "Ctrl-C while bind waits for the broker: exit 130" \
  interrupted INT "50 20" bind "$prefix-silent" amq.direct
ok "Ctrl-C while publish waits for its confirm: exit 130" \
  interrupted INT "85 10" publish -r "$prefix-silent"
ok "SIGTERM while call waits for its reply: exit 130" \
  interrupted TERM "85 10" call "$prefix-silent"
seq 1 10 >"$tmp/lines"
ok "SIGTERM while publish --lines waits for its confirms: exit 130" \
  eval 'input=$tmp/lines interrupted TERM "85 10" publish --lines -r "$prefix-silent"'

# ---- bash completion ------------------------------------------------------------------
# completes WORD...: what the completion offers for the last WORD.
completes () {
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _carehare; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$completion" "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
}
ok "bash completion: commands" eval 'completes de && out_is "$(printf "declare-queue\ndelete-queue\ndeclare-exchange\ndelete-exchange")"'
ok "bash completion: a command's options" eval 'completes consume q --j && out_is --json'
ok "bash completion: options after --uri URI" eval 'completes --uri amqp://x publish --rout && out_is --routing-key'

echo "1..$n"
exit $((failed > 0))
