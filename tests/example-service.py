#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The service example against the private broker: it consumes, survives a
server-side close of its connection by reconnecting with backoff, processes
every message published before and after, and exits 0 after --exit-after N.
A second run checks that SIGTERM closes it cleanly.

    example-service.py EXAMPLES_BUILD_DIR
"""
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

examples = sys.argv[1]
uri = os.environ.get("CAREHARE_TEST_AMQP_URI")
broker = os.environ.get("CAREHARE_TEST_BROKER")
if not uri or not broker:
    sys.exit("start the broker: test-server/broker start, then eval \"$(test-server/broker env)\"")

suffix = f"{os.getpid()}-{random.randrange(1 << 30)}"
queue = f"carehare-service-{suffix}"
name = f"carehare-service-test-{suffix}"
service_uri = uri + ("&" if "?" in uri else "?") + "connection_name=" + name


def ctl(*args):
    return subprocess.run([broker, "ctl", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


def publish(*messages):
    subprocess.run([os.path.join(examples, "publisher"), uri, queue, *messages],
                   check=True, stdout=subprocess.DEVNULL, timeout=30)


def wait_for(log, predicate, what, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = open(log, encoding="utf-8", errors="replace").read()
        if predicate(text):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.stderr.write(open(log, encoding="utf-8", errors="replace").read())
    sys.exit(f"timed out waiting for {what}")


def close_connection_by_name(reason):
    # The broker lists a new connection after a short while.
    for _ in range(50):
        for line in ctl("list_connections", "--quiet", "--no-table-headers",
                        "pid", "client_properties").splitlines():
            if name in line and line.startswith("<"):
                ctl("close_connection", line[:line.index(">") + 1], reason)
                return
        time.sleep(0.2)
    sys.exit(f"the broker never listed connection {name}")


def run():
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "service.log")
        first = [f"before-{i}" for i in range(3)]
        second = [f"after-{i}" for i in range(4)]
        with open(log, "w") as out:
            proc = subprocess.Popen([os.path.join(examples, "service"), service_uri, queue,
                                     "--exit-after", str(len(first) + len(second))],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(log, lambda t: "consuming " + queue in t, "the service to consume", proc)
            publish(*first)
            wait_for(log, lambda t: all(f"processed: {m}\n" in t for m in first),
                     "the first messages", proc)

            close_connection_by_name("carehare-glib test: forced close")
            wait_for(log, lambda t: "reconnecting in" in t, "the service to notice", proc)
            # Published while the service may still be away: the durable
            # queue keeps them until it is back.
            publish(*second)
            status = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = open(log, encoding="utf-8", errors="replace").read()
        print(text)
        assert status == 0, f"service exited with {status}"
        for m in first + second:
            assert f": {m}\n" in text, f"{m} was not processed"
        assert "320 CONNECTION_FORCED" in text, "the close was not logged with its reply code"
        assert "transient: retrying later" in text, "the error was not called transient"
        assert text.count("consuming " + queue) == 2, "the service did not consume again"
        # Logged at exit: the second connection's counters, which saw exactly
        # the messages published after the forced close.
        counters = [line for line in text.splitlines() if "counters: " in line]
        assert counters, "the counters were not logged"
        assert f"received {len(second)}, acked {len(second)}, nacked 0;" in counters[-1], counters[-1]

        # SIGTERM: a clean close and status 0.
        log = os.path.join(tmp, "service-term.log")
        with open(log, "w") as out:
            proc = subprocess.Popen([os.path.join(examples, "service"), service_uri, queue],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(log, lambda t: "consuming " + queue in t, "the service to consume", proc)
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        print(open(log).read())
        assert status == 0, f"service exited with {status} on SIGTERM"


try:
    run()
finally:
    subprocess.run([broker, "ctl", "delete_queue", queue], capture_output=True, timeout=60)
print("ok")
