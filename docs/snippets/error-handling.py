#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Error handling: what each failure looks like, and a connection that
reconnects with backoff.

    error-handling.py URI

Shown in docs/error-handling.md and run by the tests. asyncio through the
PyGObject override (docs/python.md): each failure is an exception of the
Python `carehare` library's, also a GLib.Error of the Carehare.Error domain.
"""
import asyncio
import random
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402
from gi.repository import GLib  # noqa: E402


def is_transient(error):
    """Whether trying again later can help. Configuration mistakes (a bad
    URI, a refused login, an unknown vhost, a certificate problem) fail the
    same way every time: report them instead of looping."""
    # A refused or timed-out connect comes as Python's own exception.
    if isinstance(error, (ConnectionError, asyncio.TimeoutError)):
        return True
    return isinstance(error, GLib.Error) and carehare.error_is_transient(error)


class Keeper:
    """A connection that comes back, waiting longer after each failure."""

    def __init__(self, uri, on_connected):
        self.uri = uri
        self.on_connected = on_connected  # awaited after each (re)connection
        self.delay = 1.0

    async def run(self):
        """Returns what on_connected() returns; raises what retrying cannot help."""
        while True:
            try:
                async with carehare.connect(self.uri) as connection:
                    self.delay = 1.0
                    # Exclusive or auto-delete queues, consumers and
                    # unconfirmed publishes do not outlive a connection:
                    # redo them here.
                    return await self.on_connected(connection)
            except Exception as e:  # noqa: BLE001: is_transient() decides
                # Pending operations fail with ConnectionClosed; leaving
                # `async with` raises why: ConnectionClosedByServer,
                # ConnectionClosedByHeartbeatMonitor...
                if not is_transient(e):
                    raise
                # Jitter spreads out many clients that lost the same broker.
                wait = self.delay / 2 + random.uniform(0, self.delay / 2)
                print(f"{e}: retrying in {wait:.1f} s", file=sys.stderr)
                self.delay = min(self.delay * 2, 60.0)
                await asyncio.sleep(wait)


status = 0


async def expect(what, awaitable, exception, reply_code=0, transient=False):
    """Awaits awaitable, which must raise exception with reply_code, and be
    transient (worth a retry) or not."""
    global status
    try:
        await awaitable
        print(f"{what}: succeeded, expected an error", file=sys.stderr)
        status = 1
    except exception as e:
        print(f"{what}: {e} (reply code {e.reply_code})")
        if e.reply_code != reply_code or carehare.error_is_transient(e) != transient:
            status = 1


async def demonstrate(connection):
    global status
    try:
        await connection.queue_declare("carehare-docs-no-such-queue", passive=True)
        status = 1
    except carehare.ChannelClosedByServer as e:
        if e.reply_code != 404:
            raise
        # Only this operation failed: the connection is still open.
        print(f"no such queue (connection still open: {not connection.props.is_closed}): "
              f"{e}")

    await expect("publish to a missing exchange",
                 connection.publish(b"hello", exchange_name="carehare-docs-no-such-exchange",
                                    routing_key="key"),
                 carehare.ChannelClosedByServer, 404)

    # No queue is bound to this routing key: with mandatory the broker
    # returns the message, with reply code 312 NO_ROUTE.
    await expect("unroutable mandatory publish",
                 connection.publish(b"hello", routing_key="carehare-docs-nobody-listens",
                                    mandatory=True),
                 carehare.Unroutable, 312)

    # The queue is empty, so next_delivery() waits, until the connection
    # closes and fails it with ConnectionClosed: nothing hangs.
    queue = await connection.queue_declare("", exclusive=True)
    consumer = await connection.acking_consumer(queue, prefetch_count=10)
    pending = asyncio.ensure_future(expect("waiting for a delivery when the connection closes",
                                           consumer.next_delivery(), carehare.ConnectionClosed,
                                           transient=True))
    await connection.close()
    await pending


async def main(uri):
    # An invalid URI raises ValueError, before any I/O.
    try:
        await carehare.connect("http://localhost")
        print("connecting to http://localhost: succeeded, expected an error", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"connecting to http://localhost: {e}")
    await Keeper(uri, demonstrate).run()
    return status


def run():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    try:
        return carehare.run(main(sys.argv[1]))
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"giving up: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
