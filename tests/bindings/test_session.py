# SPDX-License-Identifier: LGPL-2.1-or-later
"""Carehare.Session from PyGObject, through a reconnection the broker forces.

Run by `meson test` with /usr/bin/python3, GI_TYPELIB_PATH and
LD_LIBRARY_PATH pointing at the build directory and the broker's
environment (`eval "$(test-server/broker env)"`). Prints TAP.
"""
import os
import subprocess
import sys
import time
import traceback
import uuid

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402

TIMEOUT_SECONDS = 30


def env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(name + ' is not set: run eval "$(test-server/broker env)"')
    return value


def unique(prefix):
    return "carehare-py-session-%s-%s" % (prefix, uuid.uuid4().hex[:12])


def run_until(done, timeout=TIMEOUT_SECONDS):
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("nothing happened in %d s" % timeout)
        context.iteration(False) or time.sleep(0.005)


def call(target, name, *args):
    results = []
    getattr(target, name + "_async")(*args, None, lambda source, result: results.append(result))
    run_until(lambda: results)
    return getattr(target, name + "_finish")(results[0])


def broker_close_connection(connection_name):
    """Closes, with rabbitmqctl, the broker's side of the named connection."""
    broker = env("CAREHARE_TEST_BROKER")
    for _ in range(50):
        out = subprocess.run([broker, "ctl", "list_connections", "--quiet", "--no-table-headers",
                              "pid", "client_properties"],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if connection_name in line and line.startswith("<"):
                pid = line[:line.index(">") + 1]
                subprocess.run([broker, "ctl", "close_connection", pid, "forced by test"],
                               check=True, capture_output=True)
                return
        time.sleep(0.2)
    raise AssertionError("the broker never listed " + connection_name)


def test_session_through_forced_reconnection():
    queue = unique("q")
    name = unique("conn")
    uri = env("CAREHARE_TEST_AMQP_URI") + "?connection_name=" + name
    session = Carehare.Session.new([uri])
    session.props.reconnect_delay_min = 10
    session.props.reconnect_delay_max = 200
    events = []
    session.connect("connected", lambda s, conn: events.append("C"))
    session.connect("disconnected", lambda s, error: events.append("D"))
    session.declare_queue(queue, Carehare.QueueFlags.AUTO_DELETE, None)
    consumer = session.acking_consumer(queue, 10)
    assert isinstance(consumer, Carehare.Consumer)
    session.start()
    run_until(lambda: session.props.state == Carehare.SessionState.CONNECTED)
    assert session.props.connection is not None

    assert call(session, "publish", "", queue, GLib.Bytes.new(b"before"), None,
                Carehare.PublishFlags.NONE)
    delivery = call(consumer, "next_delivery")
    assert delivery.get_body().get_data() == b"before"
    first_tag = delivery.get_delivery_tag()
    consumer.ack(first_tag)

    # A next_delivery waiting across the reconnection gets the first
    # delivery of the new connection.
    results = []
    consumer.next_delivery_async(None, lambda source, result: results.append(result))
    broker_close_connection(name)
    run_until(lambda: events == ["C", "D", "C"])
    error = session.props.last_error
    assert Carehare.error_get_reply_code(error) == 320, error.message

    assert call(session, "publish", "", queue, GLib.Bytes.new(b"after"), None,
                Carehare.PublishFlags.NONE)
    run_until(lambda: results)
    delivery = consumer.next_delivery_finish(results[0])
    assert delivery.get_body().get_data() == b"after"
    assert delivery.get_delivery_tag() > first_tag
    consumer.ack(delivery.get_delivery_tag())

    assert call(session, "close")
    assert events == ["C", "D", "C", "D"]
    assert session.props.state == Carehare.SessionState.STOPPED
    try:
        call(consumer, "next_delivery")
    except GLib.Error as error:
        assert error.matches(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED)
    else:
        raise AssertionError("next_delivery after close succeeded")


def test_session_login_refused_fails_for_good():
    uri = "amqp://guest:wrong@127.0.0.1:%s/" % env("CAREHARE_TEST_BROKER_PORT")
    session = Carehare.Session.new([uri])
    session.start()
    run_until(lambda: session.props.state == Carehare.SessionState.FAILED)
    assert Carehare.error_get_reply_code(session.props.last_error) == 403
    try:
        call(session, "publish", "", "q", GLib.Bytes.new(b"x"), None, Carehare.PublishFlags.NONE)
    except GLib.Error as error:
        assert Carehare.error_get_reply_code(error) == 403
    else:
        raise AssertionError("publish on a failed session succeeded")


TESTS = [
    test_session_through_forced_reconnection,
    test_session_login_refused_fails_for_good,
]


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
