#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Consumes messages from a queue, acknowledging each, until COUNT messages
arrived (0 or none: until Ctrl-C), then closes cleanly.

    consumer.py URI QUEUE [COUNT]

The Python twin of consumer.c, in asyncio with the override's API (the
Python `carehare` library's): `async for delivery in consumer.deliveries()`
gives each message, ack() acknowledges it. It is the fastest natural path:
the loop takes messages through the consumer's ::delivery signal, with no
GLib round trip per message. (`async for message in consumer` acks for you,
but only when the loop goes on: a count-bounded loop would leave its last
message unacked.)
"""
import signal
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402
from gi.repository import GLib  # noqa: E402


def explain(error):
    """What a program should do about an error (carehare_error_is_transient)."""
    if isinstance(error, (TimeoutError, ConnectionError)) or (
            isinstance(error, GLib.Error) and carehare.error_is_transient(error)):
        return "transient: retrying later (with backoff) may succeed"
    return "retrying will not help until the cause is fixed"


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
                # Ends when the consumer is closed (Ctrl-C): the end of the stream.
                async for delivery in consumer.deliveries():
                    message = delivery.get_body().get_data()
                    print(f"received: {message.decode('utf-8', 'replace')}", flush=True)
                    # never raises, never awaited
                    consumer.ack(delivery.get_delivery_tag())
                    received += 1
                    if count and received >= count:
                        break
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"consuming failed: {e}\n  -> {explain(e)}", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        print(__doc__.strip())
        return 0
    if len(argv) not in (3, 4):
        print(f"usage: {argv[0]} URI QUEUE [COUNT]", file=sys.stderr)
        return 2
    return carehare.run(consume(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
