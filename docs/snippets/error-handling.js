// SPDX-License-Identifier: LGPL-2.1-or-later
// Error handling: what each failure looks like, and a connection that
// reconnects with backoff.
//
//     gjs -m error-handling.js URI
//
// Shown in docs/error-handling.md and run by the tests.
import GLib from 'gi://GLib';
import System from 'system';
// carehare.js, installed as $datadir/carehare-glib-1.0/carehare.js; here,
// from the source tree.
import Carehare from '../../bindings/gjs/carehare.js';

// Whether trying again later can help. Configuration mistakes (a bad URI, a
// refused login, an unknown vhost, a certificate problem) fail the same way
// every time: report them instead of looping.
// A connection that comes back, waiting longer after each failure.
class Keeper {
    constructor(uri, onConnected, onGaveUp) {
        this.uri = uri;
        this.onConnected = onConnected; // called after each (re)connection
        this.onGaveUp = onGaveUp; // called when retrying cannot help
        this.delayMs = 1000;
        this.conn = null;
    }

    async connect() {
        let conn;
        try {
            conn = await Carehare.Connection.new_async(this.uri, null);
        } catch (e) {
            if (Carehare.error_is_transient(e))
                this._retry(e);
            else
                this.onGaveUp(e);
            return;
        }
        this.conn = conn;
        this.delayMs = 1000;
        const id = conn.connect('closed', (_conn, error) => {
            // Every pending operation has failed with CONNECTION_CLOSED by
            // now, and every consumer has ended.
            conn.disconnect(id);
            if (error === null)
                return; // the program closed it
            if (Carehare.error_is_transient(error))
                this._retry(error);
            else
                this.onGaveUp(error);
        });
        // Exclusive or auto-delete queues, consumers and unconfirmed
        // publishes do not outlive a connection: redo them here.
        this.onConnected(conn);
    }

    _retry(error) {
        // Jitter spreads out many clients that lost the same broker.
        const waitMs = Math.floor(this.delayMs / 2 + Math.random() * this.delayMs / 2);
        printerr(`${error.message}: retrying in ${waitMs} ms`);
        this.delayMs = Math.min(this.delayMs * 2, 60000);
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, waitMs, () => {
            this.connect();
            return GLib.SOURCE_REMOVE;
        });
    }
}

let status = 0;

// The promise must fail with code and replyCode, and be transient (worth a
// retry) or not.
async function expect(what, promise, code, replyCode = 0, transient = false) {
    try {
        await promise;
        printerr(`${what}: succeeded, expected an error`);
        status = 1;
    } catch (e) {
        print(`${what}: ${e.message} (reply code ${Carehare.error_get_reply_code(e)})`);
        if (!e.matches(Carehare.Error, code) || Carehare.error_get_reply_code(e) !== replyCode ||
            Carehare.error_is_transient(e) !== transient)
            status = 1;
    }
}

async function demonstrate(conn) {
    const body = new GLib.Bytes(new TextEncoder().encode('hello'));

    try {
        await conn.queue_declare_async('carehare-docs-no-such-queue',
            Carehare.QueueFlags.PASSIVE, null, null);
        status = 1;
    } catch (e) {
        // carehare.js sets reply_code on each error of the Carehare.Error domain.
        if (!e.matches(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER) ||
            e.reply_code !== 404)
            throw e;
        // Only this operation failed: the connection is still open.
        print(`no such queue (connection still open: ${!conn.is_closed}): ${e.message}`);
    }

    await expect('publish to a missing exchange',
        conn.publish_async('carehare-docs-no-such-exchange', 'key', body, null,
            Carehare.PublishFlags.NONE, null),
        Carehare.Error.CHANNEL_CLOSED_BY_SERVER, 404);

    // No queue is bound to this routing key: with MANDATORY the broker
    // returns the message, with reply code 312 NO_ROUTE.
    await expect('unroutable mandatory publish',
        conn.publish_async('', 'carehare-docs-nobody-listens', body, null,
            Carehare.PublishFlags.MANDATORY, null),
        Carehare.Error.UNROUTABLE, 312);

    // The queue is empty, so next_delivery waits, until the connection
    // closes and fails it with CONNECTION_CLOSED: nothing hangs.
    const [queue] = await conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE,
        null, null);
    const consumer = await conn.acking_consumer_async(queue, 0, 10, null);
    const pending = expect('waiting for a delivery when the connection closes',
        consumer.next_delivery_async(null), Carehare.Error.CONNECTION_CLOSED, 0, true);
    await conn.close_async(null);
    await pending;
}

const ARGV = System.programArgs;
if (ARGV.length !== 1) {
    printerr('usage: gjs -m error-handling.js amqp://user:password@host:port/vhost');
    System.exit(2);
}
const loop = new GLib.MainLoop(null, false);

// Even a malformed URI is reported by the Promise, never thrown by the call.
expect('connecting to http://localhost', Carehare.Connection.new_async('http://localhost', null),
    Carehare.Error.INVALID_URI).then(() => {
    const keeper = new Keeper(ARGV[0], conn => {
        demonstrate(conn).catch(e => {
            printerr(`unexpected: ${e.message}`);
            status = 1;
        }).finally(() => loop.quit());
    }, error => {
        printerr(`giving up: ${error.message}`);
        status = 1;
        loop.quit();
    });
    keeper.connect();
});
loop.run();
System.exit(status);
