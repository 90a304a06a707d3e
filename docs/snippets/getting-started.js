// SPDX-License-Identifier: LGPL-2.1-or-later
// Getting started: connect, declare a queue, publish one message with a
// publisher confirm, consume it with an ack, close.
//
//     gjs -m getting-started.js URI
//
// Shown in docs/getting-started.md and run by the tests.
import GLib from 'gi://GLib';
import System from 'system';
// carehare.js: Carehare with each *_async method returning a Promise when
// called without a callback; a failed operation rejects it with a
// GLib.Error. Installed as $datadir/carehare-glib-1.0/carehare.js: import
// 'file:///usr/share/carehare-glib-1.0/carehare.js'. Here, from the source tree.
import Carehare from '../../bindings/gjs/carehare.js';

async function main(uri) {
    const conn = await Carehare.Connection.new_async(uri, null);
    try {
        // "": the broker picks the name; EXCLUSIVE: the queue goes when we do.
        // The out arguments come in an array after the return value.
        const [queue] = await conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE,
            null, null);
        print(`declared ${queue}`);

        const props = new Carehare.Properties({content_type: 'text/plain'});
        const body = new GLib.Bytes(new TextEncoder().encode('Hello from carehare-glib'));
        // The default exchange '' routes to the queue named by the routing key;
        // MANDATORY makes an unroutable message an error instead of a loss.
        // Resolves once the broker has taken responsibility for the message.
        await conn.publish_async('', queue, body, props, Carehare.PublishFlags.MANDATORY, null);
        print('the broker confirmed the message');

        // Prefetch 10: the broker sends at most 10 unacknowledged messages.
        const consumer = await conn.acking_consumer_async(queue, 0, 10, null);
        // Each delivery as it arrives, until the consumer is closed or the
        // loop is left.
        for await (const delivery of consumer) {
            print(`received "${new TextDecoder().decode(delivery.get_body().toArray())}"`);
            // Settle every delivery: ack() never fails and is not awaited.
            consumer.ack(delivery.get_delivery_tag());
            break; // one is all this program wants
        }
    } finally {
        await conn.close_async(null);
    }
}

const ARGV = System.programArgs;
if (ARGV.length !== 1) {
    printerr('usage: gjs -m getting-started.js amqp://user:password@host:port/vhost');
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
