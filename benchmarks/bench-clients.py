#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""carehare-glib from C, Python and GJS against the peer clients of each
language, on one broker, in one run (issue 19). docs/benchmarks.md says
how to read the table.

    benchmarks/bench-clients.py [--build DIR] [--rounds K] [--messages N]
                                [--quick] [--only GROUP,...] [URI]

URI defaults to $CAREHARE_TEST_AMQP_URI. Groups (all by default):

  c       256 B, publish with confirms (100 in flight) and consume with
          prefetch 100: carehare-glib (one next_delivery_async per message,
          next_deliveries_async, the ::delivery signal) against rabbitmq-c
  sweep   publish and consume (one next_delivery_async per message) of
          4 KiB, 64 KiB and 1 MiB bodies against rabbitmq-c (256 B: the
          c group)
  python  carehare-glib through PyGObject and its override against the
          Python carehare library ($CAREHARE_PY_PATH: a checkout of it) and
          aio-pika
  gjs     carehare-glib from GJS (carehare.js) against amqplib on Node,
          installed from the npm registry into DIR/benchmarks/node-peer

Every round of every client is a process of its own (bench --run,
bench-rabbitmq-c, bench-python.py, bench-gjs.js, bench-amqplib.cjs: the same
arguments MODE URI QUEUE COUNT SIZE DEPTH, one RESULT line); queues that a
consumer reads are filled first by `bench --run fill`. The clients of a case
take turns in a different order every round; each figure is the median of K
rounds. System calls are counted in one more round per client, under
`perf stat` with the counters enabled around the timed phase only (the
runners drive perf's control FIFOs), so that counting costs the timed
rounds nothing. A client or mode that is not available is skipped with a
line saying why.
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# System calls counted per message, by family (tracepoints that exist here).
SYSCALL_FAMILIES = {
    "poll": ["poll", "ppoll", "epoll_wait", "epoll_pwait", "epoll_pwait2"],
    "write": ["write"],
    "read": ["read"],
    "send": ["sendto", "sendmsg", "writev"],
    "recv": ["recvfrom", "recvmsg", "readv"],
    "futex": ["futex"],
}


class Client:
    """One way of running a case: argv before MODE, the MODE to pass."""

    def __init__(self, name, argv, mode, deletes=True, peer=False):
        self.name, self.argv, self.mode = name, argv, mode
        self.deletes = deletes      # the runner deletes its queue itself
        self.peer = peer            # a peer: the others are compared with it
        self.skipped = None         # why, once it said SKIP


class Case:
    def __init__(self, group, title, kind, count, size, depth, clients):
        self.group, self.title, self.kind = group, title, kind
        self.count, self.size, self.depth = count, size, depth
        self.clients = clients
        self.results = {c.name: [] for c in clients}   # (rate, cpu_us_per_msg, rss_mib)
        self.syscalls = {}          # name -> {family: per msg, "total": ..}, medians
        self.syscall_rounds = {}    # name -> [{family: per msg...}], one per round
        self.failed = {}


class Driver:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.bench = os.path.join(self.build, "benchmarks", "bench")
        self.rabbitmq_c = os.path.join(self.build, "benchmarks", "bench-rabbitmq-c")
        self.seq = 0
        self.failed = False
        libdir = os.path.join(self.build, "carehare-glib")
        self.env = dict(os.environ)
        self.env["GI_TYPELIB_PATH"] = os.pathsep.join(
            p for p in (libdir, os.environ.get("GI_TYPELIB_PATH")) if p)
        self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, os.environ.get("LD_LIBRARY_PATH")) if p)
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.path.join(SRC, "bindings", "python"),
                        os.environ.get("PYTHONPATH")) if p)
        self.perf_events = self.find_perf()
        self.tmp = tempfile.mkdtemp(prefix="bench-clients-")

    # ---- perf -----------------------------------------------------------

    def find_perf(self):
        """The tracepoints to count, or a string saying why there are none."""
        if shutil.which("perf") is None:
            return "perf is not installed"
        events = ["raw_syscalls:sys_enter"]
        for names in SYSCALL_FAMILIES.values():
            for n in names:
                if os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_" + n):
                    events.append("syscalls:sys_enter_" + n)
        probe = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(events), "--", "true"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if probe.returncode != 0 or "<not supported>" in probe.stderr:
            return "perf cannot count syscall tracepoints here (root or " \
                   "kernel.perf_event_paranoid <= -1 needed)"
        return events

    def perf_wrap(self, argv, env):
        """argv under perf stat, counters off until the runner enables them."""
        ctl = os.path.join(self.tmp, "ctl")
        ack = os.path.join(self.tmp, "ack")
        out = os.path.join(self.tmp, "perf.csv")
        for p in (ctl, ack, out):
            if os.path.exists(p):
                os.unlink(p)
        os.mkfifo(ctl)
        os.mkfifo(ack)
        env = dict(env, BENCH_PERF_CTL=ctl, BENCH_PERF_ACK=ack)
        return (["perf", "stat", "-x,", "-o", out, "--delay=-1",
                 "--control", "fifo:%s,%s" % (ctl, ack), "-e", ",".join(self.perf_events),
                 "--"] + argv, env, out)

    @staticmethod
    def read_perf(path):
        counts = {}
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) < 3 or line.startswith("#"):
                    continue
                try:
                    counts[parts[2]] = int(parts[0])
                except ValueError:
                    counts[parts[2]] = 0     # <not counted>
        return counts

    # ---- children -------------------------------------------------------

    def new_queue(self):
        self.seq += 1
        return "bench-clients-%d-%d" % (os.getpid(), self.seq)

    def run(self, argv, env=None, timeout=600):
        """Runs a runner; (RESULT fields, None) or (None, SKIP reason) or
        raises RuntimeError."""
        proc = subprocess.run(argv, env=env or self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        for line in reversed(lines):
            if line.startswith("SKIP "):
                return None, line[5:]
            if line.startswith("RESULT "):
                if proc.returncode != 0:
                    break
                fields = {}
                for kv in line.split()[1:]:
                    k, _, v = kv.partition("=")
                    fields[k] = float(v)
                return fields, None
        raise RuntimeError("%s exited %d: %s" % (os.path.basename(argv[0]) if argv[0] not in
                                                 ("/usr/bin/python3", "gjs", "node")
                                                 else " ".join(argv[:3]),
                                                 proc.returncode,
                                                 (proc.stderr.strip() or proc.stdout.strip())
                                                 [-500:]))

    def delete(self, queue):
        try:
            self.run([self.bench, "--run", "delete", self.args.uri, queue, "1", "0", "1"])
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def one(self, case, client, counting):
        """One round of one client; returns its RESULT, or None if skipped."""
        queue = self.new_queue()
        if case.kind == "consume":
            self.run([self.bench, "--run", "fill", self.args.uri, queue, str(case.count),
                      str(case.size), "1000"])
        argv = client.argv + [client.mode, self.args.uri, queue, str(case.count),
                              str(case.size), str(case.depth)]
        env, out = self.env, None
        if counting:
            argv, env, out = self.perf_wrap(argv, env)
        try:
            fields, skip = self.run(argv, env)
        except BaseException:
            self.delete(queue)
            raise
        if skip is not None or not client.deletes:
            self.delete(queue)
        if skip is not None:
            client.skipped = skip
            return None
        if counting:
            fields["perf"] = self.read_perf(out)
        return fields

    def run_case(self, case):
        rounds = self.args.rounds
        extra = self.args.syscall_rounds if isinstance(self.perf_events, list) else 0
        for r in range(rounds + extra):
            counting = r >= rounds
            k = r % len(case.clients)
            for client in case.clients[k:] + case.clients[:k]:
                if client.skipped or client.name in case.failed:
                    continue
                try:
                    res = self.one(case, client, counting)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    case.failed[client.name] = str(e)
                    self.failed = True
                    continue
                if res is None:
                    continue
                if counting:
                    perf = res["perf"]
                    per = {"total": perf.get("raw_syscalls:sys_enter", 0) / res["ops"]}
                    for fam, names in SYSCALL_FAMILIES.items():
                        per[fam] = sum(perf.get("syscalls:sys_enter_" + n, 0)
                                       for n in names) / res["ops"]
                    case.syscall_rounds.setdefault(client.name, []).append(per)
                    case.syscalls[client.name] = {
                        k: statistics.median(p[k] for p in case.syscall_rounds[client.name])
                        for k in per}
                else:
                    case.results[client.name].append(
                        (res["ops"] / res["secs"], res["cpu_us"] / res["ops"],
                         res["maxrss_kib"] / 1024))


# ---- the cases -------------------------------------------------------------

def build_cases(d, args, n):
    py = ["/usr/bin/python3", os.path.join(SRC, "benchmarks", "bench-python.py")]
    gjs = ["gjs", "-m", os.path.join(SRC, "benchmarks", "bench-gjs.js")]
    node = ["node", os.path.join(SRC, "benchmarks", "bench-amqplib.cjs")]
    cases = []
    groups = args.only

    def c_client(name, mode):
        return Client(name, [d.bench, "--run"], mode)

    def rmq(mode):
        return Client("rabbitmq-c", [d.rabbitmq_c], mode, peer=True)

    if "c" in groups:
        cases.append(Case("C", "publish 256 B, 100 in flight", "publish", n, 256, 100, [
            c_client("carehare-glib", "publish"), rmq("publish")]))
        cases.append(Case("C", "consume 256 B, prefetch 100", "consume", n, 256, 100, [
            c_client("carehare-glib next_delivery", "consume"),
            c_client("carehare-glib next_deliveries", "consume-batch"),
            c_client("carehare-glib ::delivery", "consume-signal"),
            rmq("consume")]))
    if "sweep" in groups:
        mib = 1024 * 1024
        # n messages of 4 KiB, n / 10 of 64 KiB, n / 100 of 1 MiB (20,000:
        # 78, 125 and 200 MiB a round).
        for size, label, count in ((4096, "4 KiB", n), (65536, "64 KiB", n // 10),
                                   (mib, "1 MiB", n // 100)):
            count = max(count, 10)
            for kind, mode in (("publish", "publish"), ("consume", "consume")):
                what = "100 in flight" if kind == "publish" else "prefetch 100"
                cases.append(Case("size sweep", "%s %s, %s (%s msgs)"
                                  % (kind, label, what, fmt_num(count, 0)), kind,
                                  count, size, 100, [
                                      c_client("carehare-glib", mode), rmq(mode)]))
    if "python" in groups:
        for kind in ("publish", "consume"):
            clients = [Client("carehare-glib (PyGObject)", py + ["gi"], kind)]
            if kind == "consume":
                clients.append(Client("carehare-glib (PyGObject) ::delivery", py + ["gi"],
                                      "consume-signal"))
            clients += [Client("carehare (Python)", py + ["carehare"], kind, deletes=False,
                               peer=True),
                        Client("aio-pika", py + ["aio-pika"], kind, peer=True)]
            what = "100 in flight" if kind == "publish" else "prefetch 100"
            cases.append(Case("Python", "%s 256 B, %s" % (kind, what), kind, n, 256, 100,
                              clients))
    if "gjs" in groups:
        node_ok = d.node_peer()
        for kind in ("publish", "consume"):
            clients = [Client("carehare-glib (GJS)", gjs, kind)]
            if kind == "consume":
                clients.append(Client("carehare-glib (GJS) ::delivery", gjs, "consume-signal"))
            amqplib = Client("amqplib (Node %s)" % d.node_version, node, kind, peer=True)
            if node_ok is not True:
                amqplib.skipped = node_ok
            clients.append(amqplib)
            what = "100 in flight" if kind == "publish" else "prefetch 100"
            cases.append(Case("GJS", "%s 256 B, %s" % (kind, what), kind, n, 256, 100,
                              clients))
    return cases


def node_peer(self):
    """Installs amqplib into BUILD/benchmarks/node-peer (once); True, or why not."""
    self.node_version = "?"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node or npm is not installed"
    self.node_version = subprocess.run(["node", "--version"], stdout=subprocess.PIPE,
                                       text=True).stdout.strip()
    prefix = os.path.join(self.build, "benchmarks", "node-peer")
    modules = os.path.join(prefix, "node_modules")
    if not os.path.exists(os.path.join(modules, "amqplib", "package.json")):
        if self.args.no_npm:
            return "not installed, and --no-npm"
        os.makedirs(prefix, exist_ok=True)
        proc = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                               "--loglevel=error", "amqplib"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            return "npm install amqplib failed: " + proc.stdout.strip()[-300:]
    self.env["NODE_PATH"] = modules
    return True


Driver.node_peer = node_peer


# ---- output -------------------------------------------------------------------

def fmt_num(x, digits):
    return "{:,.{}f}".format(x, digits)


def print_table(cases, rounds, syscall_rounds):
    print()
    print("| group | case | client | msg/s | CPU us/msg | syscalls/msg | write()/msg "
          "| vs peer: msg/s, CPU/msg |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for case in cases:
        med = {}
        for c in case.clients:
            rs = case.results[c.name]
            if rs:
                med[c.name] = (statistics.median(r[0] for r in rs),
                               statistics.median(r[1] for r in rs), max(r[2] for r in rs))
        peers = [c for c in case.clients if c.peer and c.name in med]
        for c in case.clients:
            sc = case.syscalls.get(c.name)
            sys_cells = (fmt_num(sc["total"], 2), fmt_num(sc["write"], 2)) if sc else ("", "")
            if c.skipped:
                row = ["skipped: " + c.skipped, "", "", "", "", ""]
            elif c.name in case.failed:
                row = ["failed (see below)", "", "", "", "", ""]
            elif c.name not in med:
                row = ["no result", "", "", "", "", ""]
            else:
                rate, cpu, _ = med[c.name]
                if c.peer:
                    ratio = "peer"
                else:
                    ratio = "; ".join("%.2fx, %.2fx %s" % (rate / med[p.name][0],
                                                          cpu / med[p.name][1], p.name)
                                      for p in peers)
                row = [fmt_num(rate, 0), fmt_num(cpu, 2), sys_cells[0], sys_cells[1], ratio]
            print("| %s | %s | %s | %s |" % (case.group, case.title, c.name, " | ".join(row)))
    print("\nMedians of %d rounds; syscalls: median of %d more round(s) per client under "
          "perf stat." % (rounds, syscall_rounds))


def print_syscalls(cases):
    rows = [(case, c) for case in cases for c in case.clients if c.name in case.syscalls]
    if not rows:
        return
    fams = list(SYSCALL_FAMILIES)
    print("\nSystem calls per message in the timed phase, by family "
          "(poll: poll/ppoll/epoll_*; send: sendto/sendmsg/writev; recv: recvfrom/recvmsg/readv;"
          " write and read: write(2)/read(2), which GLib clients use only for main-context"
          " wake-ups, eventfd):\n")
    print("| case | client | total | " + " | ".join(fams) + " |")
    print("|---|---|---:|" + "---:|" * len(fams))
    for case, c in rows:
        sc = case.syscalls[c.name]
        print("| %s %s | %s | %s | %s |" % (case.group, case.title, c.name,
                                            fmt_num(sc["total"], 3),
                                            " | ".join(fmt_num(sc[f], 3) for f in fams)))


def describe_machine(d):
    def cmd(argv):
        try:
            return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env=d.env).stdout.strip()
        except OSError:
            return "?"

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rev = cmd(["git", "-C", SRC, "describe", "--always", "--dirty"])
    print("bench-clients: carehare-glib %s (%s), %s, %d CPUs (%s), load %s"
          % (rev, d.build, time.strftime("%Y-%m-%d %H:%M %Z"), os.cpu_count(), model,
             " ".join("%.1f" % x for x in os.getloadavg())))
    print("  kernel %s, librabbitmq %s, Python %s, gjs %s"
          % (platform.release(), cmd(["pkg-config", "--modversion", "librabbitmq"]),
             platform.python_version(), cmd(["gjs", "--version"]).replace("gjs ", "")))


def describe_peers(d):
    try:
        import aio_pika
        aio = aio_pika.__version__
    except ImportError:
        aio = "not installed"
    py = os.environ.get("CAREHARE_PY_PATH")
    carehare_py = "not given (CAREHARE_PY_PATH)"
    if py:
        carehare_py = py
        try:
            with open(os.path.join(py, "CHANGELOG.md")) as f:
                for line in f:
                    if line.startswith("v") or line.startswith("## "):
                        carehare_py += " (CHANGELOG: %s)" % line.strip().lstrip("# ")
                        break
        except OSError:
            pass
    amqplib = "?"
    path = os.path.join(d.env.get("NODE_PATH", ""), "amqplib", "package.json")
    if os.path.exists(path):
        import json
        with open(path) as f:
            amqplib = json.load(f).get("version", "?")
    print("  peers: aio-pika %s, carehare (Python) %s, amqplib %s"
          % (aio, carehare_py, amqplib))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("uri", nargs="?", default=os.environ.get("CAREHARE_TEST_AMQP_URI"))
    parser.add_argument("--build", default=None,
                        help="the meson build directory (default: _build-bench, else _build)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=None,
                        help="messages per round (default 20000; --quick 2000)")
    parser.add_argument("--syscall-rounds", type=int, default=1,
                        help="rounds under perf stat per client, after the timed ones "
                             "(default 1; the counts are medians)")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the messages, for a look in about a minute")
    parser.add_argument("--no-npm", action="store_true",
                        help="do not install amqplib (the gjs group's peer) from the npm registry")
    parser.add_argument("--only", default="c,sweep,python,gjs",
                        help="groups to run, comma-separated: c, sweep, python, gjs")
    args = parser.parse_args()
    if args.uri is None:
        parser.error("no URI given and CAREHARE_TEST_AMQP_URI is not set")
    if args.rounds < 1 or args.syscall_rounds < 0:
        parser.error("--rounds must be at least 1, --syscall-rounds at least 0")
    args.only = set(args.only.split(","))
    if not args.only <= {"c", "sweep", "python", "gjs"}:
        parser.error("--only takes c, sweep, python, gjs")
    if args.build is None:
        for b in ("_build-bench", "_build"):
            if os.path.isdir(os.path.join(SRC, b)):
                args.build = os.path.join(SRC, b)
                break
        else:
            parser.error("no build directory: give --build")
    n = args.messages or (2000 if args.quick else 20000)

    d = Driver(args)
    for exe in (d.bench, d.rabbitmq_c):
        if not os.access(exe, os.X_OK):
            sys.exit("bench-clients: %s is missing (ninja -C %s benchmarks/bench "
                     "benchmarks/bench-rabbitmq-c; needs librabbitmq)" % (exe, d.build))
    started = time.monotonic()
    describe_machine(d)
    if not isinstance(d.perf_events, list):
        print("  syscalls: skipped: " + d.perf_events)
    cases = build_cases(d, args, n)
    describe_peers(d)
    for case in cases:
        print("  %s: %s, %d messages..." % (case.group, case.title, case.count),
              file=sys.stderr, flush=True)
        d.run_case(case)
    print_table(cases, args.rounds, args.syscall_rounds)
    print_syscalls(cases)
    for case in cases:
        for name, why in case.failed.items():
            print("\nFAILED %s %s, %s: %s" % (case.group, case.title, name, why))
    print("\n%d messages per round (sweep: see docs/benchmarks.md), %.0f s in all."
          % (n, time.monotonic() - started))
    shutil.rmtree(d.tmp, ignore_errors=True)
    return 1 if d.failed else 0


if __name__ == "__main__":
    sys.exit(main())
