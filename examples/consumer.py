#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Consumes messages from a queue, acknowledging each, until COUNT messages
arrived (0 or none: until Ctrl-C), then closes cleanly.

    consumer.py URI QUEUE [COUNT]

The Python twin of consumer.c, in asyncio with the override's API (the
Python `carehare` library's): next_delivery() gives each message and its
delivery tag, ack() acknowledges it. (`async for message in consumer` acks
for you, but only when the loop goes on: a count-bounded loop would leave
its last message unacked.)
"""
import signal
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402
from gi.repository import GLib  # noqa: E402


def explain(error):
    """What an error means to a program (see explain-error.h)."""
    if isinstance(error, carehare.ConnectionClosedByServer):
        return ("login refused: check the user name and password" if error.reply_code == 403
                else "the broker closed the connection: reconnect")
    if isinstance(error, carehare.ChannelClosedByServer):
        if error.reply_code == 404:
            return "the queue or exchange does not exist: declare it first"
        if error.reply_code == 0:
            return "the broker cancelled the consumer: its queue was deleted"
        return "the broker refused the operation; the connection is still usable"
    return {
        ValueError: "fix the URI: amqp://user:password@host:port/vhost",
        carehare.ConnectionClosed: "the connection is gone: reconnect and retry",
    }.get(type(error), "a network or TLS error: check the host, port and certificates")


async def consume(uri, queue, count):
    received = 0
    try:
        async with carehare.connect(uri) as connection:
            # Prefetch 10: at most ten unacknowledged messages are ever held.
            async with connection.acking_consumer(queue, prefetch_count=10) as consumer:
                def on_sigint():
                    print("interrupted: closing", flush=True)
                    consumer.close()
                    return GLib.SOURCE_REMOVE

                GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, on_sigint)
                print(f"waiting for messages on {queue}", flush=True)
                while not count or received < count:
                    try:
                        message, delivery_tag = await consumer.next_delivery()
                    except carehare.ChannelClosed:
                        break  # closed on Ctrl-C: the end of the stream
                    print(f"received: {message.decode('utf-8', 'replace')}", flush=True)
                    consumer.ack(delivery_tag)  # never raises, never awaited
                    received += 1
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"consuming failed: {e}\n  -> {explain(e)}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if len(argv) not in (3, 4):
        print(f"usage: {argv[0]} URI QUEUE [COUNT]", file=sys.stderr)
        return 2
    return carehare.run(consume(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
