# SPDX-License-Identifier: LGPL-2.1-or-later
"""carehare.connect() and the connection's life, through the override."""
import asyncio
import os
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import env, unique
from gi.repository import Carehare as carehare
from gi.repository import GLib, GObject

ERRORS = [
    carehare.BadBytesFromServer,
    carehare.ChannelClosed,
    carehare.ChannelClosedByServer,
    carehare.ConnectionClosed,
    carehare.ConnectionClosedByHeartbeatMonitor,
    carehare.ConnectionClosedByServer,
    carehare.ServerSentNack,
    carehare.Unroutable,
]


def tls_url(**params):
    query = "&".join("%s=%s" % kv for kv in params.items())
    return "amqps://localhost:%s/?%s" % (env("CAREHARE_TEST_BROKER_TLS_PORT"), query)


def client_cert():
    certs = env("CAREHARE_TEST_CERT_DIR")
    return {"certfile": os.path.join(certs, "client.pem"),
            "keyfile": os.path.join(certs, "client-key.pem")}


def test_exceptions_are_glib_errors_and_unrelated():
    for cls in ERRORS:
        assert issubclass(cls, GLib.Error)
        for other in ERRORS:
            assert cls is other or not issubclass(cls, other), (cls, other)


async def test_connect_invalid_scheme():
    with pytest.raises(ValueError) as cm:
        await carehare.connect("amqpx://guest:guest@localhost/")
    assert "amqps://" in str(cm.value)


async def test_connect_amqp_with_ssl_context():
    with pytest.raises(ValueError) as cm:
        await carehare.connect(env("CAREHARE_TEST_AMQP_URI"), ssl=ssl.create_default_context())
    assert "amqps://" in str(cm.value)


async def test_connect_amqp_with_tls_parameters():
    with pytest.raises(ValueError) as cm:
        await carehare.connect(env("CAREHARE_TEST_AMQP_URI") + "?verify=verify_none")
    assert "amqps://" in str(cm.value)


async def test_connect_invalid_vhost():
    with pytest.raises(ValueError):
        await carehare.connect("amqp://guest:guest@localhost/a/b")


async def test_connect_invalid_password(url):
    bad = url.replace("guest:guest@", "guest:not-the-password@")
    assert bad != url
    with pytest.raises(carehare.ConnectionClosedByServer) as cm:
        async with carehare.connect(bad):
            pass
    assert cm.value.reply_code == 403
    assert str(cm.value).startswith("RabbitMQ closed the connection: 403 ACCESS_REFUSED")
    assert cm.value.reply_text.startswith("ACCESS_REFUSED")
    assert cm.value.matches(carehare.error_quark(), carehare.Error.CONNECTION_CLOSED_BY_SERVER)
    assert carehare.error_get_reply_code(cm.value) == 403


async def test_connect_ssl_error():
    # The system's trust does not include the test broker's private CA.
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        async with carehare.connect(tls_url(**client_cert()), ssl=ssl.create_default_context()):
            pass
    # str() is the library's message, not a tuple of arguments.
    assert str(caught.value).startswith("The TLS certificate of ")
    assert "refused" in str(caught.value)


async def test_connect_ssl_context_ca_certs():
    context = ssl.create_default_context(
        cafile=os.path.join(env("CAREHARE_TEST_CERT_DIR"), "ca.pem"))
    async with carehare.connect(tls_url(**client_cert()), ssl=context) as connection:
        queue = await connection.queue_declare("", exclusive=True)
        await connection.publish(b"over TLS", routing_key=queue)
        async with connection.acking_consumer(queue) as consumer:
            assert (await consumer.next_delivery())[0] == b"over TLS"


async def test_connect_vhost():
    async with carehare.connect(env("CAREHARE_TEST_AMQP_VHOST_URI")) as connection:
        assert (await connection.queue_declare("in-vhost", exclusive=True)) == "in-vhost"


async def test_trailing_slash_is_default_vhost(url):
    assert url.endswith("/")
    queue = unique("slash")
    async with carehare.connect(url) as connection:
        await connection.queue_declare(queue, auto_delete=True)
        async with carehare.connect(url[:-1] + "/%2F") as other:
            assert (await other.queue_declare(queue, passive=True)) == queue
        await connection.queue_delete(queue)


async def test_plain_amqp_to_the_tls_port_is_bad_bytes_from_server():
    # The broker answers the AMQP header with a TLS alert.
    with pytest.raises(carehare.BadBytesFromServer) as cm:
        await carehare.connect("amqp://guest:guest@127.0.0.1:%s/"
                               % env("CAREHARE_TEST_BROKER_TLS_PORT"))
    assert "amqps://" in str(cm.value)
    assert cm.value.matches(carehare.error_quark(), carehare.Error.BAD_BYTES_FROM_SERVER)


def _frame(payload, frame_type=1):
    return struct.pack(">BHI", frame_type, 0, len(payload)) + payload + b"\xce"


def _read_method(sock):
    """The (class, method) of the next method frame from the client (its
    heartbeats skipped), or None at the end."""
    while True:
        header = sock.recv(7, socket.MSG_WAITALL)
        if len(header) < 7:
            return None
        frame_type, _channel, size = struct.unpack(">BHI", header)
        payload = sock.recv(size + 1, socket.MSG_WAITALL)
        if len(payload) < size + 1:
            return None
        if frame_type == 1:
            return struct.unpack(">HH", payload[:4])


def _silent_broker(listener):
    """A broker that opens the connection with a 1 s heartbeat, then never
    says another word (it reads what the client sends, until it hangs up)."""
    conn, _ = listener.accept()
    with conn:
        conn.recv(8, socket.MSG_WAITALL)  # AMQP 0-9-1's protocol header
        longstr = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
        conn.sendall(_frame(struct.pack(">HHBBI", 10, 10, 0, 9, 0)  # Start, no properties
                            + longstr(b"PLAIN") + longstr(b"en_US")))
        assert _read_method(conn) == (10, 11)  # Start-Ok
        conn.sendall(_frame(struct.pack(">HHHIH", 10, 30, 16, 131072, 1)))  # Tune
        while _read_method(conn) not in ((10, 40), None):  # Tune-Ok, then Open
            pass
        conn.sendall(_frame(struct.pack(">HHB", 10, 41, 0)))  # Open-Ok
        while _read_method(conn) is not None:
            pass


async def test_heartbeat_monitor_closes_a_silent_connection():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        server = threading.Thread(target=_silent_broker, args=(listener,), daemon=True)
        server.start()
        # Only the connection's context manager (and `closed`) raise the
        # reason; the operation it interrupted gets ConnectionClosed.
        with pytest.raises(carehare.ConnectionClosedByHeartbeatMonitor) as cm:
            async with carehare.connect("amqp://guest:guest@127.0.0.1:%d/" % port) as connection:
                assert connection.props.heartbeat == 1
                with pytest.raises(carehare.ConnectionClosed) as pending:
                    await connection.queue_declare("never-answered")
                assert not isinstance(pending.value, carehare.ConnectionClosedByHeartbeatMonitor)
                with pytest.raises(carehare.ConnectionClosedByHeartbeatMonitor):
                    await connection.closed
        assert cm.value.matches(carehare.error_quark(),
                                carehare.Error.CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR)
        while server.is_alive():
            await asyncio.sleep(0.01)


async def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        await carehare.connect("amqp://guest:guest@127.0.0.1:%d/" % port)


async def test_connect_timeout():
    # A listener that never says a word: TCP connects, AMQP never starts.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        # A billionth of a second rounds up to a millisecond, not to "none".
        with pytest.raises(asyncio.TimeoutError):
            async with carehare.connect("amqp://guest:guest@127.0.0.1:%d/" % port,
                                        connect_timeout=1e-9):
                pass


async def test_connect_awaited_close_many_times(url):
    connection = await carehare.connect(url)
    assert isinstance(connection, carehare.Connection)
    assert isinstance(connection, GObject.Object)
    assert not connection.closed.done()
    await connection.close()
    await connection.close()
    assert await connection.closed is None
    assert connection.props.is_closed


async def test_close_when_rabbitmq_closes_with_error(url):
    # An unknown exchange type is a connection error for RabbitMQ.
    with pytest.raises(carehare.ConnectionClosedByServer) as cm:
        async with carehare.connect(url) as connection:
            with pytest.raises(carehare.ConnectionClosed) as pending:
                await connection.exchange_declare(unique("x"), exchange_type="no-such-type")
            assert not isinstance(pending.value, carehare.ConnectionClosedByServer)
            with pytest.raises(carehare.ConnectionClosedByServer):
                await connection.closed
    assert cm.value.reply_code == 503
    assert "503 COMMAND_INVALID" in str(cm.value)


async def test_run_picks_a_glib_loop():
    # carehare.run() in a fresh interpreter: the tests' own loop is taken.
    script = textwrap.dedent("""
        import sys
        import gi
        gi.require_version("Carehare", "1.0")
        from gi.repository import Carehare as carehare

        async def main(url):
            async with carehare.connect(url) as connection:
                return await connection.queue_declare("", exclusive=True)

        print(carehare.run(main(sys.argv[1])))
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env("CAREHARE_TEST_AMQP_URI"),
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.startswith(b"amq.gen-")


async def test_run_twice_one_connection_and_leftover_tasks():
    # Two carehare.run() calls in one program: a connection made in the
    # first is used and closed in the second, and a task the first left
    # pending is cancelled at its end, as asyncio.run() does.
    script = textwrap.dedent("""
        import asyncio
        import sys
        import gi
        gi.require_version("Carehare", "1.0")
        from gi.repository import Carehare as carehare

        state = {}

        async def first(url):
            state["connection"] = await carehare.connect(url)
            state["leftover"] = asyncio.ensure_future(asyncio.sleep(3600))
            return await state["connection"].queue_declare("", exclusive=True)

        async def second():
            assert state["leftover"].cancelled(), "leftover task not cancelled"
            connection = state["connection"]
            queue = await connection.queue_declare("", exclusive=True)
            await connection.close()
            await connection.closed
            return queue

        print(carehare.run(first(sys.argv[1])))
        print(carehare.run(second()))
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env("CAREHARE_TEST_AMQP_URI"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    lines = out.split()
    assert len(lines) == 2 and all(line.startswith(b"amq.gen-") for line in lines)


async def test_run_loop_runs_call_soon_callbacks_in_order():
    # carehare.run() on gbulb runs call_soon() callbacks from one queue
    # (not one GLib source each): asyncio's order, cancelled handles
    # skipped, a failing callback reported without stopping the others,
    # call_soon_threadsafe() from another thread, and GLib I/O in between.
    script = textwrap.dedent("""
        import asyncio
        import sys
        import threading
        import gi
        gi.require_version("Carehare", "1.0")
        from gi.repository import Carehare as carehare

        async def main(url):
            loop = asyncio.get_running_loop()
            order, errors = [], []
            loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))

            def first():
                order.append(1)
                loop.call_soon(order.append, 4)  # after those already queued

            loop.call_soon(first)
            loop.call_soon(order.append, "cancelled").cancel()
            loop.call_soon(order.append, 2)
            loop.call_soon(lambda: 1 / 0)
            loop.call_soon(order.append, 3)
            from_thread = loop.create_future()
            threading.Thread(target=loop.call_soon_threadsafe,
                             args=(from_thread.set_result, "thread")).start()
            assert await from_thread == "thread"
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            async with carehare.connect(url) as connection:
                queue = await connection.queue_declare("", exclusive=True)
                futures = [connection.publish(b"x", routing_key=queue) for _ in range(300)]
                assert all(f.get_loop() is loop for f in futures)
                await asyncio.gather(*futures)
                purged = await connection.queue_purge(queue)
            return order, [type(e).__name__ for e in errors], purged

        print(carehare.run(main(sys.argv[1])))
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, env("CAREHARE_TEST_AMQP_URI"),
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out == b"([1, 2, 3, 4], ['ZeroDivisionError'], 300)\n"
