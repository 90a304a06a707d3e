# SPDX-License-Identifier: LGPL-2.1-or-later
"""Prints the site-packages directory, relative to PREFIX, that this Python
reads (from sys.path), or nothing when it reads none under PREFIX.

    site-dir.py PREFIX

bindings/meson.build installs the PyGObject override there."""
import os
import sys

prefix = os.path.realpath(sys.argv[1])
for entry in sys.path:
    if not entry.endswith(("dist-packages", "site-packages")):
        continue
    relative = os.path.relpath(os.path.realpath(entry), prefix)
    # /usr/local/lib/... is not under the prefix /usr for this purpose.
    if relative.split(os.sep)[0] == "lib":
        print(relative)
        break
