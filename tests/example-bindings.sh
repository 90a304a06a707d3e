#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Python or GJS publisher and consumer examples against the private
# broker: what one publishes, the other receives, in order, exactly as the C
# examples print it; a missing queue fails with its reply code, called not transient.
#
#   example-bindings.sh INTERPRETER PUBLISHER CONSUMER
set -euo pipefail
interpreter=$1
publisher=$2
consumer=$3
: "${CAREHARE_TEST_AMQP_URI:?start the broker: test-server/broker start}"
queue="carehare-example-$(basename "$interpreter")-$$-$RANDOM"
# The GJS examples are ES modules.
run=("$interpreter")
[ "$(basename "$interpreter")" = gjs ] && run+=(-m)
err=$(mktemp)
trap 'rm -f "$err"; "$CAREHARE_TEST_BROKER" ctl delete_queue "$queue" >/dev/null 2>&1 || true' EXIT

out=$(timeout 30 "${run[@]}" "$publisher" "$CAREHARE_TEST_AMQP_URI" "$queue" one two three)
echo "$out"
[ "$out" = $'confirmed: one\nconfirmed: two\nconfirmed: three' ]

out=$(timeout 30 "${run[@]}" "$consumer" "$CAREHARE_TEST_AMQP_URI" "$queue" 3)
echo "$out"
expected=$'waiting for messages on '"$queue"$'\nreceived: one\nreceived: two\nreceived: three'
if [ "$out" != "$expected" ]; then
  echo "unexpected consumer output" >&2
  exit 1
fi

if timeout 30 "${run[@]}" "$consumer" "$CAREHARE_TEST_AMQP_URI" "carehare-no-such-queue-$$" 1 2>"$err"; then
  echo "consuming a missing queue should fail" >&2
  exit 1
fi
cat "$err"
grep -q "404 NOT_FOUND" "$err"
grep -q "retrying will not help" "$err"
