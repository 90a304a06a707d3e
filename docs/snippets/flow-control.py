#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Flow control: a publisher that keeps at most WINDOW publishes in flight
and gives up on what the broker has not taken by a deadline, then streams
large messages pausing while the connection's output is above its
high-water mark, and a consumer whose memory the prefetch count bounds.

    flow-control.py URI

Shown in docs/flow-control.md and run by the tests.
"""
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, Gio, GLib  # noqa: E402

TOTAL = 1000     # messages to send
WINDOW = 50      # publishes in flight at most
PREFETCH = 20    # unacknowledged deliveries at most
DEADLINE_S = 60  # for the whole batch
LARGE_COUNT = 16  # large messages, streamed
LARGE_SIZE = 256 * 1024


class App:
    def __init__(self, uri):
        self.loop = GLib.MainLoop()
        self.status = 0
        self.conn = None
        self.consumer = None
        self.queue = None
        self.give_up = Gio.Cancellable()  # cancelled at the deadline
        self.deadline_id = 0
        self.sent = self.in_flight = self.confirmed = self.received = 0
        self.large_body = GLib.Bytes.new(bytes(LARGE_SIZE))
        self.large_sent = self.large_confirmed = self.pauses = 0
        Carehare.Connection.new_async(uri, None, self.on_connected)

    def finish(self, what=None, error=None):
        if error is not None:
            if self.status == 0:
                print(f"{what} failed: {error.message}", file=sys.stderr)
            self.status = 1
        if self.deadline_id:
            GLib.source_remove(self.deadline_id)
            self.deadline_id = 0
        if self.conn is not None and not self.conn.props.is_closed:
            self.conn.close_async(None, lambda conn, result: self.loop.quit())
        else:
            self.loop.quit()

    def on_connected(self, source, result):
        try:
            self.conn = Carehare.Connection.new_finish(result)
        except GLib.Error as e:
            return self.finish("connecting", e)
        self.conn.connect("notify::is-blocked", self.on_blocked_changed)
        self.conn.queue_declare_async("", Carehare.QueueFlags.EXCLUSIVE, None, None,
                                      self.on_declared)

    def on_blocked_changed(self, conn, pspec):
        # The broker's memory or disk alarm: while blocked, publishes wait in
        # the library, unwritten, and complete once it unblocks.
        print(f"the broker {'blocked' if conn.props.is_blocked else 'unblocked'} "
              "this connection")

    def on_declared(self, conn, result):
        try:
            self.queue, _, _ = conn.queue_declare_finish(result)
        except GLib.Error as e:
            return self.finish("declaring the queue", e)
        self.deadline_id = GLib.timeout_add_seconds(DEADLINE_S, self.on_deadline)
        self.publish_more()

    def on_deadline(self):
        # Publishes not yet written complete with Gio.IOErrorEnum.CANCELLED;
        # those already written complete with the broker's answer.
        self.deadline_id = 0
        self.give_up.cancel()
        return GLib.SOURCE_REMOVE

    def publish_more(self):
        """Fills the window: never more than WINDOW publishes (and their
        bodies) waiting for the broker."""
        while self.in_flight < WINDOW and self.sent < TOTAL:
            body = GLib.Bytes.new(f"message {self.sent}".encode())
            self.conn.publish_async("", self.queue, body, None, Carehare.PublishFlags.NONE,
                                    self.give_up, self.on_published)
            self.sent += 1
            self.in_flight += 1

    def on_published(self, conn, result):
        self.in_flight -= 1
        try:
            conn.publish_finish(result)
        except GLib.Error as e:
            if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED):
                print("not sent by the deadline: the broker is blocking us", file=sys.stderr)
            return self.finish("publishing", e)
        if self.status != 0:
            return
        self.confirmed += 1
        if self.confirmed == TOTAL:
            print(f"{self.confirmed} messages confirmed, never more than {WINDOW} in flight")
            GLib.source_remove(self.deadline_id)
            self.deadline_id = 0
            conn.connect("notify::pending-write-bytes", self.on_pending_write)
            self.stream_more()
        else:
            self.publish_more()

    def stream_more(self):
        """Publishes while the connection's output is at most the high-water
        mark; on_pending_write resumes once it has drained."""
        while self.large_sent < LARGE_COUNT:
            if self.conn.props.pending_write_bytes > Carehare.CONNECTION_WRITE_HIGH_WATER_MARK:
                self.pauses += 1
                return
            self.conn.publish_async("", self.queue, self.large_body, None,
                                    Carehare.PublishFlags.NONE, None, self.on_large_published)
            self.large_sent += 1

    def on_pending_write(self, conn, pspec):
        # Emitted once when the output rises above the high-water mark and
        # once when it is back at the low-water mark or below (or the
        # connection closed): resume then.
        if conn.props.pending_write_bytes <= Carehare.CONNECTION_WRITE_LOW_WATER_MARK:
            self.stream_more()

    def on_large_published(self, conn, result):
        try:
            conn.publish_finish(result)
        except GLib.Error as e:
            return self.finish("publishing", e)
        if self.status != 0:
            return
        self.large_confirmed += 1
        if self.large_confirmed == LARGE_COUNT:
            paused = "while the output was above the high-water mark" if self.pauses else "never"
            print(f"{self.large_confirmed} large messages confirmed, paused {paused}")
            # prefetch_size 0: no byte limit (RabbitMQ supports no other).
            conn.acking_consumer_async(self.queue, 0, PREFETCH, None, self.on_consumer)

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
        # Acking lets the broker send the next message: the consumer never
        # holds more than PREFETCH deliveries, however long the queue.
        consumer.ack(delivery.get_delivery_tag())
        self.received += 1
        if self.received == TOTAL + LARGE_COUNT:
            print(f"{self.received} messages received with prefetch {PREFETCH}")
            return self.finish()
        consumer.next_delivery_async(None, self.on_delivery)


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    app = App(sys.argv[1])
    app.loop.run()
    return app.status


if __name__ == "__main__":
    sys.exit(main())
