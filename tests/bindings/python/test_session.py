# SPDX-License-Identifier: LGPL-2.1-or-later
"""carehare.Session in asyncio: a reconnection the broker forces, publishes
and a consumer that go on across it, and a login refused for good."""
import asyncio
import socket
import subprocess

import pytest
from conftest import env, unique
from gi.repository import Carehare as carehare


def broker_close_connection(connection_name):
    """Closes, with rabbitmqctl, the broker's side of the named connection
    (blocking: the session notices once the loop runs again)."""
    broker = env("CAREHARE_TEST_BROKER")
    for _ in range(50):
        out = subprocess.run([broker, "ctl", "list_connections", "--quiet", "--no-table-headers",
                              "pid", "client_properties"],
                             check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if connection_name in line and line.startswith("<"):
                pid = line[:line.index(">") + 1]
                subprocess.run([broker, "ctl", "close_connection", pid, "forced by pytest"],
                               check=True, capture_output=True)
                return
        subprocess.run(["sleep", "0.2"], check=True)
    raise AssertionError("the broker never listed " + connection_name)


async def test_session_reconnects(url):
    queue = unique("session")
    name = unique("session-conn")
    session = carehare.session(url + "?connection_name=" + name,
                               reconnect_delay_min=0.01, reconnect_delay_max=0.2)
    assert isinstance(session, carehare.Session)
    events = []
    session.connect("connected", lambda s, conn: events.append("C"))
    session.connect("disconnected", lambda s, error: events.append("D"))
    session.declare_queue(queue, carehare.QueueFlags.AUTO_DELETE, None)
    consumer = session.acking_consumer(queue, prefetch_count=10)
    assert isinstance(consumer, carehare.Consumer)

    async with session:
        assert session.props.state == carehare.SessionState.CONNECTED
        await session.publish(b"before", routing_key=queue)
        message, tag = await consumer.next_delivery()
        assert message == b"before"
        consumer.ack(tag)

        waiting = asyncio.ensure_future(consumer.next_delivery())
        broker_close_connection(name)
        connection = await session.wait_connected()
        while events != ["C", "D", "C"]:
            connection = await session.wait_connected()
            await asyncio.sleep(0.01)
        assert connection is session.props.connection
        assert carehare.error_get_reply_code(session.props.last_error) == 320

        await session.publish(b"after", routing_key=queue)
        message, after_tag = await waiting
        assert message == b"after"
        assert after_tag > tag
        consumer.ack(after_tag)

    assert events == ["C", "D", "C", "D"]
    assert session.props.state == carehare.SessionState.STOPPED
    with pytest.raises(carehare.ConnectionClosed):
        await session.publish(b"closed", routing_key=queue)
    with pytest.raises(carehare.ConnectionClosed):
        await consumer.next_delivery()


async def test_session_cancelling_a_waiting_publish_drops_it(url):
    queue = unique("session-cancel")
    session = carehare.session(url)
    session.declare_queue(queue, carehare.QueueFlags.AUTO_DELETE, None)
    consumer = session.acking_consumer(queue, prefetch_count=10)
    # Not started: the publish waits for the connection; cancelling the
    # future cancels it in carehare-glib, so it is never sent.
    dropped = session.publish(b"dropped", routing_key=queue)
    assert dropped.cancel()
    async with session:
        await session.publish(b"sent", routing_key=queue)
        message, tag = await consumer.next_delivery()
        assert message == b"sent"
        consumer.ack(tag)
    assert dropped.cancelled()


async def test_session_login_refused():
    url = "amqp://guest:wrong@127.0.0.1:%s/" % env("CAREHARE_TEST_BROKER_PORT")
    session = carehare.session([url])
    with pytest.raises(carehare.ConnectionClosedByServer) as info:
        async with session:
            pass
    assert info.value.reply_code == 403
    assert session.props.state == carehare.SessionState.FAILED
    await session.close()


async def test_session_enter_interrupted_closes_it():
    # `async with session:` given up while connecting (here by a timeout
    # around it; nothing listens on the port): no __aexit__ runs, and the
    # session must not go on retrying for good.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = carehare.session(["amqp://guest:guest@127.0.0.1:%d/" % port])

    async def enter():
        async with session:
            pass

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(enter(), 0.5)
    for _ in range(200):
        if session.props.state == carehare.SessionState.STOPPED:
            break
        await asyncio.sleep(0.05)
    assert session.props.state == carehare.SessionState.STOPPED
