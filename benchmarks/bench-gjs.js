// SPDX-License-Identifier: LGPL-2.1-or-later
// One round of carehare-glib from GJS, for bench-clients.py:
//
//     gjs -m bench-gjs.js MODE URI QUEUE COUNT SIZE DEPTH
//
// MODE is `publish` (COUNT messages of SIZE bytes with confirms, at most
// DEPTH unconfirmed: each publish_async() a promise), `consume` (prefetch
// DEPTH, `for await (const delivery of consumer)` and an ack each, the
// style of bindings/gjs/carehare.js and examples/consumer.js) or
// `consume-signal` (Carehare.Consumer::delivery, when the library has it).
// The last line on stdout is
//
//     RESULT ops=N secs=S cpu_us=C maxrss_kib=K
//
// CPU time is read from /proc/self/task/*/schedstat (every thread of the
// process, nanoseconds: GJS has no getrusage()), around the timed phase
// only. `SKIP reason` instead when the mode is not available. Counting
// system calls: see perf_open() in bench.c (BENCH_PERF_CTL, BENCH_PERF_ACK).
import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Gio from 'gi://Gio';
import System from 'system';
import Carehare from '../bindings/gjs/carehare.js';

const [mode, uri, queue, countS, sizeS, depthS] = System.programArgs;
const count = parseInt(countS, 10);
const size = parseInt(sizeS, 10);
const depth = parseInt(depthS, 10);

function cpuUs() {
    let ns = 0;
    const dir = Gio.File.new_for_path('/proc/self/task');
    const tasks = dir.enumerate_children('standard::name', Gio.FileQueryInfoFlags.NONE, null);
    for (let info = tasks.next_file(null); info; info = tasks.next_file(null)) {
        try {
            const [, bytes] = GLib.file_get_contents(`/proc/self/task/${info.get_name()}/schedstat`);
            ns += parseInt(new TextDecoder().decode(bytes).split(' ')[0], 10);
        } catch {
            // the thread ended meanwhile
        }
    }
    tasks.close(null);
    return ns / 1000;
}

function maxRssKib() {
    const [, bytes] = GLib.file_get_contents('/proc/self/status');
    const m = /VmHWM:\s+(\d+)/.exec(new TextDecoder().decode(bytes));
    return m ? parseInt(m[1], 10) : 0;
}

class Timer {
    constructor() {
        const ctl = GLib.getenv('BENCH_PERF_CTL'), ack = GLib.getenv('BENCH_PERF_ACK');
        if (ctl && ack) {
            this.ctl = Gio.File.new_for_path(ctl).append_to(Gio.FileCreateFlags.NONE, null);
            this.ack = Gio.DataInputStream.new(Gio.File.new_for_path(ack).read(null));
        }
    }

    perf(command) {
        if (!this.ctl)
            return;
        this.ctl.write_all(new TextEncoder().encode(`${command}\n`), null);
        this.ctl.flush(null);
        const [line] = this.ack.read_line_utf8(null);
        if (line === null)
            throw new Error(`perf did not acknowledge ${command}`);
    }

    start() {
        this.perf('enable');
        this.cpu0 = cpuUs();
        this.t0 = GLib.get_monotonic_time();
    }

    stop() {
        this.secs = (GLib.get_monotonic_time() - this.t0) / 1e6;
        this.cpuUs = cpuUs() - this.cpu0;
        this.perf('disable');
    }
}

function publishWindow(conn, body) {
    return new Promise((resolve, reject) => {
        let sent = 0, confirmed = 0;
        const more = () => {
            while (sent < count && sent - confirmed < depth) {
                sent++;
                conn.publish_async('', queue, body, null, Carehare.PublishFlags.NONE, null)
                    .then(() => {
                        confirmed++;
                        if (confirmed === count)
                            resolve();
                        else
                            more();
                    }, reject);
            }
        };
        more();
    });
}

function checkSize(delivery) {
    if (delivery.get_body().get_size() !== size)
        throw new Error('unexpected body size');
}

async function main() {
    if (mode === 'consume-signal' && !GObject.signal_lookup('delivery', Carehare.Consumer)) {
        print('SKIP no ::delivery signal');
        return;
    }
    const timer = new Timer();
    const conn = await Carehare.Connection.new_async(uri, null);
    if (mode === 'publish') {
        await conn.queue_declare_async(queue, Carehare.QueueFlags.NONE, null, null);
        const body = new GLib.Bytes(new Uint8Array(size));
        timer.start();
        await publishWindow(conn, body);
        timer.stop();
    } else {
        const consumer = await conn.acking_consumer_async(queue, 0, depth, null);
        let received = 0;
        timer.start();
        if (mode === 'consume') {
            for await (const delivery of consumer) {
                checkSize(delivery);
                consumer.ack(delivery.get_delivery_tag());
                if (++received === count)
                    break;
            }
        } else {
            await new Promise(resolve => {
                const id = consumer.connect('delivery', (c, delivery) => {
                    if (received >= count)
                        return;
                    checkSize(delivery);
                    c.ack(delivery.get_delivery_tag());
                    if (++received === count) {
                        c.disconnect(id);
                        resolve();
                    }
                });
            });
        }
        timer.stop();
        await consumer.close_async(null);
    }
    await conn.queue_delete_async(queue, Carehare.QueueDeleteFlags.NONE, null);
    await conn.close_async(null);
    print(`RESULT ops=${count} secs=${timer.secs.toFixed(6)} cpu_us=${Math.round(timer.cpuUs)} ` +
          `maxrss_kib=${maxRssKib()}`);
}

const loop = new GLib.MainLoop(null, false);
let status = 0;
main().catch(e => {
    printerr(`bench-gjs: ${e.message}`);
    status = 1;
}).finally(() => loop.quit());
loop.run();
System.exit(status);
