#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One round of one Python client, for bench-clients.py.

    bench-python.py CLIENT MODE URI QUEUE COUNT SIZE DEPTH

CLIENT is `gi` (carehare-glib through PyGObject and its override,
bindings/python/gi/overrides/Carehare.py), `carehare` (the Python `carehare`
library, imported from $CAREHARE_PY_PATH) or `aio-pika`. MODE is `publish`
(declare QUEUE, COUNT messages of SIZE bytes with confirms, at most DEPTH
unconfirmed, delete QUEUE), `consume` (prefetch DEPTH, COUNT messages from a
filled QUEUE by `async for`, each acked, delete QUEUE) or, for `gi`, `consume-signal`
(Carehare.Consumer::delivery, when the library has it). Each is written the
way the client's own documentation teaches; the last line on stdout is

    RESULT ops=N secs=S cpu_us=C maxrss_kib=K

with the clock and getrusage() (user + system, every thread) read around
the publishing or consuming only. `SKIP reason` instead when the client or
the mode is not available. Counting system calls: see perf_open() in
bench.c (the same BENCH_PERF_CTL / BENCH_PERF_ACK FIFOs).
"""
import asyncio
import os
import resource
import sys
import time


class Timer:
    def __init__(self):
        ctl, ack = os.environ.get("BENCH_PERF_CTL"), os.environ.get("BENCH_PERF_ACK")
        self.ctl = open(ctl, "w") if ctl and ack else None
        self.ack = open(ack, "r") if ctl and ack else None
        self.secs = self.cpu_us = 0.0

    def _perf(self, command):
        if self.ctl is not None:
            self.ctl.write(command + "\n")
            self.ctl.flush()
            if not self.ack.readline():
                sys.exit("bench-python: perf did not acknowledge " + command)

    @staticmethod
    def _cpu():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return (ru.ru_utime + ru.ru_stime) * 1e6

    def start(self):
        self._perf("enable")
        self.cpu0 = self._cpu()
        self.t0 = time.monotonic()

    def stop(self):
        self.secs = time.monotonic() - self.t0
        self.cpu_us = self._cpu() - self.cpu0
        self._perf("disable")


def report(timer, count):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("RESULT ops=%d secs=%.6f cpu_us=%.0f maxrss_kib=%d"
          % (count, timer.secs, timer.cpu_us, rss), flush=True)


async def publish_window(publish, count, depth):
    """COUNT publishes, at most DEPTH unconfirmed: `publish()` returns an
    awaitable of the confirm; a semaphore is the window."""
    window = asyncio.Semaphore(depth)
    failures = []

    def confirmed(future):
        window.release()
        if future.cancelled() or future.exception() is not None:
            failures.append(future)

    for _ in range(count):
        await window.acquire()
        asyncio.ensure_future(publish()).add_done_callback(confirmed)
    for _ in range(depth):
        await window.acquire()
    if failures:
        failures[0].result()


# ---- carehare-glib (gi) and the Python carehare library: the same API ------

async def run_carehare_api(carehare, mode, uri, queue, count, size, depth, timer):
    body = bytes(size)
    async with carehare.connect(uri) as connection:
        if mode == "publish":
            await connection.queue_declare(queue)
            timer.start()
            await publish_window(lambda: connection.publish(body, routing_key=queue),
                                 count, depth)
            timer.stop()
        elif mode == "consume":
            async with connection.acking_consumer(queue, prefetch_count=depth) as consumer:
                received = 0
                timer.start()
                # The first style of docs/python.md and of `carehare`'s
                # README: each message is acked when the loop goes on, so
                # the last one is not (the consumer is closed after it).
                async for message in consumer:
                    if len(message) != size:
                        sys.exit("bench-python: unexpected body size")
                    received += 1
                    if received == count:
                        break
                timer.stop()
        elif mode == "consume-signal":
            async with connection.acking_consumer(queue, prefetch_count=depth) as consumer:
                from gi.repository import GObject

                # Looked up on the instance: before one exists, the class
                # (and so its signals) may not be initialised yet.
                if not GObject.signal_lookup("delivery", type(consumer)):
                    raise Skip("no ::delivery signal")
                done = asyncio.get_running_loop().create_future()
                received = 0

                def on_delivery(consumer, delivery):
                    nonlocal received
                    if received >= count:
                        return
                    consumer.ack(delivery.get_delivery_tag())
                    received += 1
                    if received == count:
                        done.set_result(None)

                timer.start()
                handler = consumer.connect("delivery", on_delivery)
                await done
                timer.stop()
                consumer.disconnect(handler)
        await delete_queue(connection, queue)


class Skip(Exception):
    """The mode is not available: SKIP, with why."""


async def delete_queue(connection, queue):
    # The Python carehare library has no queue_delete(): the driver deletes
    # the queue after the round.
    if hasattr(connection, "queue_delete"):
        await connection.queue_delete(queue)


# ---- aio-pika ---------------------------------------------------------------

async def run_aio_pika(aio_pika, mode, uri, queue, count, size, depth, timer):
    body = bytes(size)
    connection = await aio_pika.connect(uri)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        if mode == "publish":
            await channel.declare_queue(queue)
            exchange = channel.default_exchange
            timer.start()
            await publish_window(
                lambda: exchange.publish(aio_pika.Message(body), routing_key=queue),
                count, depth)
            timer.stop()
        else:
            await channel.set_qos(prefetch_count=depth)
            q = await channel.declare_queue(queue, passive=True)
            received = 0
            timer.start()
            # aio-pika's documented style: iterate the queue, ack each.
            async with q.iterator() as messages:
                async for message in messages:
                    if len(message.body) != size:
                        sys.exit("bench-python: unexpected body size")
                    await message.ack()
                    received += 1
                    if received == count:
                        break
            timer.stop()
        await channel.queue_delete(queue)


def main(argv):
    if len(argv) != 8:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    client, mode, uri, queue = argv[1:5]
    count, size, depth = (int(a) for a in argv[5:8])
    timer = Timer()

    if client == "gi":
        import gi
        gi.require_version("Carehare", "1.0")
        from gi.repository import Carehare as carehare
        try:
            carehare.run(run_carehare_api(carehare, mode, uri, queue, count, size, depth,
                                          timer))
        except Skip as e:
            print("SKIP %s" % e, flush=True)
            return 0
    elif client == "carehare":
        path = os.environ.get("CAREHARE_PY_PATH")
        if not path or not os.path.isdir(os.path.join(path, "carehare")):
            print("SKIP CAREHARE_PY_PATH does not name a checkout of the Python carehare "
                  "library", flush=True)
            return 0
        sys.path.insert(0, path)
        try:
            import carehare
        except ImportError as e:
            print("SKIP cannot import the Python carehare library: %s" % e, flush=True)
            return 0
        asyncio.run(run_carehare_api(carehare, mode, uri, queue, count, size, depth, timer))
    elif client == "aio-pika":
        try:
            import aio_pika
        except ImportError:
            print("SKIP aio-pika is not installed (Debian: python3-aio-pika)", flush=True)
            return 0
        asyncio.run(run_aio_pika(aio_pika, mode, uri, queue, count, size, depth, timer))
    else:
        print("bench-python: unknown client " + client, file=sys.stderr)
        return 2
    report(timer, count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
