// SPDX-License-Identifier: LGPL-2.1-or-later
// Consumes messages from a queue, acknowledging each, until COUNT messages
// arrived (0 or none: until Ctrl-C), then closes cleanly.
//
//     gjs -m consumer.js URI QUEUE [COUNT]
//
// The GJS twin of consumer.c, written with async/await over carehare.js:
// `for await` over the consumer, the fastest natural path (it takes the
// messages through the consumer's ::delivery signal, with no GIO round
// trip per message), ends once the consumer was closed (the end of the
// stream).
import GLib from 'gi://GLib';
import System from 'system';
// The module carehare-glib installs as $datadir/carehare-glib-1.0/carehare.js
// (file:///usr/share/carehare-glib-1.0/carehare.js): Carehare with every
// *_async method promisified once. Here, from the source tree.
import Carehare from '../bindings/gjs/carehare.js';

const ARGV = System.programArgs;

// What a program should do about a carehare-glib error.
function explain(error) {
    if (error instanceof GLib.Error && Carehare.error_is_transient(error))
        return 'transient: retrying later (with backoff) may succeed';
    return 'retrying will not help until the cause is fixed';
}

function printError(what, error) {
    printerr(`${what} failed: ${error.message}\n  -> ${explain(error)}`);
}

async function consume(uri, queue, count) {
    let conn;
    try {
        conn = await Carehare.Connection.new_async(uri, null);
    } catch (e) {
        printError('connecting', e);
        return 1;
    }

    let status = 0;
    let consumer = null;
    // Ctrl-C closes the consumer; the loop below then ends.
    let sigint = GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2 /* SIGINT */, () => {
        sigint = 0;
        print('interrupted: closing');
        if (consumer)
            consumer.close_async(null).catch(() => {});
        return GLib.SOURCE_REMOVE;
    });
    try {
        // Prefetch 10: at most ten unacknowledged messages are ever held.
        consumer = await conn.acking_consumer_async(queue, 0, 10, null);
        print(`waiting for messages on ${queue}`);
        const decoder = new TextDecoder();
        let received = 0;
        for await (const delivery of consumer) {
            const again = delivery.get_redelivered() ? ' (again)' : '';
            print(`received${again}: ${decoder.decode(delivery.get_body().toArray())}`);
            consumer.ack(delivery.get_delivery_tag());
            if (++received === count)
                break;
        }
    } catch (e) {
        if (!e.matches?.(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED)) {
            printError(consumer ? 'consuming' : 'starting the consumer', e);
            status = 1;
        }
    }
    if (sigint)
        GLib.source_remove(sigint);

    try {
        if (consumer)
            await consumer.close_async(null);
        await conn.close_async(null);
    } catch (e) {
        printError('closing', e);
    }
    return status;
}

if (ARGV.includes('--help') || ARGV.includes('-h')) {
    print('usage: gjs consumer.js URI QUEUE [COUNT]');
    System.exit(0);
}
if (ARGV.length < 2 || ARGV.length > 3) {
    printerr('usage: gjs -m consumer.js URI QUEUE [COUNT]');
    System.exit(2);
}
const loop = new GLib.MainLoop(null, false);
let exitStatus = 1;
consume(ARGV[0], ARGV[1], ARGV.length > 2 ? parseInt(ARGV[2], 10) : 0).then(status => {
    exitStatus = status;
}).catch(e => {
    logError(e);
}).finally(() => loop.quit());
loop.run();
System.exit(exitStatus);
