#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Getting started: connect, declare a queue, publish one message with a
publisher confirm, consume it with an ack, close.

    getting-started.py URI

Shown in docs/getting-started.md and run by the tests. asyncio through the
PyGObject override (docs/python.md): the Python `carehare` library's API.
"""
import sys

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402


async def main(uri):
    # Closes the connection at the end; raises the server's error
    # (ConnectionClosedByServer...) if the server closed it first.
    async with carehare.connect(uri) as connection:
        # "": the broker picks the name; exclusive: the queue goes when we do.
        queue = await connection.queue_declare("", exclusive=True)
        print(f"declared {queue}")

        # The default exchange "" routes to the queue named by the routing
        # key; mandatory makes an unroutable message an error (Unroutable)
        # instead of a loss. Resolves once the broker has taken
        # responsibility for the message.
        await connection.publish(b"Hello from carehare-glib", routing_key=queue,
                                 properties={"content_type": "text/plain"},
                                 mandatory=True)
        print("the broker confirmed the message")

        # Prefetch 10: the broker sends at most 10 unacknowledged messages.
        # Leaving the block closes the consumer.
        async with connection.acking_consumer(queue, prefetch_count=10) as consumer:
            # One is all this program wants; `async for message in consumer`
            # takes each as it arrives, acking it when the loop goes on.
            message, delivery_tag = await consumer.next_delivery()
            print(f'received "{message.decode()}"')
            # Settle every delivery: ack() never fails and is not awaited.
            consumer.ack(delivery_tag)


def run():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} amqp://user:password@host:port/vhost", file=sys.stderr)
        return 2
    try:
        # An asyncio loop that runs GLib's main context (docs/python.md).
        carehare.run(main(sys.argv[1]))
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
