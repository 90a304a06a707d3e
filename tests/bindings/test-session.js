// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Carehare.Session from GJS, through a reconnection the broker forces
// (rabbitmqctl close_connection). Run as `gjs -m test-session.js` with
// GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing at the build directory and
// the broker's environment. Prints TAP.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
// The module carehare-glib installs: every *_async of Carehare, Session's
// included, promisified once.
import Carehare from '../../bindings/gjs/carehare.js';
import System from 'system';

const TIMEOUT_MS = 30000;

function env(name) {
    const value = GLib.getenv(name);
    if (!value)
        throw new Error(`${name} is not set: run eval "$(test-server/broker env)"`);
    return value;
}

function unique(prefix) {
    return `carehare-gjs-session-${prefix}-${GLib.uuid_string_random().slice(0, 12)}`;
}

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

function ctl(...args) {
    const proc = Gio.Subprocess.new([env('CAREHARE_TEST_BROKER'), 'ctl', ...args],
        Gio.SubprocessFlags.STDOUT_PIPE | Gio.SubprocessFlags.STDERR_PIPE);
    const [, out] = proc.communicate_utf8(null, null);
    assert(proc.get_successful(), `broker ctl ${args[0]} failed`);
    return out;
}

async function brokerCloseConnection(name) {
    for (let i = 0; i < 50; i++) {
        const out = ctl('list_connections', '--quiet', '--no-table-headers', 'pid',
            'client_properties');
        const line = out.split('\n').find(l => l.startsWith('<') && l.includes(name));
        if (line) {
            ctl('close_connection', line.slice(0, line.indexOf('>') + 1), 'forced by test');
            return;
        }
        // eslint-disable-next-line no-await-in-loop
        await new Promise(resolve => GLib.timeout_add(GLib.PRIORITY_DEFAULT, 200, () => {
            resolve();
            return GLib.SOURCE_REMOVE;
        }));
    }
    throw new Error(`the broker never listed ${name}`);
}

const tests = [];

tests.push({
    name: 'session through a forced reconnection',
    fn: async () => {
        const queue = unique('q');
        const name = unique('conn');
        const session = Carehare.Session.new([`${env('CAREHARE_TEST_AMQP_URI')}?connection_name=${name}`]);
        session.reconnect_delay_min = 10;
        session.reconnect_delay_max = 200;
        const events = [];
        session.connect('connected', () => events.push('C'));
        session.connect('disconnected', () => events.push('D'));
        session.declare_queue(queue, Carehare.QueueFlags.AUTO_DELETE, null);
        const consumer = session.acking_consumer(queue, 10);
        assert(consumer instanceof Carehare.Consumer);
        session.start();
        await until(() => session.state === Carehare.SessionState.CONNECTED);

        await timeout(session.publish_async('', queue, new GLib.Bytes('before'), null,
            Carehare.PublishFlags.NONE, null));
        const first = await timeout(consumer.next_delivery_async(null));
        const firstTag = first.get_delivery_tag();
        consumer.ack(firstTag);

        const pending = consumer.next_delivery_async(null);
        await brokerCloseConnection(name);
        await until(() => events.join('') === 'CDC');
        assert(Carehare.error_get_reply_code(session.last_error) === 320,
            `last error: ${session.last_error?.message}`);

        await timeout(session.publish_async('', queue, new GLib.Bytes('after'), null,
            Carehare.PublishFlags.NONE, null));
        const delivery = await timeout(pending);
        assert(new TextDecoder().decode(delivery.get_body().toArray()) === 'after');
        assert(delivery.get_delivery_tag() > firstTag, 'tags grow across connections');
        consumer.ack(delivery.get_delivery_tag());

        await timeout(session.close_async(null));
        assert(events.join('') === 'CDCD', `events ${events.join('')}`);
        assert(session.state === Carehare.SessionState.STOPPED);
        let closedError = null;
        try {
            await timeout(consumer.next_delivery_async(null));
        } catch (error) {
            closedError = error;
        }
        assert(closedError !== null, 'next_delivery after close succeeded');
        assert(closedError instanceof GLib.Error &&
            closedError.matches(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED),
            `${closedError}`);
    },
});

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
