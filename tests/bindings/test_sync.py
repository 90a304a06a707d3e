# SPDX-License-Identifier: LGPL-2.1-or-later
"""The blocking twins from PyGObject, in a script with no main loop (issue 18).

Run by `meson test --suite bindings` like test_carehare.py: /usr/bin/python3,
GI_TYPELIB_PATH and the broker's URIs in the environment. Prints TAP. No
GLib.MainLoop runs anywhere: each blocking call iterates the connection's
main context itself while it waits.
"""
import os
import sys
import threading
import traceback
import uuid

import gi

gi.require_version("Carehare", "1.0")
gi.require_version("Gio", "2.0")
from gi.repository import Carehare, Gio, GLib  # noqa: E402


def env(name):
    value = os.environ.get(name)
    if not value:
        # Integration tests fail, never skip, without the broker.
        raise RuntimeError(name + ' is not set: run eval "$(test-server/broker env)"')
    return value


def test_script_without_main_loop():
    conn = Carehare.Connection.new_sync(env("CAREHARE_TEST_AMQP_URI"), None)
    assert isinstance(conn, Carehare.Connection)
    assert not conn.props.is_closed
    queue, messages, consumers = conn.queue_declare_sync(
        "", Carehare.QueueFlags.EXCLUSIVE, None, None)
    assert queue.startswith("amq.gen-")
    assert (messages, consumers) == (0, 0)
    assert conn.publish_sync("", queue, GLib.Bytes.new(b"no loop"), None,
                             Carehare.PublishFlags.MANDATORY, None)
    consumer = conn.acking_consumer_sync(queue, 0, 10, None)
    delivery = consumer.next_delivery_sync(None)
    assert delivery.get_body().get_data() == b"no loop"
    consumer.ack(delivery.props.delivery_tag)

    # Nothing more comes: a timer thread cancels the wait.
    cancellable = Gio.Cancellable()
    timer = threading.Timer(0.1, cancellable.cancel)
    timer.start()
    try:
        consumer.next_delivery_sync(cancellable)
    except GLib.Error as error:
        assert error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED), error
    else:
        raise AssertionError("next_delivery_sync was not cancelled")
    timer.join()

    assert consumer.close_sync(None)
    assert conn.close_sync(None)
    assert conn.props.is_closed


def test_server_error_raises():
    conn = Carehare.Connection.new_sync(env("CAREHARE_TEST_AMQP_URI"), None)
    try:
        conn.queue_declare_sync("carehare-sync-missing-" + uuid.uuid4().hex,
                                Carehare.QueueFlags.PASSIVE, None, None)
    except GLib.Error as error:
        assert error.matches(Carehare.error_quark(),
                             Carehare.Error.CHANNEL_CLOSED_BY_SERVER), error
        assert Carehare.error_get_reply_code(error) == 404
    else:
        raise AssertionError("a passive declare of a missing queue succeeded")
    assert conn.close_sync(None)


def test_threads_publish_sync():
    conn = Carehare.Connection.new_sync(env("CAREHARE_TEST_AMQP_URI"), None)
    queue, _, _ = conn.queue_declare_sync("", Carehare.QueueFlags.EXCLUSIVE, None, None)
    errors = []

    def publish():
        try:
            for _ in range(25):
                conn.publish_sync("", queue, GLib.Bytes.new(b"thread"), None,
                                  Carehare.PublishFlags.NONE, None)
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ok, purged = conn.queue_purge_sync(queue, None)
    assert ok and purged == 100, (ok, purged)
    assert conn.close_sync(None)


def test_initable_new():
    # Construct properties, then GInitable's blocking init.
    conn = Carehare.Connection(uri=env("CAREHARE_TEST_AMQP_URI"), connect_timeout=10000)
    assert conn.init(None)
    assert conn.get_heartbeat() > 0
    assert conn.close_sync(None)


TESTS = [value for key, value in list(globals().items()) if key.startswith("test_")]


def main():
    failures = 0
    print("1..%d" % len(TESTS))
    for number, test in enumerate(TESTS, 1):
        try:
            test()
        except Exception:  # noqa: BLE001 - report every failure as TAP
            failures += 1
            print("not ok %d - %s" % (number, test.__name__))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        else:
            print("ok %d - %s" % (number, test.__name__))
        sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
