#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Flow control: a publisher that keeps at most WINDOW publishes in flight
and stops waiting for the broker at a deadline, then streams large messages
pausing while the connection's output is above its high-water mark, and a
consumer whose memory the prefetch count bounds.

    flow-control.py URI

Shown in docs/flow-control.md and run by the tests. asyncio through the
PyGObject override (docs/python.md); the connection is the
Carehare.Connection GObject, so its properties and their notify signals
are there too.
"""
import asyncio
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402

TOTAL = 1000     # messages to send
WINDOW = 50      # publishes in flight at most
PREFETCH = 20    # unacknowledged deliveries at most
DEADLINE_S = 60  # for the whole batch
LARGE_COUNT = 16  # large messages, streamed
LARGE_SIZE = 256 * 1024


async def publish_all(connection, queue):
    """Never more than WINDOW publishes (and their bodies) waiting for the
    broker: each takes a place in the window and gives it back when the
    broker has answered."""
    window = asyncio.Semaphore(WINDOW)
    failures = []

    def settled(confirm):
        window.release()
        if not confirm.cancelled() and confirm.exception() is not None:
            failures.append(confirm.exception())

    for i in range(TOTAL):
        await window.acquire()
        if failures:
            raise failures[0]  # a failure stops the loop
        connection.publish(f"message {i}".encode(), routing_key=queue).add_done_callback(settled)
    # Every place back: every publish has been answered.
    for _ in range(WINDOW):
        await window.acquire()
    if failures:
        raise failures[0]


def drained(connection):
    """A future that completes once the connection's output is back at the
    low-water mark or below (or the connection closed): the notify is
    emitted once when it rises above the high-water mark and once when it
    has drained."""
    future = asyncio.get_running_loop().create_future()

    def on_pending_write(conn, _pspec):
        if conn.props.pending_write_bytes <= carehare.CONNECTION_WRITE_LOW_WATER_MARK:
            conn.disconnect(handler)
            if not future.done():
                future.set_result(None)

    handler = connection.connect("notify::pending-write-bytes", on_pending_write)
    return future


async def stream_large(connection, queue):
    """Publishes without a window, pausing while the output is above the
    high-water mark. Returns how many times it paused."""
    body = bytes(LARGE_SIZE)
    confirms = []
    pauses = 0
    for _ in range(LARGE_COUNT):
        if connection.props.pending_write_bytes > carehare.CONNECTION_WRITE_HIGH_WATER_MARK:
            pauses += 1
            await drained(connection)
        confirms.append(connection.publish(body, routing_key=queue))
    await asyncio.gather(*confirms)
    return pauses


def on_blocked_changed(conn, _pspec):
    # The broker's memory or disk alarm: while blocked, publishes wait in
    # the library, unwritten, and complete once it unblocks.
    print(f"the broker {'blocked' if conn.props.is_blocked else 'unblocked'} this connection")


async def main(uri):
    async with carehare.connect(uri) as connection:
        connection.connect("notify::is-blocked", on_blocked_changed)
        queue = await connection.queue_declare("", exclusive=True)

        try:
            await asyncio.wait_for(publish_all(connection, queue), DEADLINE_S)
        except asyncio.TimeoutError:
            # No more publishes are started, and none is withdrawn: those in
            # the window are published all the same. Leaving `async with`
            # closes the connection, which drops those not yet written.
            raise asyncio.TimeoutError("not confirmed by the deadline: "
                                       "the broker is blocking us") from None
        print(f"{TOTAL} messages confirmed, never more than {WINDOW} in flight")

        pauses = await stream_large(connection, queue)
        paused = "while the output was above the high-water mark" if pauses else "never"
        print(f"{LARGE_COUNT} large messages confirmed, paused {paused}")

        # prefetch_size 0: no byte limit (RabbitMQ supports no other).
        received = 0
        async with connection.acking_consumer(queue, prefetch_count=PREFETCH) as consumer:
            async for delivery in consumer.deliveries():
                # Acking lets the broker send the next message: the consumer
                # never holds more than PREFETCH deliveries, however long the
                # queue.
                consumer.ack(delivery.get_delivery_tag())
                received += 1
                if received == TOTAL + LARGE_COUNT:
                    consumer.close()  # ends the loop
        print(f"{received} messages received with prefetch {PREFETCH}")


def run():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    try:
        carehare.run(main(sys.argv[1]))
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
