#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Consumes messages from a queue, acknowledging each, until COUNT messages
arrived (0 or none: until Ctrl-C), then closes cleanly.

    consumer.py URI QUEUE [COUNT]

The Python twin of consumer.c: next_delivery_async() is called again from
its own callback, so at most one delivery is handled at a time while the
broker keeps up to the prefetch count ready.
"""
import signal
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


class Consumer:
    def __init__(self, uri, queue, count):
        self.queue = queue
        self.count = count
        self.received = 0
        self.status = 0
        self.conn = None
        self.consumer = None
        self.loop = GLib.MainLoop()
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self.on_sigint)
        Carehare.Connection.new_async(uri, None, self.on_connected)

    def stop(self):
        if self.consumer is not None:
            self.consumer.close_async(None, None)
        if self.conn is not None:
            self.conn.close_async(None, self.on_closed)
        else:
            self.loop.quit()

    def on_sigint(self):
        print("interrupted: closing", flush=True)
        self.stop()
        return GLib.SOURCE_REMOVE

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
        # Prefetch 10: at most ten unacknowledged messages are ever held.
        self.conn.acking_consumer_async(self.queue, 0, 10, None, self.on_consumer)

    def on_consumer(self, conn, result):
        try:
            self.consumer = conn.acking_consumer_finish(result)
        except GLib.Error as e:
            print_error("starting the consumer", e)
            self.status = 1
            self.stop()
            return
        print(f"waiting for messages on {self.queue}", flush=True)
        self.consumer.next_delivery_async(None, self.on_delivery)

    def on_delivery(self, consumer, result):
        try:
            delivery = consumer.next_delivery_finish(result)
        except GLib.Error as e:
            # CHANNEL_CLOSED is the end of the stream we asked for.
            if not e.matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED):
                print_error("consuming", e)
                self.status = 1
                self.stop()
            return
        text = delivery.get_body().get_data().decode("utf-8", "replace")
        again = " (again)" if delivery.get_redelivered() else ""
        print(f"received{again}: {text}", flush=True)
        consumer.ack(delivery.get_delivery_tag())

        self.received += 1
        if self.count and self.received >= self.count:
            self.stop()
        else:
            consumer.next_delivery_async(None, self.on_delivery)


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        print(__doc__.strip())
        return 0
    if len(argv) not in (3, 4):
        print(f"usage: {argv[0]} URI QUEUE [COUNT]", file=sys.stderr)
        return 2
    consumer = Consumer(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 0)
    consumer.loop.run()
    return consumer.status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
