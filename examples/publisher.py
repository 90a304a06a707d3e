#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Publishes messages to a durable queue with publisher confirms and reports,
for each, whether the broker took responsibility for it.

    publisher.py URI QUEUE MESSAGE...

The Python twin of publisher.c: every call is asynchronous and completes in
a callback on the GLib main loop; errors arrive as GLib.Error from the
*_finish() call.
"""
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402


def explain(error):
    """What a program should do about a carehare-glib error."""
    if Carehare.error_is_transient(error):
        return "transient: retrying later (with backoff) may succeed"
    return "retrying will not help until the cause is fixed"


def print_error(what, error):
    print(f"{what} failed: {error.message}\n  -> {explain(error)}", file=sys.stderr)


class Publisher:
    def __init__(self, uri, queue, messages):
        self.queue = queue
        self.messages = messages
        self.pending = 0
        self.status = 0
        self.conn = None
        self.loop = GLib.MainLoop()
        Carehare.Connection.new_async(uri, None, self.on_connected)

    def close(self):
        self.conn.close_async(None, self.on_closed)

    def on_closed(self, conn, result):
        try:
            conn.close_finish(result)
        except GLib.Error as e:
            print_error("closing", e)
        self.loop.quit()

    def on_connected(self, _source, result):
        try:
            self.conn = Carehare.Connection.new_finish(result)
        except GLib.Error as e:
            print_error("connecting", e)
            self.status = 1
            self.loop.quit()
            return
        self.conn.queue_declare_async(self.queue, Carehare.QueueFlags.DURABLE, None, None,
                                      self.on_declared)

    def on_declared(self, conn, result):
        try:
            # The out arguments come back as a tuple after the return value.
            queue, _messages, _consumers = conn.queue_declare_finish(result)
        except GLib.Error as e:
            print_error("declaring the queue", e)
            self.status = 1
            self.close()
            return
        props = Carehare.Properties.new()
        props.props.delivery_mode = 2  # persistent: survives a broker restart
        props.props.content_type = "text/plain"
        for text in self.messages:
            self.pending += 1
            conn.publish_async("", queue, GLib.Bytes.new(text.encode()), props,
                               Carehare.PublishFlags.MANDATORY, None, self.on_published, text)

    def on_published(self, conn, result, text):
        try:
            conn.publish_finish(result)
            print(f"confirmed: {text}", flush=True)
        except GLib.Error as e:
            # Only this message failed; the others complete on their own.
            print_error(text, e)
            self.status = 1
        self.pending -= 1
        if self.pending == 0:
            self.close()


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        print(__doc__.strip())
        return 0
    if len(argv) < 4:
        print(f"usage: {argv[0]} URI QUEUE MESSAGE...", file=sys.stderr)
        return 2
    publisher = Publisher(argv[1], argv[2], argv[3:])
    publisher.loop.run()
    return publisher.status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
