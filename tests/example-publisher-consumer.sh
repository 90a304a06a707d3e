#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The publisher and consumer examples against the private broker: what one
# publishes, the other receives, in order.
set -euo pipefail
examples=$1
: "${CAREHARE_TEST_AMQP_URI:?start the broker: test-server/broker start}"
queue="carehare-example-$$-$RANDOM"

"$examples/publisher" "$CAREHARE_TEST_AMQP_URI" "$queue" one two three
out=$("$examples/consumer" "$CAREHARE_TEST_AMQP_URI" "$queue" 3)
echo "$out"
expected=$'waiting for messages on '"$queue"$'\nreceived: one\nreceived: two\nreceived: three'
if [ "$out" != "$expected" ]; then
  echo "unexpected consumer output" >&2
  exit 1
fi
# A missing queue is reported with its reply code, and a failing status.
err=$(mktemp)
trap 'rm -f "$err"' EXIT
if "$examples/consumer" "$CAREHARE_TEST_AMQP_URI" "carehare-no-such-queue-$$" 1 2>"$err"; then
  echo "consuming a missing queue should fail" >&2
  exit 1
fi
grep -q "404 NOT_FOUND" "$err"
grep -q "retrying will not help" "$err"
# Clean up the durable queue.
"$CAREHARE_TEST_BROKER" ctl delete_queue "$queue" >/dev/null
