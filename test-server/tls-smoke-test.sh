#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tls-smoke-test.sh: checks the TLS listener of the running test broker with
# amqp-tools (librabbitmq):
#   1. client certificate signed by the test CA: queue declare + delete works
#   2. no client certificate: connection refused
#   3. client certificate signed by an unrelated CA: connection refused
# Start the broker first (test-server/broker start). Exits non-zero on any
# unexpected result.
set -euo pipefail

PROG=$(basename "$0")
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STEP_TIMEOUT=${CAREHARE_SMOKE_STEP_TIMEOUT:-8}

for tool in amqp-declare-queue amqp-delete-queue; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$PROG: FAIL: $tool not found (install amqp-tools, see test-server/setup.sh)" >&2
        exit 1
    }
done

env_text=$("$SCRIPT_DIR/broker" env) || {
    echo "$PROG: FAIL: the test broker is not started (run: $SCRIPT_DIR/broker start)" >&2
    exit 1
}
eval "$env_text"
CERTS=$CAREHARE_TEST_CERT_DIR
TLS_PORT=$CAREHARE_TEST_BROKER_TLS_PORT

QUEUE="carehare-tls-smoke-$$-$RANDOM"
failures=0
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

# amqp_tls TOOL [EXTRA-ARGS...]: runs an amqp-tools command against the TLS
# port as guest/guest, with the test CA as trust anchor.
amqp_tls() {
    local tool=$1
    shift
    # --server/--port would make amqp-tools build an amqp:// URL that
    # conflicts with --ssl, hence --url.
    timeout "$STEP_TIMEOUT" "$tool" --url="amqps://guest:guest@localhost:$TLS_PORT" \
        --ssl --cacert="$CERTS/ca.pem" "$@"
}

# A rejection only counts when it happened in TLS, not for an unrelated
# reason (bad option, broker down...).
tls_rejection() {
    grep -qiE 'ssl|tls|certificate|handshake|closed' "$OUT" &&
        ! grep -qiE 'option|connection refused' "$OUT"
}

last_error() {
    grep -v '^[[:space:]]*$' "$OUT" | tail -n1 | cut -c1-160
}

pass() { echo "PASS: $*"; }
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# 1. valid client certificate
if amqp_tls amqp-declare-queue --cert="$CERTS/client.pem" --key="$CERTS/client-key.pem" \
    --queue="$QUEUE" >"$OUT" 2>&1; then
    if amqp_tls amqp-delete-queue --cert="$CERTS/client.pem" --key="$CERTS/client-key.pem" \
        --queue="$QUEUE" >"$OUT" 2>&1; then
        pass "TLS with client certificate from the test CA: declared and deleted queue $QUEUE"
    else
        fail "TLS with client certificate: declare worked but delete failed: $(last_error)"
    fi
else
    fail "TLS with client certificate from the test CA was rejected: $(last_error)"
fi

# 2. no client certificate (the broker requires one)
if amqp_tls amqp-declare-queue --queue="$QUEUE-nocert" >"$OUT" 2>&1; then
    fail "TLS without client certificate was ACCEPTED (fail_if_no_peer_cert not effective)"
    amqp_tls amqp-delete-queue --cert="$CERTS/client.pem" --key="$CERTS/client-key.pem" \
        --queue="$QUEUE-nocert" >/dev/null 2>&1 || true
elif tls_rejection; then
    pass "TLS without client certificate rejected ($(last_error))"
else
    fail "TLS without client certificate failed for an unexpected reason: $(last_error)"
fi

# 3. client certificate from an unrelated CA
if amqp_tls amqp-declare-queue --cert="$CERTS/other-client.pem" --key="$CERTS/other-client-key.pem" \
    --queue="$QUEUE-othercert" >"$OUT" 2>&1; then
    fail "TLS with a client certificate from an unrelated CA was ACCEPTED"
    amqp_tls amqp-delete-queue --cert="$CERTS/client.pem" --key="$CERTS/client-key.pem" \
        --queue="$QUEUE-othercert" >/dev/null 2>&1 || true
elif tls_rejection; then
    pass "TLS with client certificate from an unrelated CA rejected ($(last_error))"
else
    fail "TLS with client certificate from an unrelated CA failed for an unexpected reason: $(last_error)"
fi

if [ "$failures" -ne 0 ]; then
    echo "$PROG: $failures check(s) failed"
    exit 1
fi
echo "$PROG: all checks passed"
