// SPDX-License-Identifier: LGPL-2.1-or-later
//
// carehare-glib end to end from GJS, against the private broker.
//
// Run by `meson test --suite bindings` as `gjs -m test-carehare.js`, with
// GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the build directory and
// the broker's URIs in the environment (`eval "$(test-server/broker env)"`).
// Prints TAP. Every async method is promisified by bindings/gjs/carehare.js, so the
// tests read as async/await; a GLib.MainLoop runs them and a timeout on
// every await keeps anything from hanging.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
// The module carehare-glib installs: every Carehare *_async promisified
// once, errors with reply_code, and `for await` over a consumer.
import Carehare from '../../bindings/gjs/carehare.js';
import System from 'system';

const TIMEOUT_MS = 15000;

// No Gio._promisify() here: the module promisifies every *_async of
// Carehare's classes, Connection's init_async (GAsyncInitable's) included.

// ---- helpers ------------------------------------------------------------------

function env(name) {
    const value = GLib.getenv(name);
    // Integration tests fail, never skip, without the broker.
    if (!value)
        throw new Error(`${name} is not set: run eval "$(test-server/broker env)"`);
    return value;
}

function unique(prefix) {
    return `carehare-gjs-${prefix}-${GLib.uuid_string_random().slice(0, 12)}`;
}

// Rejects if @promise has not settled after @ms.
function timeout(promise, ms = TIMEOUT_MS) {
    let id = 0;
    const expired = new Promise((resolve, reject) => {
        id = GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            id = 0;
            reject(new Error(`nothing happened in ${ms} ms`));
            return GLib.SOURCE_REMOVE;
        });
    });
    return Promise.race([promise, expired]).finally(() => {
        if (id)
            GLib.source_remove(id);
    });
}

// Resolves once @predicate() is true (for signals).
function until(predicate, ms = TIMEOUT_MS) {
    return timeout(new Promise(resolve => {
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, 5, () => {
            if (!predicate())
                return GLib.SOURCE_CONTINUE;
            resolve();
            return GLib.SOURCE_REMOVE;
        });
    }), ms);
}

function assert(condition, message = 'assertion failed') {
    if (!condition)
        throw new Error(message);
}

function assertEqual(actual, expected, what = '') {
    const a = JSON.stringify(actual), e = JSON.stringify(expected);
    if (a !== e)
        throw new Error(`${what}: expected ${e}, got ${a}`);
}

async function expectError(domain, code, promise) {
    try {
        await timeout(promise);
    } catch (error) {
        if (!(error instanceof GLib.Error))
            throw error;
        if (!error.matches(domain, code)) {
            throw new Error(`expected ${GLib.quark_to_string(domain)}/${code}, got ` +
                `${GLib.quark_to_string(error.domain)}/${error.code}: ${error.message}`);
        }
        return error;
    }
    throw new Error(`expected an error ${GLib.quark_to_string(domain)}/${code}, got success`);
}

const tlsUri = () => env('CAREHARE_TEST_AMQPS_URI');
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function connect(uri = tlsUri()) {
    return timeout(Carehare.Connection.new_async(uri, null));
}

async function declareQueue(conn, flags = Carehare.QueueFlags.EXCLUSIVE, args = null) {
    const [name] = await timeout(conn.queue_declare_async('', flags, args, null));
    return name;
}

function publish(conn, routingKey, body, {properties = null, exchange = '',
    flags = Carehare.PublishFlags.NONE} = {}) {
    // A Uint8Array goes where the C API takes a GBytes.
    return timeout(conn.publish_async(exchange, routingKey, encoder.encode(body),
        properties, flags, null));
}

async function close(conn) {
    if (!conn.is_closed)
        await timeout(conn.close_async(null));
}

function nestedHeaders() {
    const V = (type, value) => new GLib.Variant(type, value);
    return V('a{sv}', {
        'x-int': V('i', 42),
        'x-long': V('x', -(2 ** 40)),
        'x-string': V('s', 'h\u00e9llo'),
        'x-bool': V('b', true),
        'x-double': V('d', 2.5),
        'x-bytes': V('ay', new Uint8Array([0, 255, 98, 105, 110])),
        'x-list': V('av', [V('i', 1), V('s', 'two'), V('av', [V('b', false)])]),
        'x-table': V('a{sv}', {
            'inner': V('s', 'value'),
            'deeper': V('a{sv}', {'n': V('q', 7), 'when': V('t', 1700000000)}),
        }),
        'x-decimal': V('(yi)', [2, 12345]),
        'x-void': V('()', []),
    });
}

// ---- tests ----------------------------------------------------------------------

const tests = [];
const test = (name, fn) => tests.push({name, fn});

test('connect over TLS with a client certificate (Connection.new_async)', async () => {
    const conn = await connect();
    try {
        assert(conn instanceof Carehare.Connection);
        assert(!conn.is_closed && !conn.get_is_closed());
        assert(conn.frame_max > 0 && conn.get_frame_max() === conn.frame_max);
        assert(conn.channel_max > 0);
        const server = conn.get_server_properties();
        assertEqual(server.get_type_string(), 'a{sv}', 'server-properties type');
        assertEqual(server.recursiveUnpack().product, 'RabbitMQ', 'product');
        assert(conn.server_properties.equal(server));
    } finally {
        await close(conn);
    }
});

test('GAsyncInitable with tls-database and tls-certificate', async () => {
    const certs = env('CAREHARE_TEST_CERT_DIR');
    const conn = new Carehare.Connection({
        uri: tlsUri().split('?')[0],
        tls_database: Gio.TlsFileDatabase.new(GLib.build_filenamev([certs, 'ca.pem'])),
        tls_certificate: Gio.TlsCertificate.new_from_files(
            GLib.build_filenamev([certs, 'client.pem']),
            GLib.build_filenamev([certs, 'client-key.pem'])),
        connect_timeout: 10000,
    });
    assert(conn instanceof Gio.AsyncInitable);
    assert(await timeout(conn.init_async(GLib.PRIORITY_DEFAULT, null)) === true);
    try {
        assert((await declareQueue(conn)).startsWith('amq.gen-'));
    } finally {
        await close(conn);
    }
});

test('invalid URI fails with INVALID_URI', async () => {
    await expectError(Carehare.Error, Carehare.Error.INVALID_URI,
        Carehare.Connection.new_async('amqp://guest:guest@127.0.0.1:notaport/', null));
});

test('queue_declare_finish returns [name, message_count, consumer_count]', async () => {
    const conn = await connect();
    try {
        const args = new GLib.Variant('a{sv}', {
            'x-message-ttl': new GLib.Variant('i', 60000),
            'x-max-length': new GLib.Variant('i', 100),
        });
        const result = await timeout(conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE, args, null));
        assert(Array.isArray(result) && result.length === 3, `got ${result}`);
        const [name, messages, consumers] = result;
        assert(name.startsWith('amq.gen-'), name);
        assertEqual([messages, consumers], [0, 0], 'counts');

        await publish(conn, name, 'one');
        await publish(conn, name, 'two');
        assertEqual(await timeout(conn.queue_declare_async(name, Carehare.QueueFlags.PASSIVE, null, null)),
            [name, 2, 0], 'passive declare');
        // Gio._promisify drops the leading `true` of a [true, out...] result.
        const [purged] = await timeout(conn.queue_purge_async(name, null));
        assertEqual(purged, 2, 'purged');
        const [deleted] = await timeout(conn.queue_delete_async(name, Carehare.QueueDeleteFlags.NONE, null));
        assertEqual(deleted, 0, 'deleted');
    } finally {
        await close(conn);
    }
});

test('publish with properties and headers, consume, ack', async () => {
    const conn = await connect();
    try {
        const exchange = unique('fanout');
        assert(await timeout(conn.exchange_declare_async(exchange, 'fanout',
            Carehare.ExchangeFlags.AUTO_DELETE, null, null)) === true);
        const queue = await declareQueue(conn);
        assert(await timeout(conn.queue_bind_async(queue, exchange, '', null, null)) === true);

        const headers = nestedHeaders();
        const properties = new Carehare.Properties({
            content_type: 'application/json',
            correlation_id: 'corr-1',
            delivery_mode: 2,
            priority: 5,
            timestamp: 1700000000,
            type: 'order.created',
            app_id: 'carehare-gjs',
            headers,
        });
        assertEqual(properties.get_message_type(), 'order.created', 'message type');
        const body = '{"id": 1}';
        assert(await publish(conn, '', body, {properties, exchange}) === true);

        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 10, null));
        assert(consumer instanceof Carehare.Consumer);
        assertEqual(consumer.queue, queue, 'consumer queue');
        assert(consumer.get_consumer_tag());

        const delivery = await timeout(consumer.next_delivery_async(null));
        assert(delivery instanceof Carehare.Delivery);
        assertEqual(decoder.decode(delivery.get_body().toArray()), body, 'body');
        assertEqual(delivery.exchange, exchange, 'exchange');
        assertEqual(delivery.routing_key, '', 'routing key');
        assert(delivery.redelivered === false);
        assertEqual(delivery.consumer_tag, consumer.consumer_tag, 'consumer tag');

        const got = delivery.get_properties();
        assertEqual(got.content_type, 'application/json', 'content-type');
        assertEqual(got.get_correlation_id(), 'corr-1', 'correlation-id');
        assertEqual(got.delivery_mode, 2, 'delivery-mode');
        assertEqual(got.priority, 5, 'priority');
        assertEqual(got.timestamp, 1700000000, 'timestamp');
        assertEqual(got.get_message_type(), 'order.created', 'type');
        assertEqual(got.app_id, 'carehare-gjs', 'app-id');
        assert(got.get_reply_to() === null && got.expiration === null);

        const received = got.get_headers();
        assert(received instanceof GLib.Variant);
        assertEqual(received.get_type_string(), 'a{sv}', 'headers type');
        assert(received.equal(headers), `${received.print(true)} != ${headers.print(true)}`);
        const unpacked = received.recursiveUnpack();
        assertEqual(unpacked['x-table'].deeper.n, 7, 'nested table');
        assertEqual(unpacked['x-list'], [1, 'two', [false]], 'array');
        assertEqual(Array.from(received.lookup_value('x-bytes', null).deepUnpack()),
            [0, 255, 98, 105, 110], 'bytes');

        consumer.ack(delivery.delivery_tag);
        await timeout(consumer.close_async(null));
        const [, left] = await timeout(conn.queue_declare_async(queue, Carehare.QueueFlags.PASSIVE, null, null));
        assertEqual(left, 0, 'messages left after ack');

        assert(await timeout(conn.queue_unbind_async(queue, exchange, '', null, null)) === true);
        assert(await timeout(conn.exchange_delete_async(exchange, Carehare.ExchangeDeleteFlags.NONE, null)) === true);
    } finally {
        await close(conn);
    }
});

test('publish to a missing exchange: CHANNEL_CLOSED_BY_SERVER, reply code 404', async () => {
    const conn = await connect();
    try {
        const missing = unique('missing');
        const error = await expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            publish(conn, 'key', 'lost', {exchange: missing}));
        assert(error.domain === Carehare.error_quark());
        assert(error.code === Carehare.Error.CHANNEL_CLOSED_BY_SERVER);
        assertEqual(Carehare.error_get_reply_code(error), 404, 'reply code');
        assert(error.message.includes('NOT_FOUND') && error.message.includes(missing), error.message);

        // Only that operation failed: the connection is still usable.
        assert(!conn.is_closed);
        assert((await declareQueue(conn)).startsWith('amq.gen-'));
    } finally {
        await close(conn);
    }
});

test('consume or passively declare a missing queue: 404', async () => {
    const conn = await connect();
    try {
        let error = await expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            conn.acking_consumer_async(unique('missing'), 0, 1, null));
        assertEqual(Carehare.error_get_reply_code(error), 404, 'consume reply code');
        error = await expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            conn.queue_declare_async(unique('missing'), Carehare.QueueFlags.PASSIVE, null, null));
        assertEqual(Carehare.error_get_reply_code(error), 404, 'declare reply code');
    } finally {
        await close(conn);
    }
});

test('mandatory publish nobody takes: UNROUTABLE', async () => {
    const conn = await connect();
    try {
        await expectError(Carehare.Error, Carehare.Error.UNROUTABLE,
            publish(conn, unique('nobody'), 'x', {flags: Carehare.PublishFlags.MANDATORY}));
    } finally {
        await close(conn);
    }
});

test('acking_consumer_full: exclusive, chosen tag, x-priority; ack_up_to, nack_up_to', async () => {
    const conn = await connect();
    try {
        const queue = await declareQueue(conn);
        const tag = `carehare-js-tag-${GLib.uuid_string_random()}`;
        const args = new GLib.Variant('a{sv}', {'x-priority': new GLib.Variant('i', 5)});
        const consumer = await timeout(conn.acking_consumer_full_async(queue, 0, 10,
            Carehare.ConsumeFlags.EXCLUSIVE, tag, args, null));
        assertEqual(consumer.consumer_tag, tag, 'consumer tag');
        const refused = await expectError(Carehare.error_quark(),
            Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            conn.acking_consumer_full_async(queue, 0, 1, Carehare.ConsumeFlags.NONE, null, null,
                null));
        assertEqual(Carehare.Error.get_reply_code(refused), 403, 'exclusive');
        await expectError(Gio.io_error_quark(), Gio.IOErrorEnum.EXISTS,
            conn.acking_consumer_full_async(queue, 0, 1, Carehare.ConsumeFlags.NONE, tag, null,
                null));

        for (let i = 0; i < 5; i++)
            await publish(conn, queue, `m${i}`);
        const deliveries = [];
        for (let i = 0; i < 5; i++)
            deliveries.push(await timeout(consumer.next_delivery_async(null)));
        assertEqual(deliveries.map(d => d.consumer_tag), Array(5).fill(tag), 'delivery tags');
        consumer.ack_up_to(deliveries[2].delivery_tag);
        consumer.ack_up_to(deliveries[2].delivery_tag);
        consumer.nack_up_to(deliveries[4].delivery_tag, true);
        const again = [];
        for (let i = 0; i < 2; i++)
            again.push(await timeout(consumer.next_delivery_async(null)));
        assertEqual(again.map(d => decoder.decode(d.get_body().toArray())), ['m3', 'm4'], 'requeued');
        assert(again.every(d => d.redelivered), 'redelivered');
        consumer.ack_up_to(again[1].delivery_tag);
        await timeout(consumer.close_async(null));
        const [, messages] = await timeout(conn.queue_declare_async(queue,
            Carehare.QueueFlags.PASSIVE, null, null));
        assertEqual(messages, 0, 'nothing left');
    } finally {
        await close(conn);
    }
});

test('call over direct reply-to: reply matched by correlation id; UNROUTABLE; cancelled', async () => {
    const conn = await connect();
    try {
        const queue = await declareQueue(conn);
        const server = await timeout(conn.acking_consumer_async(queue, 0, 10, null));
        // The responder answers each request to its reply_to.
        const serve = async () => {
            const request = await server.next_delivery_async(null);
            const props = request.get_properties();
            const body = `re: ${decoder.decode(request.get_body().toArray())}`;
            const replyProps = new Carehare.Properties({correlation_id: props.correlation_id});
            conn.publish_async('', props.reply_to, encoder.encode(body), replyProps,
                Carehare.PublishFlags.NONE, null).catch(() => {});
            server.ack(request.delivery_tag);
        };

        const mine = new Carehare.Properties({correlation_id: 'gjs-call-1'});
        const served = serve();
        const reply = await timeout(conn.call_async('', queue, encoder.encode('ping'), mine,
            Carehare.PublishFlags.MANDATORY, null));
        await served;
        assert(reply instanceof Carehare.Delivery);
        assertEqual(decoder.decode(reply.get_body().toArray()), 're: ping', 'reply body');
        assertEqual(reply.get_properties().correlation_id, 'gjs-call-1', 'correlation id');
        assertEqual(reply.delivery_tag, 0, 'delivery tag of a reply');

        await expectError(Carehare.Error, Carehare.Error.UNROUTABLE,
            conn.call_async('', unique('nobody'), encoder.encode('x'), null,
                Carehare.PublishFlags.MANDATORY, null));

        // Nobody serves this request: only the cancellable ends it.
        const cancellable = new Gio.Cancellable();
        const pending = conn.call_async('', queue, encoder.encode('wait'), null,
            Carehare.PublishFlags.NONE, cancellable);
        cancellable.cancel();
        await expectError(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED, pending);
    } finally {
        await close(conn);
    }
});

test('nack with requeue redelivers with redelivered=true', async () => {
    const conn = await connect();
    try {
        const queue = await declareQueue(conn);
        await publish(conn, queue, 'try again');
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 1, null));
        const first = await timeout(consumer.next_delivery_async(null));
        assert(first.redelivered === false);
        consumer.nack(first.delivery_tag, true);

        const second = await timeout(consumer.next_delivery_async(null));
        assertEqual(decoder.decode(second.get_body().toArray()), 'try again', 'body');
        assert(second.redelivered === true && second.get_redelivered() === true);
        assert(second.delivery_tag !== first.delivery_tag);
        consumer.ack(second.delivery_tag);

        // nack without requeue drops the message.
        await publish(conn, queue, 'drop me');
        const third = await timeout(consumer.next_delivery_async(null));
        consumer.nack(third.delivery_tag, false);
        await timeout(consumer.close_async(null));
        const [, left] = await timeout(conn.queue_declare_async(queue, Carehare.QueueFlags.PASSIVE, null, null));
        assertEqual(left, 0, 'messages left');
    } finally {
        await close(conn);
    }
});

test('Consumer closed signal: null when we close, the server error when it cancels', async () => {
    const conn = await connect();
    try {
        const queue = await declareQueue(conn);
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 1, null));
        const emitted = [];
        consumer.connect('closed', (source, error) => emitted.push([source, error]));

        // A pending next_delivery ends with CHANNEL_CLOSED (end of stream).
        const pending = expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED,
            consumer.next_delivery_async(null));
        await timeout(consumer.close_async(null));
        await pending;
        await until(() => emitted.length > 0);
        assert(emitted.length === 1 && emitted[0][0] === consumer && emitted[0][1] === null,
            `closed emitted with ${emitted}`);
        assert(consumer.is_closed);
        await expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED, consumer.next_delivery_async(null));
        await timeout(consumer.close_async(null)); // idempotent
        assertEqual(emitted.length, 1, 'closed emissions');

        const queue2 = await declareQueue(conn);
        const consumer2 = await timeout(conn.acking_consumer_async(queue2, 0, 1, null));
        const errors = [];
        consumer2.connect('closed', (source, error) => errors.push(error));
        await timeout(conn.queue_delete_async(queue2, Carehare.QueueDeleteFlags.NONE, null));
        await until(() => errors.length > 0);
        assert(errors[0] instanceof GLib.Error, `closed with ${errors[0]}`);
        assert(errors[0].matches(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER), errors[0].message);
        await expectError(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            consumer2.next_delivery_async(null));
    } finally {
        await close(conn);
    }
});

test('Connection closed signal: null when we close; pending work fails', async () => {
    const conn = await connect();
    const queue = await declareQueue(conn);
    const consumer = await timeout(conn.acking_consumer_async(queue, 0, 1, null));
    const connClosed = [];
    const consumerClosed = [];
    conn.connect('closed', (source, error) => connClosed.push([source, error]));
    consumer.connect('closed', (source, error) => consumerClosed.push(error));
    let notified = false;
    conn.connect('notify::is-closed', () => {
        notified = true;
    });

    const pending = expectError(Carehare.Error, Carehare.Error.CONNECTION_CLOSED,
        consumer.next_delivery_async(null));
    assert(await timeout(conn.close_async(null)) === true);
    await pending;
    await until(() => consumerClosed.length > 0);

    assert(connClosed.length === 1 && connClosed[0][0] === conn && connClosed[0][1] === null,
        `closed emitted with ${connClosed}`);
    assert(conn.is_closed && notified);
    assert(consumerClosed[0] instanceof GLib.Error &&
        consumerClosed[0].matches(Carehare.Error, Carehare.Error.CONNECTION_CLOSED));

    await expectError(Carehare.Error, Carehare.Error.CONNECTION_CLOSED,
        conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE, null, null));
    assert(await timeout(conn.close_async(null)) === true); // idempotent
    assertEqual(connClosed.length, 1, 'closed emissions');
});

test('Connection.new_for_uris_async: the first broker that answers', async () => {
    // Port 1 refuses at once; the TLS broker answers.
    const conn = await timeout(Carehare.Connection.new_for_uris_async(
        ['amqp://guest:guest@127.0.0.1:1/', tlsUri()], null));
    try {
        assert(conn instanceof Carehare.Connection);
        assert((await declareQueue(conn)).startsWith('amq.gen-'));
    } finally {
        await close(conn);
    }
});

test('plain amqp:// URI', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        assert((await declareQueue(conn)).startsWith('amq.gen-'));
    } finally {
        await close(conn);
    }
});

// A pending call holds its object, as every GIO call does: the program
// need keep no variable for an object that waits, and garbage collection
// while it waits neither ends it nor swallows the callback (which GJS
// refuses to run during a collection).
async function collectGarbage() {
    for (let i = 0; i < 3; i++) {
        System.gc();
        // eslint-disable-next-line no-await-in-loop
        await new Promise(resolve => GLib.timeout_add(GLib.PRIORITY_DEFAULT, 20, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        }));
    }
}

test('a consumer waiting in next_delivery with no JS variable survives System.gc()', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const queue = await declareQueue(conn);
        const seen = [];
        // The consumer's only variable is in a function that has returned.
        await (async () => {
            const consumer = await timeout(conn.acking_consumer_async(queue, 0, 1, null));
            consumer.next_delivery_async(null, (source, result) => {
                try {
                    const delivery = source.next_delivery_finish(result);
                    source.ack(delivery.delivery_tag);
                    seen.push(decoder.decode(delivery.get_body().toArray()));
                } catch (error) {
                    seen.push(error);
                }
            });
        })();
        await collectGarbage();
        assertEqual(seen.length, 0, 'callbacks before the publish');
        await publish(conn, queue, 'after the collection');
        await until(() => seen.length > 0);
        assertEqual(seen, ['after the collection'], 'what the waiting call got');
    } finally {
        await close(conn);
    }
});

test('a pending declare on a connection with no JS variable survives System.gc()', async () => {
    const seen = [];
    await (async () => {
        const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
        conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE, null, null, (source, result) => {
            try {
                const [name] = source.queue_declare_finish(result);
                seen.push(name);
            } catch (error) {
                seen.push(error);
            }
            source.close_async(null, null);
        });
    })();
    await collectGarbage();
    await until(() => seen.length > 0);
    assertEqual(seen.length, 1, 'callbacks');
    assert(typeof seen[0] === 'string' && seen[0].startsWith('amq.gen-'), `declare gave ${seen[0]}`);
});

test('the module: reply_code on errors, for await over a consumer', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const error = await expectError(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            conn.queue_declare_async(unique('missing'), Carehare.QueueFlags.PASSIVE, null, null));
        assertEqual(error.reply_code, 404, 'reply_code');
        const queue = await declareQueue(conn);
        for (const text of ['one', 'two'])
            // eslint-disable-next-line no-await-in-loop
            await publish(conn, queue, text);
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 10, null));
        const seen = [];
        for await (const delivery of consumer) {
            seen.push(new TextDecoder().decode(delivery.get_body().toArray()));
            consumer.ack(delivery.get_delivery_tag());
            if (seen.length === 2)
                consumer.close_async(null, null);
        }
        assertEqual(seen, ['one', 'two'], 'deliveries');
    } finally {
        await close(conn);
    }
});

test('the module\'s promises: 100 publishes in flight, a callback still makes the plain call, Gio._promisify after it is a no-op', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const queue = await declareQueue(conn);
        const body = new GLib.Bytes(new Uint8Array(16));
        const promised = Carehare.Connection.prototype.publish_async;
        Gio._promisify(Carehare.Connection.prototype, 'publish_async', 'publish_finish');
        assert(Carehare.Connection.prototype.publish_async === promised, 'wrapped twice');

        const pending = [];
        for (let i = 0; i < 100; i++)
            pending.push(conn.publish_async('', queue, body, null, Carehare.PublishFlags.NONE, null));
        assert(pending.every(p => p instanceof Promise), 'promises');
        const results = await timeout(Promise.all(pending));
        assertEqual(results.length, 100, 'settled');
        assert(results.every(r => r === results[0]), `results ${results}`);

        let called = 0;
        const returned = conn.publish_async('', queue, body, null, Carehare.PublishFlags.NONE, null,
            (source, result) => {
                assertEqual(source.publish_finish(result), results[0], 'finish result');
                called++;
            });
        assert(returned === undefined, 'a callback gets no promise');
        await until(() => called === 1);
        assertEqual(await timeout(conn.queue_declare_async(queue, Carehare.QueueFlags.PASSIVE, null, null)),
            [queue, 101, 0], 'all published');

        // An argument GI refuses rejects the promise instead of throwing.
        let refused = null;
        await conn.publish_async('', queue, 'not bytes', null, Carehare.PublishFlags.NONE, null)
            .catch(e => {
                refused = e;
            });
        assert(refused !== null, 'bad argument rejected');
    } finally {
        await close(conn);
    }
});

test('the module promisifies every *_async of every class: Session and update_secret too', async () => {
    // Calling each without its callback must give a promise: the names are
    // found in the typelib, so a method added later cannot be forgotten.
    const found = [];
    for (const name of Object.keys(Carehare)) {
        const klass = Carehare[name];
        if (typeof klass !== 'function' || !klass.prototype || klass.$gtype === undefined)
            continue;
        for (const [target, where] of [[klass, name], [klass.prototype, `${name}.prototype`]]) {
            for (const member of Object.getOwnPropertyNames(target)) {
                if (member.endsWith('_async') &&
                    typeof target[member.replace(/_async$/, '_finish')] === 'function')
                    found.push([target, where, member]);
            }
        }
    }
    const names = found.map(([, where, member]) => `${where}.${member}`);
    for (const expected of ['Connection.new_async', 'Connection.prototype.queue_declare_async',
        'Connection.prototype.update_secret_async', 'Consumer.prototype.next_delivery_async',
        'Session.prototype.close_async', 'Session.prototype.publish_async'])
        assert(names.includes(expected), `${expected} not among ${names}`);
    const plain = found.filter(([target, , member]) =>
        target[`_original_${member}`] === undefined).map(([, where, member]) => `${where}.${member}`);
    assertEqual(plain, [], 'not promisified');

    // And they work: a session's close and publish, a connection's update_secret.
    const session = Carehare.Session.new([env('CAREHARE_TEST_AMQP_URI')]);
    const queue = unique('session');
    session.declare_queue(queue, Carehare.QueueFlags.AUTO_DELETE, null);
    const consumer = session.acking_consumer(queue, 1);
    session.start();
    await until(() => session.state === Carehare.SessionState.CONNECTED);
    const published = session.publish_async('', queue, encoder.encode('via session'), null,
        Carehare.PublishFlags.NONE, null);
    assert(published instanceof Promise, 'Session.publish_async gives a promise');
    await timeout(published);
    const delivery = await timeout(consumer.next_delivery_async(null));
    assertEqual(decoder.decode(delivery.get_body().toArray()), 'via session', 'delivered');
    consumer.ack(delivery.get_delivery_tag());
    const closing = session.close_async(null);
    assert(closing instanceof Promise, 'Session.close_async gives a promise');
    await timeout(closing);

    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const updating = conn.update_secret_async('guest', 'the same secret', null);
        assert(updating instanceof Promise, 'update_secret_async gives a promise');
        await timeout(updating.catch(e => e));
    } finally {
        await close(conn);
    }
});

test('publish_tracked: ids, take_confirmed() in ::publishes-confirmed, ::publish-failed with the error', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    const confirmed = [];
    const failed = [];
    // What a second take_confirmed() in the same emission gave, when it
    // gave anything: an exception in a signal handler would only be logged.
    const takenTwice = [];
    const handlers = [
        conn.connect('publishes-confirmed', c => {
            confirmed.push(...c.take_confirmed());
            // NULL (none left) reaches GJS as an empty array.
            const again = c.take_confirmed() ?? [];
            if (again.length > 0)
                takenTwice.push(...again);
        }),
        conn.connect('publish-failed', (_c, id, error) => failed.push([id, error])),
    ];
    try {
        const queue = await declareQueue(conn);
        const body = new GLib.Bytes(new Uint8Array(16));
        const ids = [];
        for (let i = 0; i < 50; i++)
            ids.push(conn.publish_tracked('', queue, body, null, Carehare.PublishFlags.NONE));
        assertEqual(ids, ids.map((_, i) => ids[0] + i), 'consecutive ids');
        assertEqual(confirmed.length, 0, 'nothing announced inside the calls');
        await until(() => confirmed.length === 50);
        assertEqual(confirmed, ids, 'confirmed in order');
        assertEqual(takenTwice, [], 'taken once');
        const bad = conn.publish_tracked(unique('missing'), 'k', body, null, Carehare.PublishFlags.NONE);
        await until(() => failed.length === 1);
        assertEqual(failed[0][0], bad, 'failed id');
        assert(failed[0][1].matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER),
            `error ${failed[0][1]}`);
        // The module's promises take this path: the same outcome.
        const error = await expectError(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
            conn.publish_async(unique('missing'), 'k', body, null, Carehare.PublishFlags.NONE, null));
        assertEqual(error.reply_code, 404, 'reply_code');
    } finally {
        handlers.forEach(id => conn.disconnect(id));
        await close(conn);
    }
});

test('for await: many messages in order through ::delivery; after a break, what was not taken comes back', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const queue = await declareQueue(conn);
        const sent = [];
        for (let i = 0; i < 100; i++)
            sent.push(`m${i}`);
        await Promise.all(sent.map(text => publish(conn, queue, text)));
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 20, null));
        const decoder = new TextDecoder();
        const seen = [];
        for await (const delivery of consumer) {
            seen.push(decoder.decode(delivery.get_body().toArray()));
            if (seen.length === 50)
                break;  // m49 stays unacked
            consumer.ack(delivery.get_delivery_tag());
            if (seen.length === 49) {
                // Let the next messages arrive: they are the loop's.
                // eslint-disable-next-line no-await-in-loop
                await timeout(conn.queue_declare_async(queue, Carehare.QueueFlags.PASSIVE, null, null));
            }
        }
        assertEqual(seen, sent.slice(0, 50), 'in order');
        // The handler is gone: next_delivery works, and gets the messages
        // the loop had received but not taken, given back.
        const rest = [];
        for (let i = 0; i < 50; i++) {
            // eslint-disable-next-line no-await-in-loop
            const delivery = await timeout(consumer.next_delivery_async(null));
            rest.push(decoder.decode(delivery.get_body().toArray()));
            consumer.ack(delivery.get_delivery_tag());
        }
        rest.sort();
        assertEqual(rest, sent.slice(50).sort(), 'the rest');
        await timeout(consumer.close_async(null));
    } finally {
        await close(conn);
    }
});

test('for await: a rejected message throws its error and ends the loop; a closed consumer ends it or throws', async () => {
    // max_body_size=64: a larger message is rejected (::rejected) in its place.
    const plain = env('CAREHARE_TEST_AMQP_URI');
    const conn = await connect(`${plain}${plain.includes('?') ? '&' : '?'}max_body_size=64`);
    try {
        const queue = await declareQueue(conn);
        await publish(conn, queue, 'small');
        await publish(conn, queue, 'x'.repeat(100));
        await publish(conn, queue, 'after');
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 10, null));
        const seen = [];
        let thrown = null;
        try {
            for await (const delivery of consumer) {
                seen.push(new TextDecoder().decode(delivery.get_body().toArray()));
                consumer.ack(delivery.get_delivery_tag());
            }
        } catch (e) {
            thrown = e;
        }
        assertEqual(seen, ['small'], 'before the rejected one');
        assert(thrown !== null && thrown.matches(Carehare.error_quark(), Carehare.Error.MESSAGE_TOO_LARGE),
            `thrown ${thrown}`);
        // The loop's handlers are gone: 'after' is next_delivery's.
        const after = await timeout(consumer.next_delivery_async(null));
        assertEqual(new TextDecoder().decode(after.get_body().toArray()), 'after', 'after');
        consumer.ack(after.get_delivery_tag());

        // Deleted under a waiting loop: it throws the server's error.
        const doomed = await declareQueue(conn, Carehare.QueueFlags.NONE);
        const cancelled = await timeout(conn.acking_consumer_async(doomed, 0, 10, null));
        const loop = (async () => {
            // eslint-disable-next-line no-unused-vars
            for await (const _delivery of cancelled)
                throw new Error('nothing was published');
        })();
        await timeout(conn.queue_delete_async(doomed, Carehare.QueueDeleteFlags.NONE, null));
        let error = null;
        await timeout(loop.catch(e => {
            error = e;
        }));
        assert(error !== null && error.matches(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER),
            `deleted queue gave ${error}`);

        // Closed by us before the loop: no iteration, no error.
        await timeout(consumer.close_async(null));
        let iterations = 0;
        // eslint-disable-next-line no-unused-vars
        for await (const _delivery of consumer)
            iterations++;
        assertEqual(iterations, 0, 'iterations over a closed consumer');
    } finally {
        await close(conn);
    }
});

test('::delivery: a handler gets each message; next_delivery fails with BUSY meanwhile', async () => {
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const queue = await declareQueue(conn);
        for (const text of ['one', 'two'])
            // eslint-disable-next-line no-await-in-loop
            await publish(conn, queue, text);
        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 10, null));
        const seen = [];
        const id = consumer.connect('delivery', (c, delivery) => {
            seen.push(new TextDecoder().decode(delivery.get_body().toArray()));
            c.ack(delivery.get_delivery_tag());
        });
        await until(() => seen.length === 2);
        await expectError(Gio.io_error_quark(), Gio.IOErrorEnum.BUSY, consumer.next_delivery_async(null));
        consumer.disconnect(id);
        assertEqual(seen, ['one', 'two'], 'deliveries');
        await timeout(consumer.close_async(null));
    } finally {
        await close(conn);
    }
});

test('get_statistics: the counters of N publishes and deliveries, exactly', async () => {
    const N = 200;
    const conn = await connect(env('CAREHARE_TEST_AMQP_URI'));
    try {
        const before = conn.get_statistics();
        assertEqual(before.get_messages_published(), 0, 'published before');
        assert(before.get_bytes_sent() > 0 && before.get_bytes_received() > 0, 'handshake bytes');

        const queue = await declareQueue(conn);
        const publishes = [];
        for (let i = 0; i < N; i++)
            publishes.push(publish(conn, queue, `message ${i}`));
        await Promise.all(publishes);
        // One mandatory publish nobody takes: returned, and confirmed.
        await expectError(Carehare.error_quark(), Carehare.Error.UNROUTABLE,
            publish(conn, unique('nowhere'), 'lost', {flags: Carehare.PublishFlags.MANDATORY}));

        const consumer = await timeout(conn.acking_consumer_async(queue, 0, 50, null));
        for (let i = 0; i < N; i++) {
            // eslint-disable-next-line no-await-in-loop
            const delivery = await timeout(consumer.next_delivery_async(null));
            // The last one is nacked without requeueing: counted apart.
            if (i === N - 1)
                consumer.nack(delivery.delivery_tag, false);
            else
                consumer.ack(delivery.delivery_tag);
        }
        const stats = conn.get_statistics();
        assert(stats instanceof Carehare.Statistics, 'a Carehare.Statistics');
        assertEqual(stats.get_messages_published(), N + 1, 'published');
        assertEqual(stats.get_messages_confirmed(), N + 1, 'confirmed');
        assertEqual(stats.get_messages_nacked(), 0, 'nacked');
        assertEqual(stats.get_messages_returned(), 1, 'returned');
        assertEqual(stats.get_deliveries_received(), N, 'received');
        assertEqual(stats.get_deliveries_acked(), N - 1, 'acked');
        assertEqual(stats.get_deliveries_nacked(), 1, 'deliveries nacked');
        assert(stats.get_channels_open() >= 2, `channels open: ${stats.get_channels_open()}`);
        assert(stats.get_bytes_sent() > before.get_bytes_sent() + N * 7, 'bytes sent grew');
        assert(stats.get_time_since_last_received() >= 0, 'time since last received');
        // A snapshot does not move.
        assertEqual(stats.get_deliveries_acked(), N - 1, 'snapshot unchanged');
        await timeout(consumer.close_async(null));
    } finally {
        await close(conn);
    }
});

// ---- TAP runner ---------------------------------------------------------------------

async function main() {
    let failures = 0;
    print(`1..${tests.length}`);
    for (const [index, {name, fn}] of tests.entries()) {
        try {
            // eslint-disable-next-line no-await-in-loop
            await fn();
            print(`ok ${index + 1} - ${name}`);
        } catch (error) {
            failures++;
            print(`not ok ${index + 1} - ${name}`);
            for (const line of `${error}\n${error.stack ?? ''}`.split('\n'))
                print(`# ${line}`);
        }
    }
    return failures;
}

const loop = new GLib.MainLoop(null, false);
let status = 1;
main().then(failures => {
    status = failures ? 1 : 0;
}).catch(error => {
    print(`Bail out! ${error}`);
}).finally(() => loop.quit());
loop.run();
System.exit(status);
