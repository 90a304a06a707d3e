# SPDX-License-Identifier: LGPL-2.1-or-later
"""asyncio for carehare-glib: the Python `carehare` library's API on the typelib.

    import asyncio
    from gi.repository import Carehare as carehare

    async def main():
        async with carehare.connect("amqp://guest:guest@localhost/") as connection:
            await connection.queue_declare("my-queue", exclusive=True)
            await connection.publish(b"hello", routing_key="my-queue")
            async with connection.acking_consumer("my-queue") as consumer:
                async for message in consumer:
                    print(message)
                    consumer.close()

    carehare.run(main())

The asyncio loop must be driven by the GLib main context the connection was
made in: `carehare.run()` picks PyGObject's own `gi.events` loop (3.50 and
later) or `gbulb` (Debian 12's PyGObject 3.42). docs/python.md is the
guide; every difference from the `carehare` library is listed there.
"""
import asyncio
import atexit
import collections
import datetime
import decimal
import math
import os
import re
import shutil
import ssl as _ssl
import tempfile
import threading

from gi.repository import Gio, GLib

from ..module import get_introspection_module
from ..overrides import override

Carehare = get_introspection_module("Carehare")

__all__ = [
    "BadBytesFromServer",
    "ChannelClosed",
    "ChannelClosedByServer",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedByHeartbeatMonitor",
    "ConnectionClosedByServer",
    "Consumer",
    "MessageTooLarge",
    "ServerSentNack",
    "Session",
    "Unroutable",
    "connect",
    "run",
    "session",
    "to_field_table",
]

_DOMAIN = GLib.quark_to_string(Carehare.error_quark())
# The first "DDD NAME" of a message is the reply code, as in
# carehare_error_get_reply_code(); what follows it is the server's text.
_REPLY_RE = re.compile(r"(?:^| )([1-9][0-9][0-9]) ([A-Z].*)\Z", re.S)


# ---- exceptions -------------------------------------------------------------

class _CarehareError(GLib.Error):
    """Base of the exceptions below (private: as in `carehare`, none of the
    public classes derives from another). Each is a GLib.Error of the
    Carehare.Error domain, so `e.matches(Carehare.error_quark(), code)` and
    `Carehare.error_get_reply_code(e)` work as on a raw GLib.Error."""

    _code = Carehare.Error.FAILED
    _what = None  # "the connection" / "the channel": the seed's str()

    def __init__(self, message="", domain=_DOMAIN, code=None):
        super().__init__(message, domain, int(self._code) if code is None else code)
        match = _REPLY_RE.search(message)
        if match and self._code in (Carehare.Error.CONNECTION_CLOSED_BY_SERVER,
                                    Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
                                    Carehare.Error.UNROUTABLE):
            self.reply_code = int(match.group(1))
            self.reply_text = match.group(2)
        else:
            self.reply_code = 0
            self.reply_text = message

    def __str__(self):
        if self._what is not None and self.reply_code:
            return "RabbitMQ closed %s: %d %s" % (self._what, self.reply_code, self.reply_text)
        return self.message

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.message)

    def __reduce__(self):
        return (type(self), (self.message, self.domain, self.code))


class ConnectionClosed(_CarehareError):
    """The connection is closed, so the operation cannot go on."""
    _code = Carehare.Error.CONNECTION_CLOSED


class ConnectionClosedByServer(_CarehareError):
    """RabbitMQ closed the connection (Connection.Close): reply_code and
    reply_text say why. Raised by connect() and by the connection's context
    manager, close() and `closed`; pending operations get ConnectionClosed."""
    _code = Carehare.Error.CONNECTION_CLOSED_BY_SERVER
    _what = "the connection"


class ConnectionClosedByHeartbeatMonitor(_CarehareError):
    """Nothing arrived from the server for two heartbeat intervals."""
    _code = Carehare.Error.CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR


class ChannelClosed(_CarehareError):
    """The consumer was closed by the program: the end of its messages."""
    _code = Carehare.Error.CHANNEL_CLOSED


class ChannelClosedByServer(_CarehareError):
    """RabbitMQ refused the operation (404 NOT_FOUND, 406
    PRECONDITION_FAILED...) or cancelled the consumer (reply_code 0). The
    connection stays usable."""
    _code = Carehare.Error.CHANNEL_CLOSED_BY_SERVER
    _what = "the channel"


class ServerSentNack(_CarehareError):
    """RabbitMQ refused this published message (Basic.Nack)."""
    _code = Carehare.Error.SERVER_SENT_NACK


class Unroutable(_CarehareError):
    """A publish with mandatory=True reached no queue."""
    _code = Carehare.Error.UNROUTABLE


class BadBytesFromServer(_CarehareError):
    """The server sent bytes that are not AMQP 0-9-1."""
    _code = Carehare.Error.BAD_BYTES_FROM_SERVER


class MessageTooLarge(_CarehareError):
    """A delivery's body was over the connection's max_body_size: it was
    rejected unread; the consumer goes on with the next message."""
    _code = Carehare.Error.MESSAGE_TOO_LARGE


_CLASSES = {cls._code: cls for cls in (
    ConnectionClosed, ConnectionClosedByServer, ConnectionClosedByHeartbeatMonitor,
    ChannelClosed, ChannelClosedByServer, ServerSentNack, Unroutable,
    BadBytesFromServer, MessageTooLarge)}


def _exception(error, operation=True):
    """The Python exception for a GLib.Error from a *_finish().

    operation: the error ends an operation (not connecting or the
    connection's own end), so the connection's end is ConnectionClosed
    whatever closed it, as in `carehare`."""
    if error.matches(Carehare.error_quark(), error.code):
        code = Carehare.Error(error.code)
        if code == Carehare.Error.INVALID_URI:
            return ValueError(error.message)
        if operation and code in (Carehare.Error.CONNECTION_CLOSED_BY_SERVER,
                                  Carehare.Error.CONNECTION_CLOSED_BY_HEARTBEAT_MONITOR):
            return ConnectionClosed("Connection closed: " + error.message)
        cls = _CLASSES.get(code)
        if cls is not None:
            return cls(error.message)
        return error
    if error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT):
        return asyncio.TimeoutError(error.message)
    if error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_ARGUMENT):
        return ValueError(error.message)
    if error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CONNECTION_REFUSED):
        return ConnectionRefusedError(error.message)
    # (errno, message), as the ssl module makes them: SSLError's str() is
    # its strerror, and the repr of its args without one.
    if error.matches(Gio.tls_error_quark(), Gio.TlsError.BAD_CERTIFICATE):
        return _ssl.SSLCertVerificationError(_ssl.SSL_ERROR_SSL, error.message)
    if error.domain == GLib.quark_to_string(Gio.tls_error_quark()):
        return _ssl.SSLError(_ssl.SSL_ERROR_SSL, error.message)
    return error


# ---- field tables -----------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _to_variant(value, key):
    if isinstance(value, GLib.Variant):
        return value
    if isinstance(value, bool):
        return GLib.Variant("b", value)
    if isinstance(value, int):
        if -2**31 <= value < 2**31:
            return GLib.Variant("i", value)
        if -2**63 <= value < 2**63:
            return GLib.Variant("x", value)
        raise ValueError("%r: %d does not fit a signed 64-bit AMQP integer" % (key, value))
    if isinstance(value, float):
        return GLib.Variant("d", value)
    if isinstance(value, str):
        return GLib.Variant("s", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return GLib.Variant("ay", bytes(value))
    if value is None:
        return GLib.Variant("()", ())
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return GLib.Variant("t", int((value - _EPOCH).total_seconds()))
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        scale = max(0, -exponent)
        unscaled = int(value.scaleb(scale))
        if scale > 255 or not -2**31 <= unscaled < 2**31:
            raise ValueError("%r: %s does not fit an AMQP decimal" % (key, value))
        return GLib.Variant("(yi)", (scale, unscaled))
    if isinstance(value, dict):
        return to_field_table(value)
    if isinstance(value, (list, tuple)):
        return GLib.Variant("av", [_to_variant(v, key) for v in value])
    raise TypeError("%r: cannot put a %s in an AMQP field table" % (key, type(value).__name__))


def to_field_table(mapping):
    """A dict as the `a{sv}` GLib.Variant carehare-glib sends as an AMQP
    field table (docs/field-tables.md): bool, int (`I` when it fits 32 bits,
    else `l`), float (`d`), str, bytes (`x`), None (void), datetime
    (timestamp), Decimal, dict (nested table), list or tuple (array), or a
    GLib.Variant as it is. None gives None (an empty table)."""
    if mapping is None or isinstance(mapping, GLib.Variant):
        return mapping
    items = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise TypeError("field table keys are str, not %s" % type(key).__name__)
        items[key] = _to_variant(value, key)
    return GLib.Variant("a{sv}", items)


def _to_properties(properties):
    if properties is None or isinstance(properties, Carehare.Properties):
        return properties
    props = Carehare.Properties.new()
    for name, value in properties.items():
        if name == "headers":
            value = to_field_table(value)
        props.set_property(name.replace("_", "-"), value)
    return props


# ---- futures over GIO async calls -------------------------------------------

class _Running(threading.local):
    """The loop of carehare.run() running in this thread, if any."""
    loop = None


_running = _Running()


def _loop():
    # asyncio.get_running_loop() makes a getpid() system call each time in
    # Python 3.11: one per publish, when carehare.run()'s loop is known.
    loop = _running.loop
    if loop is not None:
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop()


def _start(begin, finish, convert=None, operation=True, cancellable=True, orphan=None):
    """Calls begin(cancellable, callback) now and returns a future of
    convert(finish(result)); cancelling the future cancels the call. A
    result that comes when the future was cancelled already (the call had
    gone too far to be cancelled) is given to orphan(value), if any."""
    future = _loop().create_future()
    gcancellable = Gio.Cancellable() if cancellable else None

    def done(_source, result, *_user_data):
        try:
            value = finish(result)
        except GLib.Error as e:
            if not future.done():
                future.set_exception(_exception(e, operation))
            return
        if not future.done():
            future.set_result(convert(value) if convert is not None else value)
        elif orphan is not None:
            orphan(value)

    if gcancellable is not None:
        future.add_done_callback(lambda f: gcancellable.cancel() if f.cancelled() else None)
    begin(gcancellable, done)
    return future


# Looked up once: an attribute of a gi module (GLib.Bytes...) costs about
# 1 us each time, as much as the rest of a publish's Python code.
_NO_FLAGS = Carehare.PublishFlags.NONE
_MANDATORY = Carehare.PublishFlags.MANDATORY
_new_bytes = GLib.Bytes.new
_new_cancellable = Gio.Cancellable


class _CancellingFuture(asyncio.Future):
    """A future that cancels its Gio.Cancellable when it is cancelled:
    cheaper than a done callback, which the loop would schedule on every
    completion."""

    def __init__(self, *, loop):
        super().__init__(loop=loop)
        self.cancellable = _new_cancellable()

    def cancel(self, *args, **kwargs):
        if not super().cancel(*args, **kwargs):
            return False
        self.cancellable.cancel()
        return True


def _publish(target, future, cancellable, message, exchange_name, routing_key, properties,
             mandatory):
    """publish_async() on a Session, completing `future`."""
    target.publish_async(exchange_name, routing_key, _new_bytes(bytes(message)),
                         None if properties is None else _to_properties(properties),
                         _MANDATORY if mandatory else _NO_FLAGS, cancellable,
                         _publish_done, future)
    return future


def _publish_done(source, result, future):
    """The callback of Connection.publish() and Session.publish(): one
    function for every call, the future as its user data."""
    try:
        source.publish_finish(result)
    except GLib.Error as e:
        if not future.done():
            future.set_exception(_exception(e))
        return
    if not future.done():
        future.set_result(None)


def _settle(future, error):
    """Completes a publish() future: None, or the exception of `error`."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(_exception(error))


def _settle_from(here, future, error):
    """_settle() from the connection's context, whose thread runs `here`
    (None: no loop): a future of another thread's loop is settled there."""
    loop = future.get_loop()
    if loop is here:
        _settle(future, error)
    else:
        loop.call_soon_threadsafe(_settle, future, error)


def _here():
    """The asyncio loop running in this thread, or None."""
    return _running.loop or asyncio._get_running_loop()


# An outcome that came before its publish() stored its future: possible
# when another thread publishes, since the connection's thread may read the
# confirm before that thread goes on. Whichever side comes second (both use
# dict.setdefault, atomic under the GIL) settles the future.
_CONFIRMED = object()


def _tracked_outcome(here, futures, publish_id, outcome):
    """From the connection's context, whose thread runs the loop `here`:
    settles the future of `publish_id` with `outcome` (_CONFIRMED or a
    GLib.Error), or leaves the outcome for publish() to find."""
    future = futures.setdefault(publish_id, outcome)
    if future is not outcome:
        del futures[publish_id]
        _settle_from(here, future, None if outcome is _CONFIRMED else outcome)


def _tracked_confirmed(connection, futures):
    """::publishes-confirmed of a Connection: one call per read, for all the
    publish() futures it confirms. They are this thread's, unless another
    thread's loop published on this connection."""
    here = _here()
    for publish_id in connection.take_confirmed():
        _tracked_outcome(here, futures, publish_id, _CONFIRMED)


def _tracked_failed(connection, publish_id, error, futures):
    """::publish-failed of a Connection: that publish() raises."""
    _tracked_outcome(_here(), futures, publish_id, error)


def _follow(future):
    """A new future with the outcome of `future` (cancelling it leaves
    `future` alone)."""
    follower = future.get_loop().create_future()

    def copy(f):
        if follower.done():
            return
        if f.cancelled():
            follower.cancel()
        elif f.exception() is not None:
            follower.set_exception(f.exception())
        else:
            follower.set_result(f.result())

    future.add_done_callback(copy)
    return follower


# ---- connecting -------------------------------------------------------------

_tls_databases = {}


def _tls_database(context):
    """A GTlsDatabase of the SSLContext's CA certificates, or None (the
    system's) when it holds none that Python can list.

    GIO's file database reads its PEM file again whenever it needs it, so
    the file lives, in a private directory, until the interpreter exits;
    one per set of certificates."""
    ders = tuple(context.get_ca_certs(binary_form=True))
    if not ders:
        return None
    database = _tls_databases.get(ders)
    if database is None:
        directory = tempfile.mkdtemp(prefix="carehare-ca-")
        atexit.register(shutil.rmtree, directory, True)
        path = os.path.join(directory, "ca-%d.pem" % len(_tls_databases))
        with open(path, "w") as f:
            for der in ders:
                f.write(_ssl.DER_cert_to_PEM_cert(der))
        database = _tls_databases[ders] = Gio.TlsFileDatabase.new(path)
    return database


class _Connecting:
    """What connect() returns: awaitable, and an async context manager."""

    def __init__(self, url, ssl, connect_timeout):
        self._url = url
        self._ssl = ssl
        self._connect_timeout = connect_timeout
        self._future = None
        self._connection = None

    def _start(self):
        if self._future is None:
            self._future = asyncio.ensure_future(self._connect())
        return self._future

    async def _connect(self):
        url, context = self._url, self._ssl
        if context is not None and url[:7].lower() == "amqp://":
            raise ValueError("When `url` starts with 'amqp://', you must not provide `ssl`: "
                             "make it start with 'amqps://' or omit `ssl`")
        props = {"uri": url}
        if context is not None:
            database = _tls_database(context)
            if database is not None:
                props["tls_database"] = database
        if self._connect_timeout is not None:
            if self._connect_timeout < 0:
                raise ValueError("connect_timeout must not be negative")
            # Milliseconds, rounded up: never down to 0, which means "the default".
            props["connect_timeout"] = max(1, math.ceil(self._connect_timeout * 1000))
        connection = Connection(**props)
        connection._carehare_watch(initialised=False)
        await _start(lambda c, cb: connection.init_async(GLib.PRIORITY_DEFAULT, c, cb),
                     connection.init_finish, operation=False)
        return connection

    def __await__(self):
        return self._start().__await__()

    async def __aenter__(self):
        self._connection = await self._start()
        return self._connection

    async def __aexit__(self, exc_type, exc_value, traceback):
        await self._connection.close()


def connect(url, *, ssl=None, connect_timeout=None):
    """Connects to RabbitMQ at `url` (amqp:// or amqps://).

    `async with carehare.connect(url) as connection:` closes it at the end
    and raises the server's error (ConnectionClosedByServer...) if the server
    closed it; `connection = await carehare.connect(url)` returns the
    Carehare.Connection. `ssl` is an ssl.SSLContext whose CA certificates
    are trusted (client certificates come from the URI's certfile and
    keyfile); `connect_timeout` is in seconds (rounded up to milliseconds)."""
    return _Connecting(url, ssl, connect_timeout)


def _gbulb_loop_class():
    """gbulb's loop with asyncio's own call_soon(): a queue that one GLib
    idle source runs, instead of a new idle source (made, attached and
    destroyed through PyGObject: about 10 us) per callback. Every future
    that completes schedules its done callbacks with call_soon(), so this
    is the larger part of the cost of an awaited publish. The order is
    asyncio's: first in, first run; what a callback schedules runs in the
    next main-loop iteration. call_soon_threadsafe() stays gbulb's."""
    from gbulb.glib_events import GLibEventLoop

    class _Loop(GLibEventLoop):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._carehare_ready = collections.deque()
            self._carehare_source = None

        def call_soon(self, callback, *args, context=None):
            handle = asyncio.Handle(callback, args, self, context)
            self._carehare_ready.append(handle)
            if self._carehare_source is None:
                self._carehare_attach()
            return handle

        def _carehare_attach(self):
            source = GLib.Idle()
            source.set_priority(GLib.PRIORITY_DEFAULT)
            source.set_callback(self._carehare_run_ready)
            source.attach(self._context)
            self._carehare_source = source

        call_soon_threadsafe = GLibEventLoop.call_soon

        def run(self):
            previous = _running.loop
            _running.loop = self
            try:
                super().run()
            finally:
                _running.loop = previous

        def _carehare_run_ready(self, *_user_data):
            ready = self._carehare_ready
            try:
                for _ in range(len(ready)):
                    handle = ready.popleft()
                    if not handle._cancelled:
                        handle._run()
            except BaseException:
                # Handle._run() lets only SystemExit and KeyboardInterrupt
                # out; PyGObject then removes this source: the rest of the
                # queue needs another.
                self._carehare_source = None
                if ready:
                    self._carehare_attach()
                raise
            if ready:
                return True  # GLib.SOURCE_CONTINUE
            self._carehare_source = None
            return False  # GLib.SOURCE_REMOVE

        def close(self):
            if self._carehare_source is not None:
                self._carehare_source.destroy()
                self._carehare_source = None
            self._carehare_ready.clear()
            super().close()

    return _Loop


def run(main):
    """Runs the coroutine `main` on an asyncio loop driven by the default
    GLib main context, and returns its result: PyGObject's
    gi.events.GLibEventLoopPolicy (3.50 and later), else gbulb."""
    try:
        from gi.events import GLibEventLoopPolicy
    except ImportError:
        import gbulb
        from gbulb.glib_events import GLibEventLoopPolicy as GbulbPolicy
        # Installed once: every run() uses the same loop, so that what one
        # run made (a connection, its `closed` future) works in the next.
        if not isinstance(asyncio.get_event_loop_policy(), GbulbPolicy):
            gbulb.install()
        # gbulb's default loop runs the default main context; a second loop
        # would get a new context, which carehare-glib does not run in.
        policy = asyncio.get_event_loop_policy()
        if policy._default_loop is None:
            policy._default_loop = _gbulb_loop_class()(context=GLib.main_context_default())
            policy._default_loop._policy = policy
        loop = policy.get_default_loop()
        asyncio.set_event_loop(loop)
        task = loop.create_task(main)
        try:
            return loop.run_until_complete(task)
        finally:
            # As asyncio.run(): the tasks main left behind are cancelled
            # and given the chance to finish.
            leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for leftover in leftovers:
                leftover.cancel()
            if leftovers:
                loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    asyncio.set_event_loop_policy(GLibEventLoopPolicy())
    return asyncio.run(main)


# ---- the connection ---------------------------------------------------------

@override
class Connection(Carehare.Connection):
    """Carehare.Connection, with the `carehare` library's asyncio methods.

    Every method sends at once and returns an asyncio future: start several,
    then await them."""

    def _carehare_watch(self, initialised=True):
        """Sets up `closed`: connect() does before the connection is
        initialised, so that nothing is missed."""
        if getattr(self, "_carehare_closed", None) is not None:
            return self._carehare_closed
        future = _loop().create_future()
        # Retrieved or not, the future's error is no bug of the program's.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._carehare_closed = future
        self._carehare_closing = False

        def on_closed(_conn, error):
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(_exception(error, operation=False))

        self._carehare_closed_handler = self.connect("closed", on_closed)
        if initialised and self.get_is_closed():
            future.set_result(None)
        return future

    @property
    def closed(self):
        """A future that completes when the connection has closed: with
        None when the program closed it, else with the reason
        (ConnectionClosedByServer, ConnectionClosedByHeartbeatMonitor,
        ConnectionClosed)."""
        return self._carehare_watch()

    def close(self):
        """Starts closing the connection at once and returns an awaitable
        that completes when it is closed, raising the server's error if the
        server had closed it. May be called many times."""
        closed = self._carehare_watch()
        if not self._carehare_closing and not closed.done():
            self._carehare_closing = True
            self.close_async(None, None)
        return _follow(closed)

    def queue_declare(self, queue_name, *, passive=False, durable=False, exclusive=False,
                      auto_delete=False, arguments=None):
        """Declares a queue; resolves to its name (the server's name when
        queue_name is "")."""
        flags = Carehare.QueueFlags.NONE
        if passive:
            flags |= Carehare.QueueFlags.PASSIVE
        if durable:
            flags |= Carehare.QueueFlags.DURABLE
        if exclusive:
            flags |= Carehare.QueueFlags.EXCLUSIVE
        if auto_delete:
            flags |= Carehare.QueueFlags.AUTO_DELETE
        table = to_field_table(arguments)
        return _start(lambda c, cb: self.queue_declare_async(queue_name, flags, table, c, cb),
                      self.queue_declare_finish, lambda r: r[0])

    def queue_bind(self, queue_name, exchange_name, *, routing_key="", arguments=None):
        table = to_field_table(arguments)
        return _start(lambda c, cb: self.queue_bind_async(queue_name, exchange_name, routing_key,
                                                          table, c, cb),
                      self.queue_bind_finish, lambda r: None)

    def queue_unbind(self, queue_name, exchange_name, *, routing_key="", arguments=None):
        table = to_field_table(arguments)
        return _start(lambda c, cb: self.queue_unbind_async(queue_name, exchange_name,
                                                            routing_key, table, c, cb),
                      self.queue_unbind_finish, lambda r: None)

    def queue_delete(self, queue_name, *, if_unused=False, if_empty=False):
        """Deletes a queue; resolves to the number of messages it held."""
        flags = Carehare.QueueDeleteFlags.NONE
        if if_unused:
            flags |= Carehare.QueueDeleteFlags.IF_UNUSED
        if if_empty:
            flags |= Carehare.QueueDeleteFlags.IF_EMPTY
        return _start(lambda c, cb: self.queue_delete_async(queue_name, flags, c, cb),
                      self.queue_delete_finish, lambda r: r[1])

    def queue_purge(self, queue_name):
        """Empties a queue; resolves to the number of messages removed."""
        return _start(lambda c, cb: self.queue_purge_async(queue_name, c, cb),
                      self.queue_purge_finish, lambda r: r[1])

    def exchange_declare(self, exchange_name, *, exchange_type="direct", passive=False,
                         durable=False, auto_delete=False, internal=False, arguments=None):
        flags = Carehare.ExchangeFlags.NONE
        if passive:
            flags |= Carehare.ExchangeFlags.PASSIVE
        if durable:
            flags |= Carehare.ExchangeFlags.DURABLE
        if auto_delete:
            flags |= Carehare.ExchangeFlags.AUTO_DELETE
        if internal:
            flags |= Carehare.ExchangeFlags.INTERNAL
        table = to_field_table(arguments)
        return _start(lambda c, cb: self.exchange_declare_async(exchange_name, exchange_type,
                                                                flags, table, c, cb),
                      self.exchange_declare_finish, lambda r: None)

    def exchange_delete(self, exchange_name, *, if_unused=False):
        flags = Carehare.ExchangeDeleteFlags.NONE
        if if_unused:
            flags |= Carehare.ExchangeDeleteFlags.IF_UNUSED
        return _start(lambda c, cb: self.exchange_delete_async(exchange_name, flags, c, cb),
                      self.exchange_delete_finish, lambda r: None)

    def publish(self, message, *, exchange_name="", routing_key="", properties=None,
                mandatory=False):
        """Publishes `message` (bytes); resolves when the broker confirmed
        it. Raises ServerSentNack, Unroutable (mandatory=True), or
        ChannelClosedByServer (e.g. 404 for a missing exchange).
        `properties` is a Carehare.Properties or a dict of its properties
        (`headers` a dict too).

        The message is handed to the connection before this returns.
        Cancelling the future (asyncio.wait_for...) stops waiting for the
        confirm and nothing more: the message is still published, even one
        still waiting for a channel or for a blocked connection. To be able
        to drop a waiting publish, call publish_async() with a
        Gio.Cancellable."""
        # The hot path of a publisher: publish_tracked(), whose confirms
        # come back in one ::publishes-confirmed per read, so no GTask, no
        # closure and no callback per message (each costs microseconds in
        # PyGObject); cancelling the future only stops waiting
        # (docs/python.md).
        futures = self.__dict__.get("_carehare_tracked")
        if futures is None:
            futures = self._carehare_tracked = {}
            self.connect("publishes-confirmed", _tracked_confirmed, futures)
            self.connect("publish-failed", _tracked_failed, futures)
        future = _loop().create_future()
        publish_id = self.publish_tracked(exchange_name, routing_key, _new_bytes(bytes(message)),
                                          None if properties is None
                                          else _to_properties(properties),
                                          _MANDATORY if mandatory else _NO_FLAGS)
        outcome = futures.setdefault(publish_id, future)
        if outcome is not future:
            # Announced already (published from another thread's loop).
            del futures[publish_id]
            _settle(future, None if outcome is _CONFIRMED else outcome)
        return future

    def call(self, message, *, exchange_name="", routing_key="", properties=None,
             mandatory=False):
        """Sends a request over RabbitMQ's direct reply-to and resolves to
        the reply, a Carehare.Delivery (get_body(), get_properties()).
        `properties` as for publish(); its correlation_id is used if set,
        its reply_to is replaced."""
        body = GLib.Bytes.new(bytes(message))
        props = _to_properties(properties)
        flags = Carehare.PublishFlags.MANDATORY if mandatory else Carehare.PublishFlags.NONE
        return _start(lambda c, cb: self.call_async(exchange_name, routing_key, body, props,
                                                    flags, c, cb),
                      self.call_finish)

    def acking_consumer(self, queue_name, *, prefetch_size=0, prefetch_count=1,
                        exclusive=False, consumer_tag=None, arguments=None):
        """`async with connection.acking_consumer(queue) as consumer:`
        starts consuming (raising ChannelClosedByServer for a missing
        queue) and closes the consumer at the end."""
        return _ConsumerContext(self, queue_name, prefetch_size, prefetch_count, exclusive,
                                consumer_tag, arguments)


class _ConsumerContext:
    def __init__(self, connection, queue_name, prefetch_size, prefetch_count, exclusive,
                 consumer_tag, arguments):
        self._args = (connection, queue_name, prefetch_size, prefetch_count, exclusive,
                      consumer_tag, to_field_table(arguments))
        self._consumer = None

    def _start(self):
        conn, queue, size, count, exclusive, tag, table = self._args
        flags = Carehare.ConsumeFlags.EXCLUSIVE if exclusive else Carehare.ConsumeFlags.NONE
        return _start(lambda c, cb: conn.acking_consumer_full_async(queue, size, count, flags,
                                                                    tag, table, c, cb),
                      conn.acking_consumer_full_finish)

    def __await__(self):
        return self._start().__await__()

    async def __aenter__(self):
        self._consumer = await self._start()
        return self._consumer

    async def __aexit__(self, exc_type, exc_value, traceback):
        await self._consumer.close()


# ---- the session ------------------------------------------------------------

def session(urls, *, reconnect_delay_min=None, reconnect_delay_max=None, connect_timeout=None):
    """A Carehare.Session (not started) for `urls`, one URL or a list tried
    in order on every attempt; the delays are in seconds. Declare its
    topology with declare_queue()... (they do no I/O), make its consumers
    with acking_consumer(), then `async with session:` starts it, waits
    until it is connected and closes it at the end."""
    if isinstance(urls, str):
        urls = [urls]
    result = Session.new(list(urls))
    if reconnect_delay_max is not None:
        result.props.reconnect_delay_max = max(1, math.ceil(reconnect_delay_max * 1000))
    if reconnect_delay_min is not None:
        result.props.reconnect_delay_min = max(1, math.ceil(reconnect_delay_min * 1000))
    if connect_timeout is not None:
        result.props.connect_timeout = max(1, math.ceil(connect_timeout * 1000))
    return result


@override
class Session(Carehare.Session):
    """Carehare.Session, with asyncio methods: a connection that reconnects
    by itself. publish() waits while it reconnects; its consumers go on
    delivering across reconnections (the same Carehare.Consumer methods)."""

    def wait_connected(self):
        """A future of the current Carehare.Connection once the session is
        connected (at once if it is); raises the session's last error if it
        fails for good, ConnectionClosed if it is closed."""
        future = _loop().create_future()
        handlers = []

        def finish(result=None, error=None):
            for handler in handlers:
                self.disconnect(handler)
            handlers.clear()
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def check(*_args):
            state = self.get_state()
            if state == Carehare.SessionState.CONNECTED:
                finish(self.get_connection())
            elif state == Carehare.SessionState.FAILED:
                finish(error=_exception(self.get_last_error(), operation=False))
            elif state == Carehare.SessionState.STOPPED and getattr(self, "_carehare_closing",
                                                                      False):
                finish(error=ConnectionClosed("Session closed"))

        handlers.append(self.connect("notify::state", check))
        check()
        return future

    def publish(self, message, *, exchange_name="", routing_key="", properties=None,
                mandatory=False):
        """Publishes `message` (bytes) with a confirm; waits while the
        session reconnects. Raises ConnectionClosed when the connection was
        lost before the confirm (whether to publish again is yours), and
        the exceptions of Connection.publish(). Unlike there, cancelling
        the future drops a publish still waiting for a connection."""
        # As Connection.publish(), but a publish may wait here for a long
        # time (while reconnecting), so cancelling still drops it: the
        # future cancels its GCancellable itself, without a done callback.
        future = _CancellingFuture(loop=_loop())
        return _publish(self, future, future.cancellable, message, exchange_name,
                        routing_key, properties, mandatory)

    def acking_consumer(self, queue_name, prefetch_count=1, *, exclusive=False,
                        consumer_tag=None, arguments=None):
        """A Carehare.Consumer that lives across reconnections (no need to
        await it): `async for message in consumer` as for a connection's."""
        flags = Carehare.ConsumeFlags.EXCLUSIVE if exclusive else Carehare.ConsumeFlags.NONE
        return self.acking_consumer_full(queue_name, prefetch_count, flags, consumer_tag,
                                         to_field_table(arguments))

    def close(self):
        """Closes the session for good; an awaitable that completes when
        its connection, if any, is closed. May be called many times."""
        self._carehare_closing = True
        return _start(lambda c, cb: self.close_async(None, cb), self.close_finish,
                      lambda r: None, cancellable=False)

    async def __aenter__(self):
        self.start()
        try:
            await self.wait_connected()
        except BaseException:
            # Not entered (a permanent error, or a timeout around it): no
            # __aexit__ will close the session, so it stops retrying here.
            self.close().add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        return self

    async def __aexit__(self, exc_type, exc_value, traceback):
        await self.close()


# ---- the consumer -----------------------------------------------------------

@override
class Consumer(Carehare.Consumer):
    """Carehare.Consumer, with the `carehare` library's asyncio methods.
    ack(), nack(), ack_up_to() and nack_up_to() are the typelib's own: they
    never raise and are never awaited."""

    def next_delivery(self):
        """Resolves to (message, delivery_tag), the body as bytes; ack()
        the tag. Raises ChannelClosed once the consumer was closed.
        Cancelling the future loses nothing: a message handed over as it
        was cancelled goes back to the queue (nack with requeue)."""
        return _start(lambda c, cb: self.next_delivery_async(c, cb),
                      self.next_delivery_finish,
                      lambda d: (d.get_body().get_data(), d.get_delivery_tag()),
                      orphan=self._carehare_give_back)

    def next_delivery_object(self):
        """Resolves to the next Carehare.Delivery (properties, headers,
        redelivered...); cancelled, as next_delivery()."""
        return _start(lambda c, cb: self.next_delivery_async(c, cb), self.next_delivery_finish,
                      orphan=self._carehare_give_back)

    def _carehare_give_back(self, delivery):
        # Handed over to a cancelled future: nobody will ack it.
        self.nack(delivery.get_delivery_tag(), True)

    async def deliveries(self):
        """`async for delivery in consumer.deliveries():` each
        Carehare.Delivery until the consumer is closed. Nothing is acked for
        you: call ack(delivery.get_delivery_tag()). While it runs, the
        consumer emits ::delivery (next_delivery() raises BUSY)."""
        stream = _Stream(self)
        try:
            while True:
                delivery = await stream.next()
                if delivery is None:
                    return
                yield delivery
        finally:
            stream.stop()

    def close(self):
        """Starts closing at once (no need to await); returns an awaitable
        that completes when the broker released the consumer. An `async
        for` over the consumer then ends. May be called many times."""
        future = getattr(self, "_carehare_close", None)
        if future is None:
            future = _start(lambda c, cb: self.close_async(None, cb), self.close_finish,
                            lambda r: None, cancellable=False)
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._carehare_close = future
        return future

    def __aiter__(self):
        return _Messages(self)


class _Stream:
    """The consumer's messages through its ::delivery signal: one handler
    call per message into a deque, and an await that takes from it without
    a GLib round trip (it suspends only when the deque is empty). The
    consumer's prefetch bounds the deque. stop() disconnects, and gives
    back (nack, requeue) the messages received but not taken."""

    def __init__(self, consumer):
        self._consumer = consumer
        self._items = collections.deque()
        self._waiter = None
        self._end = None      # None: open; else the exception to raise, or _STOP
        # Closed already: next_delivery says how (it raises the error).
        self._closed_before = consumer.get_is_closed()
        self._handlers = [] if self._closed_before else [
            consumer.connect("delivery", self._on_delivery),
            consumer.connect("rejected", self._on_rejected),
            consumer.connect("closed", self._on_closed)]

    def _wake(self):
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _on_delivery(self, _consumer, delivery):
        self._items.append(delivery)
        self._wake()

    def _on_rejected(self, _consumer, error):
        self._items.append(_exception(error))
        self._wake()

    def _on_closed(self, _consumer, error):
        # Nothing taken after the end: those not yet taken go back.
        self._give_back()
        self._end = _STOP if error is None else _exception(error)
        self._wake()

    def _give_back(self):
        while self._items:
            item = self._items.popleft()
            if isinstance(item, Carehare.Delivery):
                self._consumer.nack(item.get_delivery_tag(), True)

    async def next(self):
        """The next Carehare.Delivery, or None at the end of the stream
        (the consumer was closed); raises what next_delivery() would."""
        if self._closed_before:
            try:
                await self._consumer.next_delivery_object()
            except ChannelClosed:
                return None
        while not self._items:
            if self._end is _STOP:
                return None
            if self._end is not None:
                raise self._end
            self._waiter = _loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self):
        handlers, self._handlers = self._handlers, []
        for handler in handlers:
            self._consumer.disconnect(handler)
        self._give_back()


_STOP = object()


class _Messages:
    """`async for message in consumer`: the body of each message, acked when
    the loop body finished without an exception (on the next step)."""

    def __init__(self, consumer):
        self._consumer = consumer
        self._unacked = None
        self._stream = _Stream(consumer)

    def __aiter__(self):
        return self

    def __del__(self):
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.stop()

    async def __anext__(self):
        if self._unacked is not None:
            self._consumer.ack(self._unacked)
            self._unacked = None
        try:
            delivery = await self._stream.next()
        except BaseException:
            self._stream.stop()
            raise
        if delivery is None:
            self._stream.stop()
            raise StopAsyncIteration
        self._unacked = delivery.get_delivery_tag()
        return delivery.get_body().get_data()
