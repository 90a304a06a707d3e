// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Carehare for GJS, promisified once: import this module instead of
// gi://Carehare and every *_async method returns a promise when called
// without a callback:
//
//     import Carehare from 'file:///usr/share/carehare-glib-1.0/carehare.js';
//     const conn = await Carehare.Connection.new_async(uri, null);
//     const queue = await conn.queue_declare_async('', Carehare.QueueFlags.EXCLUSIVE, null, null);
//     for await (const delivery of consumer)
//         consumer.ack(delivery.get_delivery_tag());
//
// A rejected promise carries the GLib.Error (its domain Carehare.Error,
// its code), with `reply_code` set from Carehare.error_get_reply_code().
// Iterating a consumer takes each message through its ::delivery signal
// until the consumer is closed (the loop ends; a consumer closed with an
// error throws it). It is installed as $datadir/carehare-glib-1.0/carehare.js.

import Carehare from 'gi://Carehare?version=1.0';

function withReplyCode(error) {
    if (error instanceof Carehare.Error || error?.domain === Carehare.error_quark()) {
        try {
            error.reply_code = Carehare.error_get_reply_code(error);
        } catch {
            // not a GLib.Error after all
        }
    }
    return error;
}

// What Gio._promisify() does, for less per call: the promise's resolve and
// reject reach the GIO callback through one closure, the finish function is
// looked up once, and no Error is made per call to keep the caller's stack
// (Gio._promisify builds one each time, which costs more than the GI call
// itself on a publish). Called with its callback, a method is the plain GI
// one; without it, a promise of the finish function's result (a leading
// `true` of a multi-value result dropped, as Gio._promisify does), rejected
// with the GLib.Error carrying reply_code.
function promisify(target, name) {
    const asyncName = `${name}_async`;
    const finishName = `${name}_finish`;
    const originalName = `_original_${asyncName}`;
    const original = target[asyncName];
    const finish = target[finishName];
    if (typeof original !== 'function' || typeof finish !== 'function' ||
        target[originalName] !== undefined)
        return;
    // Also tells a later Gio._promisify() of the same method that it is done.
    target[originalName] = original;
    const arity = original.length;
    const settle = (source, result, resolve, reject) => {
        let value;
        try {
            value = source !== null && source !== undefined && source[finishName] === finish
                ? finish.call(source, result)
                : target[finishName](result);
        } catch (error) {
            reject(withReplyCode(error));
            return;
        }
        if (Array.isArray(value) && value.length > 1 && value[0] === true)
            value.shift();
        resolve(value);
    };
    target[asyncName] = function (...args) {
        if (args.length === arity)
            return original.apply(this, args);
        return new Promise((resolve, reject) => {
            args.push((source, result) => settle(source, result, resolve, reject));
            original.apply(this, args);
        });
    };
}

// Every *_async with its *_finish, found rather than listed, so that a
// method or class the library adds later (Session's, update_secret...) is a
// promise too: the static ones (Connection.new_async) and the instance ones.
for (const name of Object.keys(Carehare)) {
    const klass = Carehare[name];
    if (typeof klass !== 'function' || !klass.prototype || klass.$gtype === undefined)
        continue;
    for (const target of [klass, klass.prototype]) {
        for (const member of Object.getOwnPropertyNames(target)) {
            if (member.endsWith('_async'))
                promisify(target, member.slice(0, -'_async'.length));
        }
    }
}

// publish_async() as a promise without a cancellable takes the fast path:
// publish_tracked(), whose confirms come back in one ::publishes-confirmed
// per read (take_confirmed()), so no GTask and no GI callback per message.
// The same outcomes: the promise resolves to true on the confirm and
// rejects with the GLib.Error of publish_async() (reply_code set).
const trackedOf = new WeakMap();
const promisedPublish = Carehare.Connection.prototype.publish_async;
Carehare.Connection.prototype.publish_async = function (exchange, routingKey, body, properties,
    flags, cancellable, ...rest) {
    if (rest.length > 0 || (cancellable !== null && cancellable !== undefined))
        return promisedPublish.call(this, exchange, routingKey, body, properties, flags,
            cancellable, ...rest);
    let pending = trackedOf.get(this);
    if (pending === undefined) {
        pending = new Map();
        trackedOf.set(this, pending);
        this.connect('publishes-confirmed', connection => {
            for (const id of connection.take_confirmed() ?? []) {
                const settle = pending.get(id);
                if (settle) {
                    pending.delete(id);
                    settle.resolve(true);
                }
            }
        });
        this.connect('publish-failed', (_connection, id, error) => {
            const settle = pending.get(id);
            if (settle) {
                pending.delete(id);
                settle.reject(withReplyCode(error));
            }
        });
    }
    return new Promise((resolve, reject) => {
        pending.set(this.publish_tracked(exchange, routingKey, body, properties, flags),
            {resolve, reject});
    });
};

// `for await (const delivery of consumer)`: each Carehare.Delivery until
// the consumer is closed. Nothing is acked for you. The loop takes the
// messages through the consumer's ::delivery signal (one handler call per
// message into an array; no GIO round trip per message, a promise only
// when the array is empty), so next_delivery_async() fails with BUSY
// while it runs. When it ends (break, return, throw), the handlers go and
// messages received but not yet taken go back to the queue (nack with
// requeue). A rejected message throws its error in its place, as
// next_delivery_async() would; a consumer closed with an error throws it.
Carehare.Consumer.prototype[Symbol.asyncIterator] = function deliveries() {
    // An iterator object rather than an async generator: a message that is
    // already here costs one resolved promise, where a generator's yield
    // costs several promise jobs per message (half the CPU of a consumer).
    const consumer = this;
    const items = [];
    let head = 0;
    let end = null; // {error} once the consumer closed
    let waiter = null; // {resolve, reject} of a next() that found nothing
    let ids = null;
    let over = false;
    const giveBack = () => {
        for (; head < items.length; head++) {
            if (items[head].delivery)
                consumer.nack(items[head].delivery.get_delivery_tag(), true);
        }
        items.length = 0;
        head = 0;
    };
    const finish = () => {
        if (over)
            return;
        over = true;
        if (ids) {
            for (const id of ids)
                consumer.disconnect(id);
        }
        giveBack();
    };
    const done = () => ({value: undefined, done: true});
    // The outcome of one item (or of the end) for next().
    const settle = (item, resolve, reject) => {
        if (item.error) {
            finish();
            reject(item.error);
        } else {
            resolve({value: item.delivery, done: false});
        }
    };
    const arrive = item => {
        if (waiter) {
            const {resolve, reject} = waiter;
            waiter = null;
            settle(item, resolve, reject);
        } else {
            items.push(item);
        }
    };
    const start = () => {
        ids = [
            consumer.connect('delivery', (_consumer, delivery) => arrive({delivery})),
            consumer.connect('rejected', (_consumer, error) => arrive({error: withReplyCode(error)})),
            consumer.connect('closed', (_consumer, error) => {
                giveBack();
                end = error ? {error: withReplyCode(error)} : {};
                if (waiter) {
                    const {resolve, reject} = waiter;
                    waiter = null;
                    finish();
                    if (end.error)
                        reject(end.error);
                    else
                        resolve(done());
                }
            }),
        ];
    };
    let first = true;
    const iterator = {
        next() {
            if (over)
                return Promise.resolve(done());
            if (first) {
                first = false;
                if (consumer.get_is_closed()) {
                    // Closed already: next_delivery says how.
                    over = true;
                    return consumer.next_delivery_async(null).then(() => done(), e => {
                        if (e instanceof Carehare.Error && e.code === Carehare.Error.CHANNEL_CLOSED)
                            return done();
                        throw e;
                    });
                }
                start();
            }
            if (head < items.length) {
                const item = items[head];
                items[head++] = null;
                if (head === items.length) {
                    items.length = 0;
                    head = 0;
                }
                if (item.error) {
                    finish();
                    return Promise.reject(item.error);
                }
                return Promise.resolve({value: item.delivery, done: false});
            }
            if (end) {
                finish();
                return end.error ? Promise.reject(end.error) : Promise.resolve(done());
            }
            return new Promise((resolve, reject) => {
                waiter = {resolve, reject};
            });
        },
        return() {
            finish();
            return Promise.resolve(done());
        },
        [Symbol.asyncIterator]() {
            return this;
        },
    };
    return iterator;
};

export default Carehare;
