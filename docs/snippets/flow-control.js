// SPDX-License-Identifier: LGPL-2.1-or-later
// Flow control: a publisher that keeps at most WINDOW publishes in flight
// and gives up on what the broker has not taken by a deadline, then streams
// large messages pausing while the connection's output is above its
// high-water mark, and a consumer whose memory the prefetch count bounds.
//
//     gjs -m flow-control.js URI
//
// Shown in docs/flow-control.md and run by the tests.
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import System from 'system';
// carehare.js, installed as $datadir/carehare-glib-1.0/carehare.js; here,
// from the source tree.
import Carehare from '../../bindings/gjs/carehare.js';

const TOTAL = 1000; // messages to send
const WINDOW = 50; // publishes in flight at most
const PREFETCH = 20; // unacknowledged deliveries at most
const DEADLINE_S = 60; // for the whole batch
const LARGE_COUNT = 16; // large messages, streamed
const LARGE_SIZE = 256 * 1024;

// Never more than WINDOW publishes (and their bodies) waiting for the broker.
// Publishes not yet written when giveUp is cancelled reject with
// Gio.IOErrorEnum.CANCELLED; those already written get the broker's answer.
async function publishAll(conn, queue, giveUp) {
    const inFlight = new Set();
    for (let i = 0; i < TOTAL; i++) {
        if (inFlight.size >= WINDOW)
            await Promise.race(inFlight); // a failure stops the loop
        const body = new GLib.Bytes(new TextEncoder().encode(`message ${i}`));
        const done = conn.publish_async('', queue, body, null, Carehare.PublishFlags.NONE, giveUp)
            .finally(() => inFlight.delete(done));
        inFlight.add(done);
    }
    await Promise.all(inFlight);
}

// Resolves once the connection's output is back at the low-water mark or
// below (or the connection closed): the notify is emitted once when it rises
// above the high-water mark and once when it has drained.
function drained(conn) {
    return new Promise(resolve => {
        const id = conn.connect('notify::pending-write-bytes', () => {
            if (conn.pending_write_bytes <= Carehare.CONNECTION_WRITE_LOW_WATER_MARK) {
                conn.disconnect(id);
                resolve();
            }
        });
    });
}

// Publishes without a window, pausing while the output is above the
// high-water mark. Returns how many times it paused.
async function streamLarge(conn, queue) {
    const body = new GLib.Bytes(new Uint8Array(LARGE_SIZE));
    const confirms = [];
    let pauses = 0;
    for (let i = 0; i < LARGE_COUNT; i++) {
        if (conn.pending_write_bytes > Carehare.CONNECTION_WRITE_HIGH_WATER_MARK) {
            pauses++;
            await drained(conn);
        }
        confirms.push(conn.publish_async('', queue, body, null, Carehare.PublishFlags.NONE,
            null));
    }
    await Promise.all(confirms);
    return pauses;
}

async function main(uri) {
    const conn = await Carehare.Connection.new_async(uri, null);
    // The broker's memory or disk alarm: while blocked, publishes wait in the
    // library, unwritten, and complete once it unblocks.
    conn.connect('notify::is-blocked', () => {
        print(`the broker ${conn.is_blocked ? 'blocked' : 'unblocked'} this connection`);
    });
    try {
        const [queue] = await conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE,
            null, null);

        const giveUp = new Gio.Cancellable();
        const deadline = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, DEADLINE_S, () => {
            giveUp.cancel();
            return GLib.SOURCE_REMOVE;
        });
        try {
            await publishAll(conn, queue, giveUp);
        } catch (e) {
            if (e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED))
                printerr('not sent by the deadline: the broker is blocking us');
            throw e;
        } finally {
            if (!giveUp.is_cancelled())
                GLib.source_remove(deadline);
        }
        print(`${TOTAL} messages confirmed, never more than ${WINDOW} in flight`);
        const pauses = await streamLarge(conn, queue);
        print(`${LARGE_COUNT} large messages confirmed, paused ${
            pauses > 0 ? 'while the output was above the high-water mark' : 'never'}`);

        // prefetch_size 0: no byte limit (RabbitMQ supports no other).
        const consumer = await conn.acking_consumer_async(queue, 0, PREFETCH, null);
        let received = 0;
        for await (const delivery of consumer) {
            // Acking lets the broker send the next message: the consumer never
            // holds more than PREFETCH deliveries, however long the queue.
            consumer.ack(delivery.get_delivery_tag());
            if (++received === TOTAL + LARGE_COUNT)
                break;
        }
        print(`${received} messages received with prefetch ${PREFETCH}`);
    } finally {
        await conn.close_async(null);
    }
}

const ARGV = System.programArgs;
if (ARGV.length !== 1) {
    printerr('usage: gjs -m flow-control.js amqp://user:password@host:port/vhost');
    System.exit(2);
}
const loop = new GLib.MainLoop(null, false);
let status = 0;
main(ARGV[0]).catch(e => {
    printerr(`failed: ${e.message}`);
    status = 1;
}).finally(() => loop.quit());
loop.run();
System.exit(status);
