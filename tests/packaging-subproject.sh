#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# carehare-glib as a meson subproject: tests/packaging/subproject-user is
# copied to a temporary directory with this source tree linked in as
# subprojects/carehare-glib, then configured (forcing the fallback even if
# the library is installed), built and run.
#
#   packaging-subproject.sh SOURCE_DIR
set -euo pipefail
srcdir=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cp -r "$srcdir/tests/packaging/subproject-user" "$tmp/user"
mkdir -p "$tmp/user/subprojects"
ln -s "$srcdir" "$tmp/user/subprojects/carehare-glib"

meson setup "$tmp/build" "$tmp/user" --force-fallback-for=carehare-glib-1.0 \
  -Dcarehare-glib:introspection=true >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
grep -i "carehare-glib" "$tmp/setup.log" || true
meson compile -C "$tmp/build" >"$tmp/compile.log" 2>&1 || { cat "$tmp/compile.log"; exit 1; }
meson test -C "$tmp/build" --suite carehare-subproject-user --print-errorlogs
"$tmp/build/subproject-user"
