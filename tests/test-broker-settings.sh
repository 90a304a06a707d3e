#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-server/broker keeps the settings a node was started with: after a
# start with non-default ports, `start`, `restart`, `status` and `env`
# use those ports again whatever the caller's environment (only
# CAREHARE_BROKER_DIR, which finds the state directory, is set), and a
# variable set for `start` still replaces the saved value. What
# test-server/README.md and the top-level README promise.
#
# Starts its own node in a temporary state directory, on free ports, and
# removes it at the end: the bundled broker the other tests use is not
# touched.
#
#   test-broker-settings.sh BROKER
set -euo pipefail
broker=$1

# Nothing from the caller's broker: this test's node has its own settings.
while IFS= read -r name; do
  unset "$name"
done < <(compgen -e | grep '^CAREHARE_BROKER_' || true)

state=$(mktemp -d "${TMPDIR:-/tmp}/carehare-broker-settings-XXXXXX")
export CAREHARE_BROKER_DIR=$state
cleanup() {
  "$broker" clean >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

# Free ports: a block of 110 from a random base, every one unused (the
# ctl range is 100 ports from CAREHARE_BROKER_CTL_DIST_PORT_MIN), below
# Linux's ephemeral range (32768 and up), where outgoing connections take
# their local ports.
in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
base=
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 12500))
  ok=true
  for p in $(seq "$candidate" $((candidate + 109))); do
    if in_use "$p"; then ok=false; break; fi
  done
  if $ok; then base=$candidate; break; fi
done
[ -n "$base" ] || { echo "no block of free ports found" >&2; exit 1; }
port=$base tls_port=$((base + 1)) dist_port=$((base + 2)) epmd_port=$((base + 3))
ctl_min=$((base + 10))

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The environment the node must be found with afterwards: its URIs name
# the saved ports, and they answer.
check_saved_ports() {
  local what=$1 env
  env=$("$broker" env)
  grep -q "CAREHARE_TEST_BROKER_PORT='\?$port'\?$" <<<"$env" ||
    { echo "$what: env does not name port $port:" >&2; echo "$env" >&2; exit 1; }
  grep -q "CAREHARE_TEST_BROKER_TLS_PORT='\?$tls_port'\?$" <<<"$env" ||
    { echo "$what: env does not name TLS port $tls_port:" >&2; echo "$env" >&2; exit 1; }
  "$broker" status >/dev/null || { echo "$what: status says not running" >&2; exit 1; }
  accepts "$port" || { echo "$what: nothing listens on $port" >&2; exit 1; }
  accepts "$tls_port" || { echo "$what: nothing listens on $tls_port" >&2; exit 1; }
}

echo "== start with non-default settings (ports from $base)"
CAREHARE_BROKER_NODE="carehare-settings-$$@localhost" \
CAREHARE_BROKER_PORT=$port CAREHARE_BROKER_TLS_PORT=$tls_port \
CAREHARE_BROKER_DIST_PORT=$dist_port CAREHARE_BROKER_EPMD_PORT=$epmd_port \
CAREHARE_BROKER_CTL_DIST_PORT_MIN=$ctl_min CAREHARE_BROKER_LOG_LEVEL=warning \
  "$broker" start
check_saved_ports "after start"

echo "== restart with only CAREHARE_BROKER_DIR set"
"$broker" restart
check_saved_ports "after restart"

echo "== stop, then start with only CAREHARE_BROKER_DIR set"
"$broker" stop
if "$broker" status >/dev/null 2>&1; then
  echo "status says running after stop" >&2
  exit 1
fi
"$broker" start
check_saved_ports "after stop and start"
grep -q '^LOG_LEVEL=warning$' "$state/settings.sh" ||
  { echo "the saved log level was lost:" >&2; cat "$state/settings.sh" >&2; exit 1; }

echo "== the environment still replaces a saved value"
new_port=$((base + 4))
"$broker" stop
CAREHARE_BROKER_PORT=$new_port "$broker" start
port=$new_port
check_saved_ports "after start with a new CAREHARE_BROKER_PORT"
# ... and that value is the one saved from then on.
grep -q "^PORT=$new_port\$" "$state/settings.sh" ||
  { echo "the new port was not saved:" >&2; cat "$state/settings.sh" >&2; exit 1; }

"$broker" stop
echo "the broker kept its saved settings"
