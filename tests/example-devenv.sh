#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What README.md and docs/getting-started.md tell a newcomer to type, done
# as they would: every example, C, Python and JavaScript, through
# `meson devenv` against the bundled broker, with none of the library's
# paths set beforehand; every example answers --help; and a C program
# built with the uninstalled pkg-config file that devenv puts on
# PKG_CONFIG_PATH. Python is Debian's /usr/bin/python3, which has PyGObject.
#
#   example-devenv.sh MESON BUILDDIR SOURCEDIR HAVE_GIR HAVE_GTK HAVE_VALA
set -euo pipefail
meson=$1
builddir=$2
srcdir=$3
have_gir=$4
have_gtk=$5
have_vala=$6
: "${CAREHARE_TEST_AMQP_URI:?start the broker: test-server/broker start}"
uri=$CAREHARE_TEST_AMQP_URI

tmp=$(mktemp -d)
queues=()
cleanup() {
  rm -rf "$tmp"
  for q in "${queues[@]}"; do
    "$CAREHARE_TEST_BROKER" ctl delete_queue "$q" >/dev/null 2>&1 || true
  done
  [ -z "${server_pid:-}" ] || kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

# What the test environment set for the other tests, devenv must provide.
devenv() {
  env -u LD_LIBRARY_PATH -u GI_TYPELIB_PATH -u PKG_CONFIG_PATH -u PYTHONPATH \
    timeout 60 "$meson" devenv -C "$builddir" -w "$srcdir" "$@"
}

step() { echo "== $*"; }

# --help: usage on stdout, status 0, for every example.
c_examples=(declare-bind-delete publisher consumer round-trip rpc-server rpc-client service)
for name in "${c_examples[@]}"; do
  step "$name --help"
  out=$(devenv "$name" --help)
  grep -q "Usage:" <<<"$out" || { echo "$name --help printed no usage: $out" >&2; exit 1; }
done
if [ "$have_gtk" = true ]; then
  step "gtk-chat --help"
  out=$(devenv gtk-chat --help)
  grep -q "Usage:" <<<"$out"
fi
if [ "$have_vala" = true ]; then
  step "vala-round-trip --help"
  out=$(devenv vala-round-trip --help)
  grep -q "Usage:" <<<"$out"
fi
if [ "$have_gir" = true ]; then
  for f in publisher.py consumer.py; do
    step "$f --help"
    out=$(devenv /usr/bin/python3 "examples/$f" --help)
    grep -q "$f URI QUEUE" <<<"$out"
  done
  for f in publisher.js consumer.js; do
    step "$f --help"
    out=$(devenv gjs -m "examples/$f" --help)
    grep -q "usage: gjs $f URI QUEUE" <<<"$out"
  done
fi

# Each example against the broker.
step "declare-bind-delete"
devenv declare-bind-delete "$uri"
step "round-trip"
devenv round-trip "$uri" 2
if [ "$have_vala" = true ]; then
  step "vala-round-trip"
  out=$(devenv vala-round-trip "$uri")
  [ "$out" = "received: hello from Vala" ]
  # A failure is reported with what to do about it.
  if devenv vala-round-trip "amqp://guest:guest@127.0.0.1:1/" 2>"$tmp/vala.err"; then
    echo "vala-round-trip to a closed port should fail" >&2
    exit 1
  fi
  cat "$tmp/vala.err"
  grep -q "transient: retrying later" "$tmp/vala.err"
fi

run_pair() {
  local label=$1 publish=$2 consume=$3 queue
  queue="carehare-devenv-$label-$$-$RANDOM"
  queues+=("$queue")
  step "$label publisher and consumer"
  # shellcheck disable=SC2086
  devenv $publish "$uri" "$queue" one two
  # shellcheck disable=SC2086
  out=$(devenv $consume "$uri" "$queue" 2)
  echo "$out"
  grep -q "received: two" <<<"$out"
}
run_pair c publisher consumer
if [ "$have_gir" = true ]; then
  run_pair python "/usr/bin/python3 examples/publisher.py" "/usr/bin/python3 examples/consumer.py"
  run_pair gjs "gjs -m examples/publisher.js" "gjs -m examples/consumer.js"
fi

step "rpc-server and rpc-client"
rpc_queue="carehare-devenv-rpc-$$-$RANDOM"
queues+=("$rpc_queue")
devenv rpc-server "$uri" "$rpc_queue" --count 1 >"$tmp/server.log" 2>&1 &
server_pid=$!
out=""
for _ in $(seq 1 50); do
  if out=$(devenv rpc-client "$uri" "$rpc_queue" hello 2>"$tmp/client.err"); then
    break
  fi
  sleep 0.2
done
echo "$out"
grep -q "hello -> HELLO" <<<"$out"
wait "$server_pid"
server_pid=

step "service"
service_queue="carehare-devenv-service-$$-$RANDOM"
queues+=("$service_queue")
devenv publisher "$uri" "$service_queue" only
out=$(devenv service "$uri" "$service_queue" --exit-after 1)
grep -q ": only" <<<"$out"

# A C program built against the build tree, as the guide shows.
step "cc \$(pkg-config --cflags --libs carehare-glib-1.0)"
devenv sh -c 'cc -o "$1" examples/round-trip.c $(pkg-config --cflags --libs carehare-glib-1.0)' \
  sh "$tmp/round-trip"
devenv "$tmp/round-trip" "$uri" 1
echo "all examples ran through meson devenv"
