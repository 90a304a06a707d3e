#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Resident memory while a consumer is sent a message larger than it accepts.

A consumer (max_body_size from the URI) waits on a queue; another process
(rabbitmq-c's amqp-publish) publishes one SIZE-byte message of zeros, then a
small one. The consumer's first next_delivery fails MESSAGE_TOO_LARGE and the
second gets the small message; the oversized body crossed the socket in
frame_max-sized frames and was skipped, never buffered. Prints the
consumer's peak RSS before the message and after, for the limit given and
for a limit above SIZE (the body is then buffered, for comparison).

  eval "$(test-server/broker env)"
  GI_TYPELIB_PATH=_build/carehare-glib LD_LIBRARY_PATH=_build/carehare-glib \\
    /usr/bin/python3 benchmarks/oversize-rss.py [SIZE_MIB] [LIMIT_BYTES]
"""
import os
import resource
import subprocess
import sys
import uuid

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def call(target, name, *args):
    results = []
    getattr(target, name + "_async")(*args, None, lambda source, result: results.append(result))
    context = GLib.MainContext.default()
    while not results:
        context.iteration(True)
    return getattr(target, name + "_finish")(results[0])


def run(uri, size, limit):
    sep = "&" if "?" in uri else "?"
    conn = call(Carehare.Connection, "new", "%s%smax_body_size=%d" % (uri, sep, limit))
    queue = "carehare-oversize-%s" % uuid.uuid4().hex[:12]
    call(conn, "queue_declare", queue, Carehare.QueueFlags.EXCLUSIVE, None)
    consumer = call(conn, "acking_consumer", queue, 0, 10)
    before = peak_rss_mib()

    # rabbitmq-c reads "host/" as the empty vhost: no path means "/".
    url = "--url=" + uri.split("?")[0].rstrip("/")
    publisher = subprocess.Popen(["amqp-publish", url, "-r", queue],
                                 stdin=subprocess.PIPE)
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        publisher.stdin.write(chunk)
    publisher.stdin.close()
    publisher.wait()
    subprocess.run(["amqp-publish", url, "-r", queue, "-b", "small"], check=True)

    try:
        delivery = call(consumer, "next_delivery")
        outcome = "delivered, %d bytes" % delivery.get_body().get_size()
        consumer.ack(delivery.get_delivery_tag())
    except GLib.Error as error:
        outcome = "failed: %s" % error.message
    delivery = call(consumer, "next_delivery")
    consumer.ack(delivery.get_delivery_tag())
    assert delivery.get_body().get_data() == b"small"
    after = peak_rss_mib()
    call(conn, "close")
    print("body %d MiB, max_body_size %d: peak RSS %.1f MiB before, %.1f MiB after (%s)"
          % (size >> 20, limit, before, after, outcome))


def main():
    uri = os.environ.get("CAREHARE_TEST_AMQP_URI")
    if not uri:
        sys.exit('CAREHARE_TEST_AMQP_URI is not set: eval "$(test-server/broker env)"')
    size = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 100 << 20
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 20
    run(uri, size, limit)
    run(uri, size, size + 1)


if __name__ == "__main__":
    main()
