// SPDX-License-Identifier: LGPL-2.1-or-later
// Publishes messages to a durable queue with publisher confirms and reports,
// for each, whether the broker took responsibility for it.
//
//     gjs -m publisher.js URI QUEUE MESSAGE...
//
// The GJS twin of publisher.c: carehare.js (bindings/gjs) makes each *_async
// method return a Promise when called without a callback, so the program reads top to bottom
// with await while everything still runs on the GLib main loop. A failed
// *_finish() rejects the Promise with a GLib.Error.
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

async function publishAll(uri, queue, messages) {
    let conn;
    try {
        conn = await Carehare.Connection.new_async(uri, null);
    } catch (e) {
        printError('connecting', e);
        return 1;
    }

    let status = 0;
    try {
        // The out arguments come back as an array after the return value.
        const [name] = await conn.queue_declare_async(queue, Carehare.QueueFlags.DURABLE,
            null, null);
        const props = new Carehare.Properties({
            delivery_mode: 2, // persistent: survives a broker restart
            content_type: 'text/plain',
        });
        // Every message is in flight at once; each confirm settles on its own.
        const results = await Promise.allSettled(messages.map(text =>
            conn.publish_async('', name, new GLib.Bytes(new TextEncoder().encode(text)), props,
                Carehare.PublishFlags.MANDATORY, null)));
        results.forEach((result, i) => {
            if (result.status === 'fulfilled') {
                print(`confirmed: ${messages[i]}`);
            } else {
                // Only this message failed.
                printError(messages[i], result.reason);
                status = 1;
            }
        });
    } catch (e) {
        printError('declaring the queue', e);
        status = 1;
    }

    try {
        await conn.close_async(null);
    } catch (e) {
        printError('closing', e);
    }
    return status;
}

if (ARGV.includes('--help') || ARGV.includes('-h')) {
    print('usage: gjs publisher.js URI QUEUE MESSAGE...');
    System.exit(0);
}
if (ARGV.length < 3) {
    printerr('usage: gjs -m publisher.js URI QUEUE MESSAGE...');
    System.exit(2);
}
const loop = new GLib.MainLoop(null, false);
let exitStatus = 1;
publishAll(ARGV[0], ARGV[1], ARGV.slice(2)).then(status => {
    exitStatus = status;
}).catch(e => {
    logError(e);
}).finally(() => loop.quit());
loop.run();
System.exit(exitStatus);
