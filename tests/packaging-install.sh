#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs carehare-glib into a temporary prefix, as a distribution would,
# then uses only what was installed: a C program built with
# `pkg-config carehare-glib-1.0`, and the typelib from PyGObject.
#
#   packaging-install.sh SOURCE_DIR
set -euo pipefail
srcdir=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

meson setup "$tmp/build" "$srcdir" --prefix="$prefix" -Dtests=false -Dintrospection=true \
  -Dwerror=true >"$tmp/setup.log" 2>&1 || { cat "$tmp/setup.log"; exit 1; }
meson compile -C "$tmp/build" >"$tmp/compile.log" 2>&1 || { cat "$tmp/compile.log"; exit 1; }
meson install -C "$tmp/build" --quiet >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }

libdir=$(meson introspect "$tmp/build" --buildoptions |
  /usr/bin/python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
echo "installed into $prefix (libdir $libdir):"
(cd "$prefix" && find . -type f -o -type l | sort)

# Nothing from the build tree may leak into what a user compiles against.
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --exists --print-errors carehare-glib-1.0
echo "pkg-config: $(pkg-config --modversion carehare-glib-1.0) $(pkg-config --cflags --libs carehare-glib-1.0)"

cat >"$tmp/user.c" <<'C'
#include <carehare-glib/carehare-glib.h>

int
main (void)
{
  g_autoptr(CarehareProperties) props = carehare_properties_new ();
  g_autoptr(GError) error = g_error_new_literal (CAREHARE_ERROR, CAREHARE_ERROR_CHANNEL_CLOSED_BY_SERVER,
                                                 "Channel closed by server: 404 NOT_FOUND - no queue 'q'");

  carehare_properties_set_correlation_id (props, "abc");
  g_assert_cmpstr (carehare_properties_get_correlation_id (props), ==, "abc");
  g_assert_cmpuint (carehare_error_get_reply_code (error), ==, 404);
  g_assert_true (g_type_is_a (CAREHARE_TYPE_CONNECTION, G_TYPE_ASYNC_INITABLE));
  g_assert_true (G_TYPE_IS_FLAGS (CAREHARE_TYPE_PUBLISH_FLAGS));
  g_assert_true (CAREHARE_CHECK_VERSION (0, 1, 0));
  g_print ("linked against carehare-glib %s\n", CAREHARE_VERSION_S);
  return 0;
}
C
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/user" "$tmp/user.c" $(pkg-config --cflags --libs carehare-glib-1.0)
LD_LIBRARY_PATH=$libdir "$tmp/user"

# The carehare command, its man page and its bash completion.
[ -x "$prefix/bin/carehare" ]
[ -f "$prefix/share/man/man1/carehare.1" ]
[ -f "$prefix/share/bash-completion/completions/carehare" ]
LD_LIBRARY_PATH=$libdir "$prefix/bin/carehare" --version | grep -q '^carehare '
# The man page has a section per command and the exit codes (help2man
# ran); the installed completion completes a command from the installed tool.
grep -q '^\.SS "carehare consume QUEUE:"' "$prefix/share/man/man1/carehare.1"
grep -q '^\.SS "Exit status:"' "$prefix/share/man/man1/carehare.1"
# shellcheck disable=SC2016
[ "$(LD_LIBRARY_PATH=$libdir bash -c 'source "$1"; COMP_WORDS=("$2" purge); COMP_CWORD=1; _carehare; echo "${COMPREPLY[*]}"' \
     _ "$prefix/share/bash-completion/completions/carehare" "$prefix/bin/carehare")" = purge-queue ]

# The installed typelib, found where GObject Introspection installs it.
typelib_dir=$libdir/girepository-1.0
[ -f "$typelib_dir/Carehare-1.0.typelib" ]
[ -f "$prefix/share/gir-1.0/Carehare-1.0.gir" ]
GI_TYPELIB_PATH=$typelib_dir LD_LIBRARY_PATH=$libdir /usr/bin/python3 - "$libdir" <<'PY'
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402

# The typelib must have been loaded from the installed prefix.
repo = gi.Repository.get_default()
typelib = repo.get_typelib_path("Carehare")
assert typelib.startswith(sys.argv[1]), typelib
props = Carehare.Properties(correlation_id="abc", delivery_mode=2)
assert props.props.correlation_id == "abc"
err = GLib.Error.new_literal(Carehare.error_quark(), "x: 406 PRECONDITION_FAILED - y",
                             int(Carehare.Error.CHANNEL_CLOSED_BY_SERVER))
assert Carehare.error_get_reply_code(err) == 406
print("python imported", typelib)
PY

# The bindings' helpers: the PyGObject override (found by a Python that
# only has the prefix's site directory added), the GJS module and the VAPI.
override=$(cd "$prefix" && find . -path '*gi/overrides/Carehare.py' | head -n 1)
[ -n "$override" ] || { echo "the PyGObject override was not installed" >&2; exit 1; }
[ -f "$prefix/share/carehare-glib-1.0/carehare.js" ] ||
  { echo "the GJS module was not installed" >&2; exit 1; }
[ -f "$prefix/share/vala/vapi/carehare-glib-1.0.vapi" ] ||
  { echo "the VAPI was not installed" >&2; exit 1; }
site=$prefix/${override#./}
site=${site%/gi/overrides/Carehare.py}
PYTHONPATH=$site GI_TYPELIB_PATH=$typelib_dir LD_LIBRARY_PATH=$libdir /usr/bin/python3 - "$prefix" <<'PY'
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare  # noqa: E402

# The override, from the prefix, gives the asyncio API.
assert hasattr(Carehare, "connect") and hasattr(Carehare, "ChannelClosedByServer")
import gi.overrides.Carehare as override  # noqa: E402
assert override.__file__.startswith(sys.argv[1]), override.__file__
print("python override from", override.__file__)
PY

# The installed GJS module, imported by its file URI as the README says,
# promisifies the installed typelib's methods.
cat >"$tmp/use-module.js" <<JS
import Carehare from 'file://$prefix/share/carehare-glib-1.0/carehare.js';
const proto = Carehare.Connection.prototype;
if (typeof proto.queue_declare_async !== 'function' || proto._original_queue_declare_async === undefined)
    throw new Error('carehare.js did not promisify queue_declare_async');
print('gjs module promisified Carehare');
JS
GI_TYPELIB_PATH=$typelib_dir LD_LIBRARY_PATH=$libdir gjs -m "$tmp/use-module.js"

# The installed VAPI: a Vala program built with only it and pkg-config.
cat >"$tmp/user.vala" <<'VALA'
int main () {
    var props = new Carehare.Properties ();
    props.correlation_id = "from Vala";
    print ("vala: %s\n", props.correlation_id);
    return props.correlation_id == "from Vala" ? 0 : 1;
}
VALA
valac --vapidir="$prefix/share/vala/vapi" --pkg carehare-glib-1.0 -X -w \
  -d "$tmp" -o vala-user "$tmp/user.vala"
LD_LIBRARY_PATH=$libdir "$tmp/vala-user"

# With the default prefix, /usr/local, the override must land where
# /usr/bin/python3 looks (Debian's reads /usr/local/lib/python3.X/dist-packages,
# not the /usr/local/lib/python3/dist-packages of meson's python module):
# what `sudo meson install` installs, without building again.
meson setup --reconfigure "$tmp/build" "$srcdir" --prefix=/usr/local >"$tmp/reconfigure.log" 2>&1 ||
  { cat "$tmp/reconfigure.log"; exit 1; }
meson introspect "$tmp/build" --installed | /usr/bin/python3 -c '
import json, os, sys
dest = next(d for s, d in json.load(sys.stdin).items() if s.endswith("gi/overrides/Carehare.py"))
site = os.path.dirname(os.path.dirname(os.path.dirname(dest)))
assert site in sys.path, "%s is not on %s" % (dest, sys.path)
print("with --prefix=/usr/local the override goes to", dest)
'
