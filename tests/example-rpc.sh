#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The RPC examples against the private broker: rpc-server answers exactly
# the requests rpc-client sends, each matched by correlation_id, then both
# exit 0 by themselves.
set -euo pipefail
examples=$1
: "${CAREHARE_TEST_AMQP_URI:?start the broker: test-server/broker start}"
queue="carehare-rpc-$$-$RANDOM"
tmp=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  "$CAREHARE_TEST_BROKER" ctl delete_queue "$queue" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Without a server the request queue does not exist: the client says so.
if "$examples/rpc-client" "$CAREHARE_TEST_AMQP_URI" "$queue" ping 2>"$tmp/err"; then
  echo "rpc-client without a server should fail" >&2
  exit 1
fi
grep -q "start rpc-server first" "$tmp/err"

timeout 30 "$examples/rpc-server" "$CAREHARE_TEST_AMQP_URI" "$queue" --count 4 >"$tmp/server" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "waiting for requests" "$tmp/server" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server" >&2; exit 1; }
  sleep 0.1
done
grep -q "waiting for requests" "$tmp/server"

out=$(timeout 30 "$examples/rpc-client" "$CAREHARE_TEST_AMQP_URI" "$queue" alpha beta gamma delta | sort)
echo "$out"
expected=$'alpha -> ALPHA\nbeta -> BETA\ndelta -> DELTA\ngamma -> GAMMA'
if [ "$out" != "$expected" ]; then
  echo "unexpected rpc-client output" >&2
  exit 1
fi

# --count 4: the server ends by itself, successfully.
status=0
wait "$server_pid" || status=$?
server_pid=
cat "$tmp/server"
if [ "$status" -ne 0 ]; then
  echo "rpc-server exited with $status" >&2
  exit 1
fi
[ "$(grep -c '^request ' "$tmp/server")" -eq 4 ]
