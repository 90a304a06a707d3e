#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# prepare-certs.sh DIR
#
# Creates a throw-away PKI for the carehare test broker with GnuTLS certtool:
#
#   ca.pem / ca-key.pem                       test CA (trusted by the broker)
#   server.pem / server-key.pem               localhost + 127.0.0.1, TLS server
#   client.pem / client-key.pem               CN=guest, TLS client
#   other-ca.pem / other-ca-key.pem           unrelated second CA
#   other-client.pem / other-client-key.pem   CN=guest, signed by the other CA
#   expired-server.pem / expired-server-key.pem     localhost, already expired
#   wronghost-server.pem / wronghost-server-key.pem CN/DNS wrong.example
#
# Idempotent: when DIR already holds a complete, consistent and (where
# expected) currently valid set, nothing is changed. Otherwise the whole set
# is regenerated in a temporary directory and moved into place.
set -euo pipefail

PROG=$(basename "$0")

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: $PROG DIR"
command -v certtool >/dev/null 2>&1 ||
    die "certtool not found (install the Debian package gnutls-bin, see test-server/setup.sh)"

DIR=$1
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

# name:signing-ca  (the CA used to verify the certificate; "self" for CAs)
CERTS=(
    ca:self
    other-ca:self
    server:ca
    client:ca
    other-client:other-ca
    expired-server:ca
    wronghost-server:ca
)

# Prints the key ID of a certificate or of the public half of a private key.
cert_key_id() {
    certtool --key-id --infile "$1" 2>/dev/null
}
privkey_key_id() {
    certtool --pubkey-info --load-privkey "$1" 2>/dev/null |
        certtool --key-id --load-pubkey /dev/stdin 2>/dev/null
}

# Returns 0 when $1 holds a complete and usable set.
set_is_complete() {
    local d=$1 entry name ca cid kid
    for entry in "${CERTS[@]}"; do
        name=${entry%%:*}
        [ -s "$d/$name.pem" ] && [ -s "$d/$name-key.pem" ] || return 1
        cid=$(cert_key_id "$d/$name.pem") || return 1
        kid=$(privkey_key_id "$d/$name-key.pem") || return 1
        [ -n "$cid" ] && [ "$cid" = "$kid" ] || return 1
    done
    for entry in "${CERTS[@]}"; do
        name=${entry%%:*}
        ca=${entry#*:}
        [ "$ca" = self ] && ca=$name
        if [ "$name" = expired-server ]; then
            # Must chain to the CA but must NOT verify (expired).
            certtool --verify --load-ca-certificate "$d/$ca.pem" \
                --infile "$d/$name.pem" >/dev/null 2>&1 && return 1
            certtool -i --infile "$d/$name.pem" 2>/dev/null |
                grep -q "Issuer: CN=carehare test CA" || return 1
        else
            certtool --verify --load-ca-certificate "$d/$ca.pem" \
                --infile "$d/$name.pem" >/dev/null 2>&1 || return 1
        fi
    done
    return 0
}

if set_is_complete "$DIR"; then
    echo "$PROG: certificates in $DIR are complete and valid, nothing to do"
    exit 0
fi

echo "$PROG: generating test certificates in $DIR"

TMP=$(mktemp -d "$DIR/.tmp-certs.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

genkey() {
    certtool --generate-privkey --key-type=rsa --bits=2048 --no-text \
        --outfile "$TMP/$1-key.pem" 2>/dev/null ||
        die "failed to generate private key $1-key.pem"
}

# make_ca NAME CN
make_ca() {
    local name=$1 cn=$2
    genkey "$name"
    cat >"$TMP/$name.tmpl" <<EOF
cn = "$cn"
organization = "carehare-glib tests"
serial = $(date +%s)$RANDOM
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
EOF
    certtool --generate-self-signed --load-privkey "$TMP/$name-key.pem" \
        --template "$TMP/$name.tmpl" --no-text --outfile "$TMP/$name.pem" >/dev/null 2>&1 ||
        die "failed to create CA certificate $name.pem"
}

# make_leaf NAME CA TEMPLATE-BODY
make_leaf() {
    local name=$1 ca=$2 body=$3
    genkey "$name"
    {
        echo "organization = \"carehare-glib tests\""
        echo "serial = $(date +%s)$RANDOM"
        printf '%s\n' "$body"
    } >"$TMP/$name.tmpl"
    certtool --generate-certificate --load-privkey "$TMP/$name-key.pem" \
        --load-ca-certificate "$TMP/$ca.pem" --load-ca-privkey "$TMP/$ca-key.pem" \
        --template "$TMP/$name.tmpl" --no-text --outfile "$TMP/$name.pem" >/dev/null 2>&1 ||
        die "failed to create certificate $name.pem"
}

SERVER_USAGE='tls_www_server
signing_key
encryption_key'
CLIENT_USAGE='tls_www_client
signing_key
encryption_key'

make_ca ca "carehare test CA"
make_ca other-ca "carehare unrelated CA"

make_leaf server ca "cn = \"localhost\"
dns_name = \"localhost\"
ip_address = \"127.0.0.1\"
expiration_days = 3650
$SERVER_USAGE"

make_leaf client ca "cn = \"guest\"
expiration_days = 3650
$CLIENT_USAGE"

make_leaf other-client other-ca "cn = \"guest\"
expiration_days = 3650
$CLIENT_USAGE"

make_leaf expired-server ca "cn = \"localhost\"
dns_name = \"localhost\"
ip_address = \"127.0.0.1\"
activation_date = \"2020-01-01 00:00:00 UTC\"
expiration_date = \"2020-01-02 00:00:00 UTC\"
$SERVER_USAGE"

make_leaf wronghost-server ca "cn = \"wrong.example\"
dns_name = \"wrong.example\"
expiration_days = 3650
$SERVER_USAGE"

rm -f "$TMP"/*.tmpl
chmod 0644 "$TMP"/*.pem
chmod 0600 "$TMP"/*-key.pem

set_is_complete "$TMP" || die "generated certificate set failed its own validation"

for entry in "${CERTS[@]}"; do
    name=${entry%%:*}
    mv -f "$TMP/$name-key.pem" "$DIR/$name-key.pem"
    mv -f "$TMP/$name.pem" "$DIR/$name.pem"
done

echo "$PROG: done: $(for entry in "${CERTS[@]}"; do printf '%s.pem ' "${entry%%:*}"; done)(+ keys)"
