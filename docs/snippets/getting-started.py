#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Getting started: connect, declare a queue, publish one message with a
publisher confirm, consume it with an ack, close.

    getting-started.py URI

Shown in docs/getting-started.md and run by the tests.
"""
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402


class App:
    def __init__(self, uri):
        self.loop = GLib.MainLoop()
        self.conn = None
        self.consumer = None
        self.queue = None
        self.status = 0
        Carehare.Connection.new_async(uri, None, self.on_connected)

    def finish(self, what=None, error=None):
        """Ends the program: close the connection if there is one, then quit."""
        if error is not None:
            print(f"{what} failed: {error.message}", file=sys.stderr)
            self.status = 1
        if self.conn is not None:
            self.conn.close_async(None, self.on_closed)
        else:
            self.loop.quit()

    def on_connected(self, source, result):
        try:
            self.conn = Carehare.Connection.new_finish(result)
        except GLib.Error as e:
            return self.finish("connecting", e)
        # "": the broker picks the name; EXCLUSIVE: the queue goes when we do.
        self.conn.queue_declare_async("", Carehare.QueueFlags.EXCLUSIVE, None, None,
                                      self.on_declared)

    def on_declared(self, conn, result):
        try:
            # The out arguments come after the return value.
            self.queue, _messages, _consumers = conn.queue_declare_finish(result)
        except GLib.Error as e:
            return self.finish("declaring the queue", e)
        print(f"declared {self.queue}")
        props = Carehare.Properties(content_type="text/plain")
        # The default exchange "" routes to the queue named by the routing key;
        # MANDATORY makes an unroutable message an error instead of a loss.
        conn.publish_async("", self.queue, GLib.Bytes.new(b"Hello from carehare-glib"),
                           props, Carehare.PublishFlags.MANDATORY, None, self.on_published)

    def on_published(self, conn, result):
        try:
            # True once the broker has taken responsibility for the message.
            conn.publish_finish(result)
        except GLib.Error as e:
            return self.finish("publishing", e)
        print("the broker confirmed the message")
        # Prefetch 10: the broker sends at most 10 unacknowledged messages.
        conn.acking_consumer_async(self.queue, 0, 10, None, self.on_consumer)

    def on_consumer(self, conn, result):
        try:
            self.consumer = conn.acking_consumer_finish(result)
        except GLib.Error as e:
            return self.finish("starting the consumer", e)
        self.consumer.next_delivery_async(None, self.on_delivery)

    def on_delivery(self, consumer, result):
        try:
            delivery = consumer.next_delivery_finish(result)
        except GLib.Error as e:
            return self.finish("receiving", e)
        print(f'received "{delivery.get_body().get_data().decode()}"')
        # Settle every delivery: ack() never fails and is not awaited.
        consumer.ack(delivery.get_delivery_tag())
        self.finish()

    def on_closed(self, conn, result):
        try:
            conn.close_finish(result)
        except GLib.Error as e:
            # Only if the server or the heartbeat monitor closed it first.
            print(f"the connection had closed: {e.message}", file=sys.stderr)
        self.loop.quit()


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    app = App(sys.argv[1])
    app.loop.run()
    return app.status


if __name__ == "__main__":
    sys.exit(main())
