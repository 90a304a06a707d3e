# SPDX-License-Identifier: LGPL-2.1-or-later
"""carehare-glib end to end from PyGObject, against the private broker.

Run by `meson test --suite bindings` with /usr/bin/python3 (Debian's, which
has PyGObject), GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the build
directory and the broker's URIs in the environment
(`eval "$(test-server/broker env)"`). Prints TAP.

PyGObject 3.42 cannot await GIO async methods, so every call goes through
call(): it starts `<name>_async` with a callback, runs a GLib.MainLoop until
the callback fires (or a timeout fails the test) and returns
`<name>_finish`. That the pairs resolve by name here is also what lets
PyGObject 3.50+ await them directly (`await conn.queue_declare_async(...)`).
"""
import gc
import os
import sys
import traceback
import uuid

import gi

gi.require_version("Carehare", "1.0")
gi.require_version("Gio", "2.0")
from gi.repository import Carehare, Gio, GLib  # noqa: E402

TIMEOUT_SECONDS = 15


class Timeout(Exception):
    pass


def env(name):
    value = os.environ.get(name)
    if not value:
        # Integration tests fail, never skip, without the broker.
        raise RuntimeError(name + ' is not set: run eval "$(test-server/broker env)"')
    return value


def unique(prefix):
    return "carehare-py-%s-%s" % (prefix, uuid.uuid4().hex[:12])


def run_until(done, timeout=TIMEOUT_SECONDS):
    """Iterates a main loop until done() is true, or raises Timeout."""
    loop = GLib.MainLoop()
    expired = []

    def check():
        if done():
            loop.quit()
            return GLib.SOURCE_REMOVE
        return GLib.SOURCE_CONTINUE

    def on_timeout():
        expired.append(True)
        loop.quit()
        return GLib.SOURCE_REMOVE

    if done():
        return
    poll_id = GLib.timeout_add(5, check)
    timeout_id = GLib.timeout_add_seconds(timeout, on_timeout)
    loop.run()
    for source_id in (poll_id, timeout_id):
        if GLib.MainContext.default().find_source_by_id(source_id):
            GLib.source_remove(source_id)
    if expired and not done():
        raise Timeout("nothing happened in %d s" % timeout)


def call(target, name, *args, timeout=TIMEOUT_SECONDS):
    """target.<name>_async(*args, None, callback), then <name>_finish.

    Passes None for the trailing cancellable. Raises GLib.Error as the
    _finish does, or Timeout.
    """
    results = []
    getattr(target, name + "_async")(*args, None, lambda source, result: results.append(result))
    run_until(lambda: results, timeout)
    return getattr(target, name + "_finish")(results[0])


def expect_error(domain, code, function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except GLib.Error as error:
        assert error.matches(domain, code), \
            "expected %s/%d, got %s/%d: %s" % (GLib.quark_to_string(domain), code,
                                                error.domain, error.code, error.message)
        return error
    raise AssertionError("expected an error %s/%d, got success"
                         % (GLib.quark_to_string(domain), code))


def tls_uri():
    return env("CAREHARE_TEST_AMQPS_URI")


def plain_uri():
    return env("CAREHARE_TEST_AMQP_URI")


def connect(uri=None):
    return call(Carehare.Connection, "new", uri or tls_uri())


def declare_queue(conn, flags=Carehare.QueueFlags.EXCLUSIVE, arguments=None):
    name, _messages, _consumers = call(conn, "queue_declare", "", flags, arguments)
    return name


def publish(conn, queue, body, properties=None, exchange="",
            flags=Carehare.PublishFlags.NONE):
    return call(conn, "publish", exchange, queue, GLib.Bytes.new(body), properties, flags)


def close(conn):
    if not conn.get_is_closed():
        call(conn, "close")


def nested_headers():
    """A headers table with every kind of nesting RabbitMQ passes through."""
    V = GLib.Variant
    return V("a{sv}", {
        "x-int": V("i", 42),
        "x-long": V("x", -(2 ** 40)),
        "x-string": V("s", "h\u00e9llo"),
        "x-bool": V("b", True),
        "x-double": V("d", 2.5),
        "x-bytes": V("ay", b"\x00\xffbin"),
        "x-list": V("av", [V("i", 1), V("s", "two"), V("av", [V("b", False)])]),
        "x-table": V("a{sv}", {
            "inner": V("s", "value"),
            "deeper": V("a{sv}", {"n": V("q", 7), "when": V("t", 1700000000)}),
        }),
        "x-decimal": V("(yi)", (2, 12345)),
        "x-void": V("()", ()),
    })


# ---- tests ------------------------------------------------------------------

def test_connect_tls_client_certificate():
    conn = connect()
    try:
        assert isinstance(conn, Carehare.Connection)
        assert not conn.get_is_closed() and not conn.props.is_closed
        assert conn.get_frame_max() > 0 and conn.props.frame_max == conn.get_frame_max()
        assert conn.get_channel_max() > 0
        server = conn.get_server_properties()
        assert server.get_type_string() == "a{sv}", server.get_type_string()
        assert server.unpack()["product"] == "RabbitMQ", server.unpack().get("product")
        assert conn.props.server_properties.equal(server)
    finally:
        close(conn)


def test_async_initable_tls_properties():
    certs = env("CAREHARE_TEST_CERT_DIR")
    # The same listener, but trust and identity come from GIO objects
    # instead of the URI's cacertfile/certfile/keyfile.
    uri = tls_uri().split("?", 1)[0]
    database = Gio.TlsFileDatabase.new(os.path.join(certs, "ca.pem"))
    certificate = Gio.TlsCertificate.new_from_files(os.path.join(certs, "client.pem"),
                                                    os.path.join(certs, "client-key.pem"))
    conn = Carehare.Connection(uri=uri, tls_database=database, tls_certificate=certificate,
                               connect_timeout=10000)
    assert isinstance(conn, Gio.AsyncInitable)
    assert call(conn, "init", GLib.PRIORITY_DEFAULT) is True
    try:
        assert conn.props.tls_database == database
        assert conn.props.tls_certificate == certificate
        assert conn.props.connect_timeout == 10000
        assert not conn.get_is_closed()
        name = declare_queue(conn)
        assert name.startswith("amq.gen-"), name
    finally:
        close(conn)


def test_async_initable_without_client_certificate_fails():
    certs = env("CAREHARE_TEST_CERT_DIR")
    database = Gio.TlsFileDatabase.new(os.path.join(certs, "ca.pem"))
    conn = Carehare.Connection(uri=tls_uri().split("?", 1)[0], tls_database=database,
                               connect_timeout=10000)
    try:
        call(conn, "init", GLib.PRIORITY_DEFAULT)
    except GLib.Error as error:
        # The broker requires a client certificate: the handshake (or the
        # first read after it, with TLS 1.3) fails.
        assert error.domain in ("g-tls-error-quark", "g-io-error-quark", "carehare-error-quark"), \
            error.domain
    else:
        raise AssertionError("connected without a client certificate")


def test_invalid_uri():
    expect_error(Carehare.error_quark(), Carehare.Error.INVALID_URI,
                 call, Carehare.Connection, "new", "amqp://guest:guest@127.0.0.1:notaport/")


def test_queue_declare_out_params():
    conn = connect()
    try:
        arguments = GLib.Variant("a{sv}", {"x-message-ttl": GLib.Variant("i", 60000),
                                           "x-max-length": GLib.Variant("i", 100)})
        result = call(conn, "queue_declare", "", Carehare.QueueFlags.EXCLUSIVE, arguments)
        assert isinstance(result, tuple) and len(result) == 3, repr(result)
        name, messages, consumers = result
        assert name.startswith("amq.gen-"), name
        assert (messages, consumers) == (0, 0), result

        publish(conn, name, b"one")
        publish(conn, name, b"two")
        again = call(conn, "queue_declare", name,
                     Carehare.QueueFlags.PASSIVE, None)
        assert tuple(again) == (name, 2, 0), repr(again)

        purged = call(conn, "queue_purge", name)
        assert tuple(purged) == (True, 2), repr(purged)
        deleted = call(conn, "queue_delete", name, Carehare.QueueDeleteFlags.NONE)
        assert tuple(deleted) == (True, 0), repr(deleted)
    finally:
        close(conn)


def test_publish_consume_ack_with_properties():
    conn = connect()
    try:
        exchange = unique("fanout")
        assert call(conn, "exchange_declare", exchange, "fanout",
                    Carehare.ExchangeFlags.AUTO_DELETE, None) is True
        queue = declare_queue(conn)
        assert call(conn, "queue_bind", queue, exchange, "", None) is True

        headers = nested_headers()
        props = Carehare.Properties(content_type="application/json",
                                    correlation_id="corr-1",
                                    delivery_mode=2, priority=5,
                                    timestamp=1700000000,
                                    type="order.created",
                                    app_id="carehare-py")
        props.set_headers(headers)
        assert props.get_message_type() == "order.created"
        body = b'{"id": 1, "bytes": "\x00\xff"}'
        assert publish(conn, "", body, props, exchange=exchange) is True

        consumer = call(conn, "acking_consumer", queue, 0, 10)
        assert isinstance(consumer, Carehare.Consumer)
        assert consumer.get_queue() == queue and consumer.props.queue == queue
        assert consumer.get_consumer_tag()

        delivery = call(consumer, "next_delivery")
        assert isinstance(delivery, Carehare.Delivery)
        assert delivery.get_body().get_data() == body
        assert delivery.props.body.get_data() == body
        assert delivery.get_exchange() == exchange
        assert delivery.get_routing_key() == ""
        assert delivery.get_redelivered() is False
        assert delivery.get_consumer_tag() == consumer.get_consumer_tag()
        assert delivery.get_delivery_tag() >= 1

        got = delivery.get_properties()
        assert got.get_content_type() == "application/json"
        assert got.props.correlation_id == "corr-1"
        assert got.get_delivery_mode() == 2
        assert got.get_priority() == 5
        assert got.get_timestamp() == 1700000000
        assert got.get_message_type() == "order.created" and got.props.type == "order.created"
        assert got.get_app_id() == "carehare-py"
        assert got.get_reply_to() is None and got.get_expiration() is None

        received = got.get_headers()
        assert isinstance(received, GLib.Variant)
        assert received.get_type_string() == "a{sv}"
        assert received.equal(headers), "%s != %s" % (received, headers)
        unpacked = received.unpack()
        assert unpacked["x-table"]["deeper"]["n"] == 7
        assert unpacked["x-list"] == [1, "two", [False]]
        assert bytes(unpacked["x-bytes"]) == b"\x00\xffbin"
        assert received.lookup_value("x-table", None).lookup_value("deeper", None) \
            .lookup_value("when", GLib.VariantType("t")).get_uint64() == 1700000000

        consumer.ack(delivery.get_delivery_tag())
        call(consumer, "close")
        again = call(conn, "queue_declare", queue, Carehare.QueueFlags.PASSIVE, None)
        assert again[1] == 0, "the acked message is still in the queue: %r" % (again,)

        assert call(conn, "queue_unbind", queue, exchange, "", None) is True
        assert call(conn, "exchange_delete", exchange, Carehare.ExchangeDeleteFlags.NONE) is True
    finally:
        close(conn)


def test_publish_to_missing_exchange_is_404():
    conn = connect()
    try:
        missing = unique("missing")
        error = expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                             publish, conn, "key", b"lost", exchange=missing)
        assert error.domain == "carehare-error-quark"
        assert error.code == Carehare.Error.CHANNEL_CLOSED_BY_SERVER
        assert Carehare.error_get_reply_code(error) == 404, error.message
        assert "NOT_FOUND" in error.message and missing in error.message, error.message

        # Only that operation failed: the connection is still usable.
        assert not conn.get_is_closed()
        assert declare_queue(conn).startswith("amq.gen-")
    finally:
        close(conn)


def test_consume_missing_queue_is_404():
    conn = connect()
    try:
        error = expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                             call, conn, "acking_consumer", unique("missing"), 0, 1)
        assert Carehare.error_get_reply_code(error) == 404, error.message
        error = expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                             call, conn, "queue_declare", unique("missing"),
                             Carehare.QueueFlags.PASSIVE, None)
        assert Carehare.error_get_reply_code(error) == 404, error.message
    finally:
        close(conn)


def test_mandatory_unroutable():
    conn = connect()
    try:
        expect_error(Carehare.error_quark(), Carehare.Error.UNROUTABLE,
                     publish, conn, unique("nobody"), b"x",
                     flags=Carehare.PublishFlags.MANDATORY)
    finally:
        close(conn)


def test_nack_requeue_redelivers():
    conn = connect()
    try:
        queue = declare_queue(conn)
        publish(conn, queue, b"try again")
        consumer = call(conn, "acking_consumer", queue, 0, 1)
        first = call(consumer, "next_delivery")
        assert first.get_redelivered() is False
        consumer.nack(first.get_delivery_tag(), True)

        second = call(consumer, "next_delivery")
        assert second.get_body().get_data() == b"try again"
        assert second.get_redelivered() is True
        assert second.props.redelivered is True
        assert second.get_delivery_tag() != first.get_delivery_tag()
        consumer.ack(second.get_delivery_tag())

        # nack without requeue drops the message.
        publish(conn, queue, b"drop me")
        third = call(consumer, "next_delivery")
        consumer.nack(third.get_delivery_tag(), False)
        call(consumer, "close")
        assert call(conn, "queue_declare", queue, Carehare.QueueFlags.PASSIVE, None)[1] == 0
    finally:
        close(conn)


def test_acking_consumer_full_tag_priority_and_ack_up_to():
    conn = connect()
    try:
        queue = declare_queue(conn)
        tag = unique("tag")
        arguments = GLib.Variant("a{sv}", {"x-priority": GLib.Variant("i", 5)})
        consumer = call(conn, "acking_consumer_full", queue, 0, 10,
                        Carehare.ConsumeFlags.EXCLUSIVE, tag, arguments)
        assert consumer.get_consumer_tag() == tag
        # Exclusive: a second consumer is refused 403.
        error = expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                             call, conn, "acking_consumer_full", queue, 0, 1,
                             Carehare.ConsumeFlags.NONE, None, None)
        assert Carehare.Error.get_reply_code(error) == 403
        # The same tag again: refused before anything is sent.
        expect_error(Gio.io_error_quark(), Gio.IOErrorEnum.EXISTS,
                     call, conn, "acking_consumer_full", queue, 0, 1,
                     Carehare.ConsumeFlags.NONE, tag, None)

        for i in range(5):
            publish(conn, queue, b"m%d" % i)
        deliveries = [call(consumer, "next_delivery") for _ in range(5)]
        assert [d.get_consumer_tag() for d in deliveries] == [tag] * 5
        consumer.ack_up_to(deliveries[2].get_delivery_tag())
        consumer.ack_up_to(deliveries[2].get_delivery_tag())  # again: ignored
        consumer.nack_up_to(deliveries[4].get_delivery_tag(), True)
        again = [call(consumer, "next_delivery") for _ in range(2)]
        assert [d.get_body().get_data() for d in again] == [b"m3", b"m4"]
        assert all(d.get_redelivered() for d in again)
        consumer.ack_up_to(again[1].get_delivery_tag())
        call(consumer, "close")
        assert call(conn, "queue_declare", queue, Carehare.QueueFlags.PASSIVE, None)[1] == 0
    finally:
        close(conn)


def test_next_deliveries_returns_a_list():
    conn = connect()
    try:
        queue = declare_queue(conn)
        for i in range(5):
            publish(conn, queue, b"batch %d" % i)
        consumer = call(conn, "acking_consumer", queue, 0, 10)
        got = []
        while len(got) < 5:
            batch = call(consumer, "next_deliveries", 0)
            assert isinstance(batch, list) and 1 <= len(batch) <= 5
            for delivery in batch:
                got.append(delivery.get_body().get_data())
                consumer.ack(delivery.get_delivery_tag())
        assert got == [b"batch %d" % i for i in range(5)]
        call(consumer, "close")
    finally:
        close(conn)


def test_consumer_closed_signal():
    conn = connect()
    try:
        queue = declare_queue(conn)
        consumer = call(conn, "acking_consumer", queue, 0, 1)
        emitted = []
        consumer.connect("closed", lambda c, error: emitted.append((c, error)))

        # A pending next_delivery ends with CHANNEL_CLOSED (end of stream).
        pending = []
        consumer.next_delivery_async(None, lambda c, r: pending.append(r))
        call(consumer, "close")
        run_until(lambda: pending and emitted)
        assert emitted == [(consumer, None)], emitted
        assert consumer.get_is_closed() and consumer.props.is_closed
        expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED,
                     consumer.next_delivery_finish, pending[0])
        expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED,
                     call, consumer, "next_delivery")
        call(consumer, "close")  # idempotent
        consumer.close_async(None, None)  # a NULL callback is fine
        assert len(emitted) == 1

        # The broker cancelling the consumer (its queue deleted) closes it
        # with the server's error.
        queue2 = declare_queue(conn)
        consumer2 = call(conn, "acking_consumer", queue2, 0, 1)
        errors = []
        consumer2.connect("closed", lambda c, error: errors.append(error))
        call(conn, "queue_delete", queue2, Carehare.QueueDeleteFlags.NONE)
        run_until(lambda: errors)
        assert errors[0] is not None
        assert errors[0].matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER), \
            errors[0].message
        expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                     call, consumer2, "next_delivery")
    finally:
        close(conn)


def test_connection_closed_signal():
    conn = connect()
    queue = declare_queue(conn)
    consumer = call(conn, "acking_consumer", queue, 0, 1)
    conn_closed = []
    consumer_closed = []
    conn.connect("closed", lambda c, error: conn_closed.append((c, error)))
    consumer.connect("closed", lambda c, error: consumer_closed.append(error))
    notified = []
    conn.connect("notify::is-closed", lambda c, pspec: notified.append(pspec.name))

    pending = []
    consumer.next_delivery_async(None, lambda c, r: pending.append(r))
    assert call(conn, "close") is True
    run_until(lambda: pending and consumer_closed)

    assert conn_closed == [(conn, None)], conn_closed
    assert conn.get_is_closed() and conn.props.is_closed
    assert "is-closed" in notified
    assert consumer_closed[0] is not None
    assert consumer_closed[0].matches(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED)
    expect_error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED,
                 consumer.next_delivery_finish, pending[0])

    # Operations after close fail at once; close again is fine.
    expect_error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED,
                 call, conn, "queue_declare", "", Carehare.QueueFlags.EXCLUSIVE, None)
    assert call(conn, "close") is True
    assert len(conn_closed) == 1


def test_close_during_init_stops_connecting():
    # The construction style of Python and GJS: new, init_async, and a
    # close before the connect completed. Closing stops connecting.
    conn = Carehare.Connection(uri=plain_uri())
    inited = []
    conn.init_async(GLib.PRIORITY_DEFAULT, None, lambda c, r: inited.append(r))
    assert call(conn, "close") is True
    run_until(lambda: inited)
    expect_error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED,
                 conn.init_finish, inited[0])
    # It stays closed: nothing connects behind the program's back.
    loop = GLib.MainLoop()
    GLib.timeout_add(300, loop.quit)
    loop.run()
    assert conn.get_is_closed()
    expect_error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED,
                 call, conn, "queue_declare", "", Carehare.QueueFlags.EXCLUSIVE, None)


def test_plain_uri():
    conn = connect(plain_uri())
    try:
        assert declare_queue(conn).startswith("amq.gen-")
    finally:
        close(conn)


def test_async_methods_are_awaitable_by_convention():
    """What PyGObject 3.50+ needs to make `<name>_async` awaitable: a
    GAsyncReadyCallback with (scope async), one cancellable, no return or
    out values, and `<name>_finish` next to it in the same class."""
    checked = 0
    for cls in (Carehare.Connection, Carehare.Consumer):
        methods = {m.get_name(): m for m in cls.__info__.get_methods()}
        for name, method in methods.items():
            if not name.endswith("_async"):
                continue
            finish = name[:-len("_async")] + "_finish"
            assert finish in methods, "%s.%s has no %s" % (cls.__name__, name, finish)
            args = method.get_arguments()
            callbacks = [a for a in args if a.get_type().get_interface() is not None
                         and a.get_type().get_interface().get_name() == "AsyncReadyCallback"]
            assert len(callbacks) == 1, name
            # GI_SCOPE_TYPE_ASYNC
            assert callbacks[0].get_scope() == 2, "%s: callback scope %d" % (name, callbacks[0].get_scope())
            cancellables = [a for a in args if a.get_type().get_interface() is not None
                            and a.get_type().get_interface().get_name() == "Cancellable"]
            assert len(cancellables) == 1, name
            assert all(a.get_direction() == 0 for a in args), name  # GI_DIRECTION_IN
            checked += 1
    assert checked >= 15, checked


def test_new_for_uris_first_that_answers():
    # Port 1 refuses at once; the TLS broker answers.
    conn = call(Carehare.Connection, "new_for_uris", ["amqp://guest:guest@127.0.0.1:1/", tls_uri()])
    try:
        assert isinstance(conn, Carehare.Connection)
        assert declare_queue(conn).startswith("amq.gen-")
    finally:
        close(conn)


def test_new_for_uris_reply_code_is_the_last_attempts():
    # The reply code read back from a copied error's message is the last
    # attempt's: a keeper retries or gives up on it.
    port = env("CAREHARE_TEST_BROKER_PORT")
    bad_login = "amqp://guest:wrong@127.0.0.1:%s/" % port
    no_vhost = "amqp://guest:guest@127.0.0.1:%s/no-such-vhost" % port
    for uris, code in (([bad_login, no_vhost], 530), ([no_vhost, bad_login], 403)):
        error = expect_error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED_BY_SERVER,
                             call, Carehare.Connection, "new_for_uris", uris)
        assert Carehare.error_get_reply_code(error) == code, error.message


def finish_like_pygobject_350(cls, start, finish_name):
    """Completes an async call the way PyGObject 3.50's awaitables do: the
    `<name>_finish` info found next to `<name>_async`, invoked with
    (source_object, result), or (result,) when the source object is NULL."""
    finish = cls.__info__.find_method(finish_name)
    results = []
    start(lambda source, result: results.append((source, result)))
    run_until(lambda: results)
    source, result = results[0]
    return finish.invoke(*((source, result) if source is not None else (result,)))


def test_await_dispatch_new_async():
    conn = finish_like_pygobject_350(
        Carehare.Connection, lambda cb: Carehare.Connection.new_async(tls_uri(), None, cb),
        "new_finish")
    assert isinstance(conn, Carehare.Connection)
    try:
        # Methods get (self, result).
        name, messages, consumers = finish_like_pygobject_350(
            Carehare.Connection,
            lambda cb: conn.queue_declare_async("", Carehare.QueueFlags.EXCLUSIVE, None, None, cb),
            "queue_declare_finish")
        assert name.startswith("amq.gen-") and (messages, consumers) == (0, 0)
    finally:
        close(conn)


def test_await_dispatch_new_for_uris_async():
    # new_for_uris_async goes through GAsyncInitable, so its result has the
    # connection as source object and PyGObject 3.50 can pair the finish.
    conn = finish_like_pygobject_350(
        Carehare.Connection,
        lambda cb: Carehare.Connection.new_for_uris_async([tls_uri()], None, cb),
        "new_for_uris_finish")
    assert isinstance(conn, Carehare.Connection)
    close(conn)


def test_worker_without_consumer_variable_keeps_receiving():
    # The natural worker keeps no variable for its consumer: each callback
    # asks for the next message. The waiting call holds the consumer (as a
    # GIO call holds its object), so it keeps receiving; before issue 13 it
    # was closed at once with "the program dropped its last reference".
    conn = connect(plain_uri())
    try:
        queue = declare_queue(conn)
        received = []
        errors = []

        def on_delivery(consumer, result):
            try:
                delivery = consumer.next_delivery_finish(result)
            except GLib.Error as error:
                errors.append(error)
                return
            received.append(bytes(delivery.get_body().get_data()).decode())
            consumer.ack(delivery.get_delivery_tag())
            consumer.next_delivery_async(None, on_delivery)

        def on_started(connection, result):
            connection.acking_consumer_finish(result).next_delivery_async(None, on_delivery)

        for body in (b"one", b"two"):
            publish(conn, queue, body)
        conn.acking_consumer_async(queue, 0, 10, None, on_started)
        run_until(lambda: len(received) >= 2 or errors)
        assert not errors, errors[0].message
        gc.collect()
        later = GLib.get_monotonic_time() + 100 * 1000
        run_until(lambda: GLib.get_monotonic_time() > later)
        publish(conn, queue, b"three")
        run_until(lambda: len(received) >= 3 or errors)
        assert not errors, errors[0].message
        assert received == ["one", "two", "three"], received
    finally:
        close(conn)


def test_call_direct_reply_to():
    conn = connect()
    try:
        queue = declare_queue(conn)
        server = call(conn, "acking_consumer", queue, 0, 10)
        answered = []

        def on_request(consumer, result):
            request = consumer.next_delivery_finish(result)
            props = request.get_properties()
            reply_props = Carehare.Properties(correlation_id=props.get_correlation_id())
            body = b"re: " + request.get_body().get_data()
            conn.publish_async("", props.get_reply_to(), GLib.Bytes.new(body), reply_props,
                               Carehare.PublishFlags.NONE, None, None)
            consumer.ack(request.get_delivery_tag())
            answered.append(props.get_reply_to())
            consumer.next_delivery_async(None, on_request)

        server.next_delivery_async(None, on_request)

        # The caller's correlation id, or a fresh one; reply_to is the
        # library's.
        mine = Carehare.Properties(correlation_id="py-call-1")
        reply = call(conn, "call", "", queue, GLib.Bytes.new(b"ping"), mine,
                     Carehare.PublishFlags.MANDATORY)
        assert isinstance(reply, Carehare.Delivery)
        assert reply.get_body().get_data() == b"re: ping"
        assert reply.get_properties().get_correlation_id() == "py-call-1"
        assert reply.get_delivery_tag() == 0
        assert answered[0].startswith("amq.rabbitmq.reply-to.")

        reply = call(conn, "call", "", queue, GLib.Bytes.new(b"pong"), None,
                     Carehare.PublishFlags.NONE)
        assert reply.get_body().get_data() == b"re: pong"
        assert reply.get_properties().get_correlation_id()

        expect_error(Carehare.error_quark(), Carehare.Error.UNROUTABLE,
                     call, conn, "call", "", unique("nobody"), GLib.Bytes.new(b"x"), None,
                     Carehare.PublishFlags.MANDATORY)

        missing = unique("missing")
        error = expect_error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                             call, conn, "call", missing, "rk", GLib.Bytes.new(b"x"), None,
                             Carehare.PublishFlags.NONE)
        assert Carehare.error_get_reply_code(error) == 404, error.message
    finally:
        close(conn)


def test_call_cancelled():
    conn = connect()
    try:
        queue = declare_queue(conn)  # nobody answers
        cancellable = Gio.Cancellable()
        results = []
        conn.call_async("", queue, GLib.Bytes.new(b"wait"), None, Carehare.PublishFlags.NONE,
                        cancellable, lambda source, result: results.append(result))
        cancellable.cancel()
        run_until(lambda: results)
        expect_error(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED,
                     conn.call_finish, results[0])
    finally:
        close(conn)


TESTS = [value for key, value in list(globals().items()) if key.startswith("test_")]


def main():
    failures = 0
    print("1..%d" % len(TESTS))
    for number, test in enumerate(TESTS, 1):
        try:
            test()
        except Exception:  # noqa: BLE001 - report every failure as TAP
            todo = getattr(test, "todo", None)
            if todo is None:
                failures += 1
            print("not ok %d - %s%s" % (number, test.__name__,
                                        " # TODO " + todo if todo else ""))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        else:
            todo = getattr(test, "todo", None)
            print("ok %d - %s%s" % (number, test.__name__, " # TODO " + todo if todo else ""))
        sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
