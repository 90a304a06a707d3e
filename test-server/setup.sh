#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# setup.sh: installs every Debian package needed to build, test and run the
# examples of carehare-glib (including the private test RabbitMQ broker).
# Does nothing at all (not even "apt-get update") when everything is already
# installed.
set -euo pipefail

PROG=$(basename "$0")

# The one and only package list.
PACKAGES=(
    meson
    ninja-build
    pkg-config
    gcc
    clang
    libclang-rt-14-dev
    libglib2.0-dev
    gobject-introspection
    libgirepository1.0-dev
    glib-networking
    gnutls-bin
    gi-docgen
    rabbitmq-server
    python3-gi
    python3-gbulb
    python3-pytest
    python3-pytest-asyncio
    python3-pytest-timeout
    valac
    gjs
    valgrind
    librabbitmq-dev
    amqp-tools
    help2man
    python3-pika
    python3-aio-pika
    procps
    iproute2
    git
    ca-certificates
    libgtk-4-dev
    xvfb
    xauth
)

is_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [ "$status" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "$PROG: all ${#PACKAGES[@]} required packages are already installed"
    exit 0
fi

echo "$PROG: missing packages: ${missing[*]}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "$PROG: error: not root and sudo is not available; install as root:" >&2
        echo "  apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

# Keep Debian's maintainer scripts from starting system services (notably the
# system rabbitmq-server, which is not needed: tests run a private node, see
# test-server/broker). Only done when no policy-rc.d exists yet.
POLICY=/usr/sbin/policy-rc.d
created_policy=false
cleanup() {
    if $created_policy; then
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, created by carehare-glib test-server/setup.sh\nexit 101\n' |
        "${SUDO[@]}" tee "$POLICY" >/dev/null
    "${SUDO[@]}" chmod 0755 "$POLICY"
    created_policy=true
fi

"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"

echo "$PROG: installed: ${missing[*]}"
