// SPDX-License-Identifier: LGPL-2.1-or-later
// One round of amqplib (Node), the peer of bench-gjs.js, for bench-clients.py:
//
//     NODE_PATH=DIR/node_modules node bench-amqplib.cjs MODE URI QUEUE COUNT SIZE DEPTH
//
// bench-clients.py installs amqplib from the npm registry into a scratch
// folder of its own (never a dependency of the project) and sets NODE_PATH.
// MODE is `publish` (a confirm channel, COUNT messages of SIZE bytes, at
// most DEPTH unconfirmed, pausing on `drain` when sendToQueue() says the
// socket is full) or `consume` (prefetch DEPTH, consume() with an ack per
// message), the style of amqplib's own examples. The last line on stdout is
//
//     RESULT ops=N secs=S cpu_us=C maxrss_kib=K
//
// with process.cpuUsage() (user + system, every thread) around the timed
// phase only. Counting system calls: see perf_open() in bench.c.
'use strict';

const fs = require('fs');
let amqp;
try {
    amqp = require('amqplib');
} catch (e) {
    console.log(`SKIP amqplib is not installed: ${e.message.split('\n')[0]}`);
    process.exit(0);
}

const [mode, uri, queue, countS, sizeS, depthS] = process.argv.slice(2);
const count = parseInt(countS, 10);
const size = parseInt(sizeS, 10);
const depth = parseInt(depthS, 10);

class Timer {
    constructor() {
        const ctl = process.env.BENCH_PERF_CTL, ack = process.env.BENCH_PERF_ACK;
        if (ctl && ack) {
            this.ctl = fs.openSync(ctl, 'w');
            this.ack = fs.openSync(ack, 'r');
        }
    }

    perf(command) {
        if (this.ctl === undefined)
            return;
        fs.writeSync(this.ctl, `${command}\n`);
        const buf = Buffer.alloc(16);
        if (fs.readSync(this.ack, buf, 0, buf.length, null) <= 0)
            throw new Error(`perf did not acknowledge ${command}`);
    }

    start() {
        this.perf('enable');
        this.cpu0 = process.cpuUsage();
        this.t0 = process.hrtime.bigint();
    }

    stop() {
        this.secs = Number(process.hrtime.bigint() - this.t0) / 1e9;
        const cpu = process.cpuUsage(this.cpu0);
        this.cpuUs = cpu.user + cpu.system;
        this.perf('disable');
    }
}

function publishWindow(ch, body) {
    return new Promise((resolve, reject) => {
        let sent = 0, confirmed = 0, waitingForDrain = false;
        const more = () => {
            while (!waitingForDrain && sent < count && sent - confirmed < depth) {
                sent++;
                const ok = ch.sendToQueue(queue, body, {}, err => {
                    if (err) {
                        reject(err);
                        return;
                    }
                    confirmed++;
                    if (confirmed === count)
                        resolve();
                    else
                        more();
                });
                if (!ok) {
                    waitingForDrain = true;
                    ch.once('drain', () => {
                        waitingForDrain = false;
                        more();
                    });
                }
            }
        };
        more();
    });
}

async function main() {
    // amqp://host:port/ is the vhost "/" for carehare-glib; amqplib reads
    // an empty path the same way.
    const timer = new Timer();
    const conn = await amqp.connect(uri);
    const body = Buffer.alloc(size);
    if (mode === 'publish') {
        const ch = await conn.createConfirmChannel();
        await ch.assertQueue(queue, {durable: false});
        timer.start();
        await publishWindow(ch, body);
        timer.stop();
        await ch.deleteQueue(queue);
    } else {
        const ch = await conn.createChannel();
        await ch.prefetch(depth);
        let received = 0;
        let tag;
        timer.start();
        await new Promise((resolve, reject) => {
            ch.consume(queue, msg => {
                if (msg.content.length !== size) {
                    reject(new Error('unexpected body size'));
                    return;
                }
                ch.ack(msg);
                if (++received === count)
                    resolve();
            }).then(ok => {
                tag = ok.consumerTag;
            }, reject);
        });
        timer.stop();
        await ch.cancel(tag);
        await ch.deleteQueue(queue);
    }
    await conn.close();
    const rss = process.resourceUsage().maxRSS;
    console.log(`RESULT ops=${count} secs=${timer.secs.toFixed(6)} ` +
                `cpu_us=${Math.round(timer.cpuUs)} maxrss_kib=${rss}`);
}

main().catch(e => {
    console.error(`bench-amqplib: ${e.message}`);
    process.exit(1);
});
