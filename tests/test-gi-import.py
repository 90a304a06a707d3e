#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The typelib from the build directory loads in PyGObject and its enums,
flags and error helpers behave as the C API does."""
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402

failures = 0


def check(what, cond):
    global failures
    print(("ok - " if cond else "not ok - ") + what)
    if not cond:
        failures += 1


print(Carehare.Error.CHANNEL_CLOSED_BY_SERVER)
check("error enum is registered",
      int(Carehare.Error.CHANNEL_CLOSED_BY_SERVER) == 6)
check("error enum has MESSAGE_TOO_LARGE", int(Carehare.Error.MESSAGE_TOO_LARGE) == 10)
check("error quark", Carehare.error_quark() == GLib.quark_from_string("carehare-error-quark"))
check("publish flags", int(Carehare.PublishFlags.MANDATORY) == 1)
check("queue flags", int(Carehare.QueueFlags.AUTO_DELETE) == 8)
check("exchange flags", int(Carehare.ExchangeFlags.INTERNAL) == 8)
check("version", (Carehare.get_major_version(), Carehare.get_minor_version(),
                  Carehare.get_micro_version()) >= (0, 1, 0))

err = GLib.Error.new_literal(
    Carehare.error_quark(),
    "Channel closed by server: 404 NOT_FOUND - no exchange 'x' in vhost '/'",
    int(Carehare.Error.CHANNEL_CLOSED_BY_SERVER))
check("reply code survives PyGObject", Carehare.error_get_reply_code(err) == 404)
other = GLib.Error.new_literal(Carehare.error_quark(), "closed 404 NOT_FOUND",
                               int(Carehare.Error.CONNECTION_CLOSED))
check("no reply code on other codes", Carehare.error_get_reply_code(other) == 0)
check("Error.matches", err.matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER))

sys.exit(1 if failures else 0)
