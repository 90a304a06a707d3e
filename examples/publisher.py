#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Publishes messages to a durable queue with publisher confirms and reports,
for each, whether the broker took responsibility for it.

    publisher.py URI QUEUE MESSAGE...

The Python twin of publisher.c, in asyncio with the override's API (the
Python `carehare` library's): every publish is sent at once and returns a
future; awaiting them all waits for the broker's confirms.
"""
import asyncio
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


def print_error(what, error):
    print(f"{what} failed: {error}\n  -> {explain(error)}", file=sys.stderr)


async def publish(uri, queue, messages):
    status = 0
    try:
        async with carehare.connect(uri) as connection:
            await connection.queue_declare(queue, durable=True)
            properties = {"delivery_mode": 2, "content_type": "text/plain"}
            futures = [connection.publish(text.encode(), routing_key=queue,
                                          properties=properties, mandatory=True)
                       for text in messages]
            for text, future in zip(messages, futures):
                try:
                    await future
                    print(f"confirmed: {text}", flush=True)
                except (carehare.ServerSentNack, carehare.Unroutable,
                        carehare.ChannelClosedByServer) as e:
                    # Only this message failed; the others complete on their own.
                    print_error(text, e)
                    status = 1
    except Exception as e:  # noqa: BLE001: every failure is reported
        print_error("publishing", e)
        status = 1
    return status


def main(argv):
    if any(arg in ("-h", "--help") for arg in argv[1:]):
        print(__doc__.strip())
        return 0
    if len(argv) < 4:
        print(f"usage: {argv[0]} URI QUEUE MESSAGE...", file=sys.stderr)
        return 2
    return carehare.run(publish(argv[1], argv[2], argv[3:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
