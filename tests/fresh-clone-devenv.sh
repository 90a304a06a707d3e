#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A newcomer's first commands, literally: a fresh clone of the source tree,
# `meson setup _build && ninja -C _build` with the default options, then
# every C, Python and JavaScript example through `meson devenv -C _build`
# against the bundled broker (the checks of example-devenv.sh, run on that
# new build directory). What README.md and docs/getting-started.md say.
#
#   fresh-clone-devenv.sh MESON NINJA SOURCEDIR HAVE_GIR HAVE_GTK HAVE_VALA
set -euo pipefail
meson=$1
ninja=$2
srcdir=$3
shift 3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The committed tree, as `git clone` gives it; a tree without git history
# (a release tarball) is copied without its build directories.
if git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
  git clone -q "$srcdir" "$tmp/src"
else
  mkdir "$tmp/src"
  tar -C "$srcdir" --exclude='./_*' -cf - . | tar -C "$tmp/src" -xf -
fi
cd "$tmp/src"

# A newcomer's shell has none of the paths the test environment sets.
clean_env() {
  env -u LD_LIBRARY_PATH -u GI_TYPELIB_PATH -u PKG_CONFIG_PATH -u PYTHONPATH "$@"
}
echo "== meson setup _build"
clean_env "$meson" setup _build >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log" >&2; exit 1; }
echo "== ninja -C _build"
clean_env "$ninja" -C _build >"$tmp/ninja.log" 2>&1 || { tail -50 "$tmp/ninja.log" >&2; exit 1; }

bash "$tmp/src/tests/example-devenv.sh" "$meson" "$tmp/src/_build" "$tmp/src" "$@"
