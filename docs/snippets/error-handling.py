#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Error handling: what each failure looks like, and a connection that
reconnects with backoff.

    error-handling.py URI

Shown in docs/error-handling.md and run by the tests.
"""
import random
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402


class Keeper:
    """A connection that comes back, waiting longer after each failure."""

    def __init__(self, uri, on_connected, on_gave_up):
        self.uri = uri
        self.on_connected = on_connected  # called after each (re)connection
        self.on_gave_up = on_gave_up  # called when retrying cannot help
        self.delay_ms = 1000
        self.conn = None

    def connect(self):
        Carehare.Connection.new_async(self.uri, None, self._connected)

    def _connected(self, source, result):
        try:
            conn = Carehare.Connection.new_finish(result)
        except GLib.Error as e:
            if Carehare.error_is_transient(e):
                self._retry(e)
            else:
                self.on_gave_up(e)
            return
        self.conn = conn
        self.delay_ms = 1000
        self._closed_id = conn.connect("closed", self._closed)
        # Exclusive or auto-delete queues, consumers and unconfirmed
        # publishes do not outlive a connection: redo them here.
        self.on_connected(conn)

    def _closed(self, conn, error):
        # Every pending operation has failed with CONNECTION_CLOSED by now,
        # and every consumer has ended.
        conn.disconnect(self._closed_id)
        if error is None:
            return  # the program closed it
        if Carehare.error_is_transient(error):
            self._retry(error)
        else:
            self.on_gave_up(error)

    def _retry(self, error):
        # Jitter spreads out many clients that lost the same broker.
        wait_ms = self.delay_ms // 2 + random.randint(0, self.delay_ms // 2)
        print(f"{error.message}: retrying in {wait_ms} ms", file=sys.stderr)
        self.delay_ms = min(self.delay_ms * 2, 60000)
        GLib.timeout_add(wait_ms, self._reconnect)

    def _reconnect(self):
        self.connect()
        return GLib.SOURCE_REMOVE


class Demo:
    """Provokes the common errors one after another, checking each."""

    def __init__(self, uri):
        self.loop = GLib.MainLoop()
        self.status = 0
        self.conn = None
        self.consumer = None
        self.body = GLib.Bytes.new(b"hello")
        self.keeper = Keeper(uri, self.on_connected, self.on_gave_up)
        # Even a malformed URI is reported to the callback, never raised here.
        Carehare.Connection.new_async("http://localhost", None, self.on_bad_uri)

    def expect(self, what, finish, result, code, reply_code=0, transient=False):
        """Calls finish(result), which must fail with code and reply_code,
        and be transient (worth a retry) or not."""
        try:
            finish(result)
            print(f"{what}: succeeded, expected an error", file=sys.stderr)
            self.status = 1
        except GLib.Error as e:
            print(f"{what}: {e.message} (reply code {Carehare.error_get_reply_code(e)})")
            if (not e.matches(Carehare.error_quark(), code)
                    or Carehare.error_get_reply_code(e) != reply_code
                    or Carehare.error_is_transient(e) != transient):
                self.status = 1

    def on_gave_up(self, error):
        print(f"giving up: {error.message}", file=sys.stderr)
        self.status = 1
        self.loop.quit()

    def on_bad_uri(self, source, result):
        self.expect("connecting to http://localhost", Carehare.Connection.new_finish, result,
                    Carehare.Error.INVALID_URI)
        self.keeper.connect()

    def on_connected(self, conn):
        self.conn = conn
        conn.queue_declare_async("carehare-docs-no-such-queue", Carehare.QueueFlags.PASSIVE,
                                 None, None, self.on_passive_declared)

    def on_passive_declared(self, conn, result):
        try:
            conn.queue_declare_finish(result)
            self.status = 1
        except GLib.Error as e:
            if (e.matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER)
                    and Carehare.error_get_reply_code(e) == 404):
                # Only this operation failed: the connection is still open.
                print(f"no such queue (connection still open: {not conn.props.is_closed}): "
                      f"{e.message}")
            else:
                print(f"passive declare: unexpected {e.message}", file=sys.stderr)
                self.status = 1
        conn.publish_async("carehare-docs-no-such-exchange", "key", self.body, None,
                           Carehare.PublishFlags.NONE, None, self.on_published_nowhere)

    def on_published_nowhere(self, conn, result):
        self.expect("publish to a missing exchange", conn.publish_finish, result,
                    Carehare.Error.CHANNEL_CLOSED_BY_SERVER, 404)
        # No queue is bound to this routing key: with MANDATORY the broker
        # returns the message. 312 NO_ROUTE is in the message only.
        conn.publish_async("", "carehare-docs-nobody-listens", self.body, None,
                           Carehare.PublishFlags.MANDATORY, None, self.on_unroutable)

    def on_unroutable(self, conn, result):
        self.expect("unroutable mandatory publish", conn.publish_finish, result,
                    Carehare.Error.UNROUTABLE)
        conn.queue_declare_async("", Carehare.QueueFlags.EXCLUSIVE, None, None,
                                 self.on_declared)

    def on_declared(self, conn, result):
        queue, _, _ = conn.queue_declare_finish(result)
        conn.acking_consumer_async(queue, 0, 10, None, self.on_consumer)

    def on_consumer(self, conn, result):
        self.consumer = conn.acking_consumer_finish(result)
        # The queue is empty, so this waits, until the connection closes
        # and fails it with CONNECTION_CLOSED: nothing hangs.
        self.consumer.next_delivery_async(None, self.on_pending_delivery)
        conn.close_async(None, self.on_closed)

    def on_pending_delivery(self, consumer, result):
        self.expect("waiting for a delivery when the connection closes",
                    consumer.next_delivery_finish, result, Carehare.Error.CONNECTION_CLOSED,
                    transient=True)

    def on_closed(self, conn, result):
        conn.close_finish(result)
        self.loop.quit()


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    demo = Demo(sys.argv[1])
    demo.loop.run()
    return demo.status


if __name__ == "__main__":
    sys.exit(main())
