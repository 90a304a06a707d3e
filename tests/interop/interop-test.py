# SPDX-License-Identifier: LGPL-2.1-or-later
"""Interoperability of carehare-glib with python3-pika and rabbitmq-c.

Three peers (carehare-peer, pika-peer.py, rabbitmq-c-peer) each publish one
message with every basic property (but cluster-id, which RabbitMQ drops) and
headers of every field type the client can send, and each reads what every
peer published. A second part dead-letters each peer's message (reject with
requeue=false) and has all three read the same dead-lettered message, whose
headers RabbitMQ rewrote and extended with x-death.

Canonical form (what `PEER describe` and `PEER dump` print, one JSON object):
  {"exchange", "routing_key", "redelivered" (dump only),
   "properties": {name: value} with only the present properties, named
       content_type content_encoding headers delivery_mode priority
       correlation_id reply_to expiration message_id timestamp type user_id
       app_id cluster_id; strings that are not UTF-8 as {"hex": ...},
   "body": hex}
  A header value is {"t": TAG, "v": VALUE} (or "hex" for bytes). For the exact
  readers TAG is the AMQP type letter (RabbitMQ's table: t b B s u I i l f d D
  S x A T F V); D's value is [scale, unscaled]; F's value is a list of
  [key, value] pairs in wire order (order and duplicates are kept); a long
  string that is not UTF-8 is {"t": "S", "hex": ...}.

What each reader can see, and so how it is compared (`project` below maps the
publisher's exact description onto the reader's view; the comparison is then
plain equality, in wire order, after `normalize`):
  rabbitmq-c  every AMQP type exactly (it reports field kinds): the reference.
  carehare    exactly too (docs/field-tables.md gives every type its own
              GVariant type), except that a long string S which is not valid
              UTF-8 or contains NUL is read as bytes `ay`, i.e. tag x (by
              design).
  pika        Python values, tagged bool int Decimal str bytes list dict
              datetime None. Every integer type and float/double become
              "int", so widths are invisible; python3-pika 1.2.0 also decodes
              b as unsigned, B as signed, l as unsigned 64-bit and truncates
              f and d to int (pika/data.py): the projection reproduces those
              decodings, so values are still compared exactly. S is "str"
              when it decodes as UTF-8 else "bytes" (like x); duplicate keys
              collapse (last value, first position).
Floats compare by their exact bits (float.hex). In the dead-letter checks
"redelivered" is not compared (the message is read three times).

Usage: interop-test.py --carehare-peer EXE --rabbitmq-c-peer EXE
                       --pika-peer SCRIPT
Needs the private broker's environment (eval "$(test-server/broker env)").
Prints TAP. Any missing piece fails; nothing is skipped.
"""

import argparse
import difflib
import json
import os
import subprocess
import sys
import time

ALL_TYPES = set("tbBsuIilfdDSxATFV")
# pika 1.2's encoder: bool, int (I or l), Decimal, str, bytes, list, dict,
# datetime, None. It cannot send floats nor the small integer widths.
PIKA_TYPES = set("tIlDSxATFV")
PEER_TIMEOUT_S = 40


class Failure(Exception):
    pass


# ---- peers -------------------------------------------------------------------

class Peer:
    def __init__(self, name, argv, view, sends):
        self.name = name
        self.argv = argv
        self.view = view      # how it reads: "exact", "carehare" or "pika"
        self.sends = sends    # the AMQP types its message must contain

    def run(self, *args):
        cmd = self.argv + list(args)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=PEER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Failure("%s: %s" % (" ".join(cmd), e))
        if proc.returncode != 0:
            raise Failure("%s exited with %d:\n%s%s" % (
                " ".join(cmd), proc.returncode,
                proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")))
        try:
            return json.loads(proc.stdout) if args[0] in ("describe", "dump") else None
        except ValueError as e:
            raise Failure("%s printed no JSON (%s):\n%s" % (" ".join(cmd), e, proc.stdout))


# ---- normalizing and projecting descriptions ---------------------------------

def string_bytes(value):
    return value["v"].encode("utf-8") if "v" in value else bytes.fromhex(value["hex"])


def normalize(value):
    """Puts equal values in one form: S as text when it decodes as UTF-8,
    floats as exact hex, recursively."""
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if not isinstance(value, dict):
        return value
    t = value.get("t")
    if t == "S":
        data = string_bytes(value)
        try:
            return {"t": "S", "v": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"t": "S", "hex": data.hex()}
    if t in ("f", "d", "float") and not isinstance(value["v"], str):
        return {"t": t, "v": float(value["v"]).hex()}
    if set(value) == {"hex"}:  # a property string that is not UTF-8
        try:
            return bytes.fromhex(value["hex"]).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return {k: normalize(v) for k, v in value.items()}


def project(value, view):
    """The exact (AMQP-typed) description @value as a @view reader sees it."""
    if view == "exact":
        return value
    t = value["t"]
    if view == "carehare":
        if t == "S":
            data = string_bytes(value)
            try:
                data.decode("utf-8")
                if b"\0" not in data:
                    return value
            except UnicodeDecodeError:
                pass
            return {"t": "x", "hex": data.hex()}
        if t == "A":
            return {"t": "A", "v": [project(v, view) for v in value["v"]]}
        if t == "F":
            return {"t": "F", "v": [[k, project(v, view)] for k, v in value["v"]]}
        return value
    assert view == "pika"
    v = value.get("v")
    if t == "t":
        return {"t": "bool", "v": v}
    if t == "b":  # pika 1.2 unpacks 'b' with '>B'
        return {"t": "int", "v": v & 0xFF}
    if t == "B":  # ... and 'B' with '>b'
        return {"t": "int", "v": v - 256 if v > 127 else v}
    if t in ("s", "u", "I", "i"):
        return {"t": "int", "v": v}
    if t == "l":  # ... and 'l' with '>Q'
        return {"t": "int", "v": v % 2 ** 64}
    if t == "L":  # ... and 'L' with '>q'
        return {"t": "int", "v": v - 2 ** 64 if v >= 2 ** 63 else v}
    if t in ("f", "d"):  # ... and floats through long()
        return {"t": "int", "v": int(float(v))}
    if t == "D":
        return {"t": "Decimal", "v": v}
    if t in ("S", "x"):
        data = string_bytes(value) if t == "S" else bytes.fromhex(value["hex"])
        if t == "S":
            try:
                return {"t": "str", "v": data.decode("utf-8")}
            except UnicodeDecodeError:
                pass
        return {"t": "bytes", "hex": data.hex()}
    if t == "A":
        return {"t": "list", "v": [project(x, view) for x in v]}
    if t == "T":
        return {"t": "datetime", "v": v}
    if t == "F":
        entries = {}
        for k, x in v:
            entries[k] = project(x, view)  # a dict: first position, last value
        return {"t": "dict", "v": [[k, x] for k, x in entries.items()]}
    if t == "V":
        return {"t": "None"}
    raise Failure("no pika view of type %r" % t)


def project_message(message, view):
    out = dict(message)
    props = dict(message["properties"])
    if "headers" in props:
        props["headers"] = project(props["headers"], view)
    out["properties"] = props
    return out


def types_in(value, found):
    if isinstance(value, dict):
        if "t" in value:
            found.add(value["t"])
        for v in value.values():
            types_in(v, found)
    elif isinstance(value, list):
        for v in value:
            types_in(v, found)
    return found


def compare(expected, got, what):
    expected = normalize(expected)
    got = normalize(got)
    if expected == got:
        return
    a = json.dumps(expected, indent=1, ensure_ascii=False, sort_keys=True).splitlines()
    b = json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True).splitlines()
    diff = "\n".join(difflib.unified_diff(a, b, "expected", what, lineterm="", n=2))
    raise Failure("%s differs from what was expected:\n%s" % (what, diff))


def table_get(table, key):
    for k, v in table["v"]:
        if k == key:
            return v
    raise Failure("no %r in %s" % (key, json.dumps(table)))


def sorted_table(table):
    return {"t": "F", "v": sorted(table["v"], key=lambda e: e[0].encode("utf-8"))}


# ---- broker ------------------------------------------------------------------

class Broker:
    """Declares and deletes queues and rejects messages, through pika."""

    def __init__(self):
        import pika
        port = os.environ.get("CAREHARE_TEST_BROKER_PORT")
        if not port:
            raise Failure("CAREHARE_TEST_BROKER_PORT is not set: start the private broker "
                          "and eval \"$(test-server/broker env)\", or use ./run-tests")
        self.connection = pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=int(port), virtual_host="/", heartbeat=0,
            credentials=pika.PlainCredentials("guest", "guest")))
        self.channel = self.connection.channel()
        self.queues = []
        self.counter = 0

    def queue(self, role, arguments=None):
        self.counter += 1
        name = "carehare-interop-%d-%d-%s" % (os.getpid(), self.counter, role)
        args = {"x-expires": 600000}  # gone soon even if this process dies
        args.update(arguments or {})
        self.channel.queue_declare(name, arguments=args)
        self.queues.append(name)
        return name

    def reject(self, queue):
        deadline = time.monotonic() + 10
        while True:
            method, _, _ = self.channel.basic_get(queue, auto_ack=False)
            if method is not None:
                break
            if time.monotonic() > deadline:
                raise Failure("nothing to reject in %s" % queue)
            time.sleep(0.05)
        self.channel.basic_reject(method.delivery_tag, requeue=False)

    def close(self):
        for name in self.queues:
            self.channel.queue_delete(name)
        self.connection.close()


# ---- tests -------------------------------------------------------------------

class Tap:
    def __init__(self, count):
        self.number = 0
        self.failed = 0
        print("1..%d" % count, flush=True)

    def run(self, name, fn):
        self.number += 1
        try:
            fn()
        except Exception as e:  # Failure, or a broken peer or broker
            self.failed += 1
            print("not ok %d - %s" % (self.number, name))
            text = str(e) if isinstance(e, Failure) else "%s: %s" % (type(e).__name__, e)
            for line in text.splitlines():
                print("# " + line)
        else:
            print("ok %d - %s" % (self.number, name))
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--carehare-peer", required=True)
    parser.add_argument("--rabbitmq-c-peer", required=True)
    parser.add_argument("--pika-peer", required=True)
    opts = parser.parse_args()

    peers = [
        Peer("carehare", [opts.carehare_peer], "carehare", ALL_TYPES),
        Peer("pika", [sys.executable, opts.pika_peer], "pika", PIKA_TYPES),
        Peer("rabbitmq-c", [opts.rabbitmq_c_peer], "exact", ALL_TYPES),
    ]
    by_name = {p.name: p for p in peers}
    reference = by_name["rabbitmq-c"]
    tap = Tap(len(peers) + len(peers) ** 2 + 3 * len(peers))
    described = {}
    try:
        broker = Broker()
    except Exception as e:
        print("Bail out! cannot reach the broker with pika: %s" % e)
        return 1

    # What each peer publishes, with the exact AMQP types it intends.
    for peer in peers:
        def describe(peer=peer):
            message = peer.run("describe")
            described[peer.name] = message
            missing = peer.sends - types_in(message["properties"].get("headers", {}), set())
            if missing:
                raise Failure("the message lacks the types %s" % " ".join(sorted(missing)))
            props = set(message["properties"])
            wanted = {"content_type", "content_encoding", "headers", "delivery_mode",
                      "priority", "correlation_id", "reply_to", "expiration", "message_id",
                      "timestamp", "type", "user_id", "app_id"}
            if props != wanted:
                raise Failure("properties %s instead of %s" % (sorted(props), sorted(wanted)))
        tap.run("%s describes a message with every property and type it can send" % peer.name,
                describe)

    # Every publisher to every reader.
    for publisher in peers:
        for reader in peers:
            def pair(publisher=publisher, reader=reader):
                if publisher.name not in described:
                    raise Failure("no description of %s's message" % publisher.name)
                queue = broker.queue("%s-to-%s" % (publisher.name, reader.name))
                publisher.run("publish", queue)
                got = reader.run("dump", queue)
                expected = dict(described[publisher.name], exchange="", routing_key=queue,
                                redelivered=False)
                compare(project_message(expected, reader.view), got,
                        "%s's dump" % reader.name)
            tap.run("%s -> %s" % (publisher.name, reader.name), pair)

    # Dead-lettering: RabbitMQ re-encodes the headers and adds x-death. The
    # three readers read the same dead-lettered message in turn (the first
    # two put it back), so even x-death's time must agree.
    for publisher in peers:
        dumps = {}

        def dead_letter(publisher=publisher):
            if publisher.name not in described:
                raise Failure("no description of %s's message" % publisher.name)
            target = broker.queue("%s-dead" % publisher.name)
            source = broker.queue("%s-dl-source" % publisher.name, {
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": target})
            publisher.run("publish", source)
            before = int(time.time())
            broker.reject(source)
            after = int(time.time())
            for reader in (reference, by_name["pika"], by_name["carehare"]):
                dumps[reader.name] = reader.run(
                    "dump", target, *(["requeue"] if reader is not by_name["carehare"] else []))

            got = normalize(dumps[reference.name])
            sent = described[publisher.name]["properties"]
            props = {k: v for k, v in sent.items() if k not in ("headers", "expiration")}
            entries = [e for e in sent["headers"]["v"]]
            death = table_get(table_get(got["properties"]["headers"], "x-death")["v"][0], "time")
            if death.get("t") != "T" or not before - 60 <= death.get("v", 0) <= after + 60:
                raise Failure("x-death time %r is not a timestamp (T) of now (%d)" % (death, before))
            entries.append(["x-death", {"t": "A", "v": [sorted_table({"t": "F", "v": [
                ["count", {"t": "l", "v": 1}],
                ["reason", {"t": "S", "v": "rejected"}],
                ["queue", {"t": "S", "v": source}],
                ["time", death],
                ["exchange", {"t": "S", "v": ""}],
                ["routing-keys", {"t": "A", "v": [{"t": "S", "v": source}]}],
                ["original-expiration", {"t": "S", "v": sent["expiration"]}],
            ]})]}])
            for k, v in (("exchange", ""), ("queue", source), ("reason", "rejected")):
                entries.append(["x-first-death-" + k, {"t": "S", "v": v}])
                # RabbitMQ 3.13 and later also say x-last-death-*.
                if any(e[0] == "x-last-death-" + k for e in got["properties"]["headers"]["v"]):
                    entries.append(["x-last-death-" + k, {"t": "S", "v": v}])
            props["headers"] = sorted_table({"t": "F", "v": entries})
            expected = {"exchange": "", "routing_key": target, "properties": props,
                        "body": described[publisher.name]["body"]}
            # Header order after dead-lettering is RabbitMQ's business.
            got = dict(got, properties=dict(got["properties"]))
            got.pop("redelivered", None)
            headers = sorted_table(got["properties"]["headers"])
            headers["v"] = [[k, {"t": "A", "v": [sorted_table(x) if x.get("t") == "F" else x
                                                 for x in v["v"]]}]
                            if k == "x-death" and v.get("t") == "A" else [k, v]
                            for k, v in headers["v"]]
            got["properties"]["headers"] = headers
            compare(expected, got, "rabbitmq-c's dump of the dead-lettered message")

        def read_like_reference(reader):
            if reference.name not in dumps or reader.name not in dumps:
                raise Failure("the dead-lettered message was not read by all (see above)")
            expected = dict(dumps[reference.name])
            got = dict(dumps[reader.name])
            expected.pop("redelivered")
            got.pop("redelivered", None)
            compare(project_message(expected, reader.view), got, "%s's dump" % reader.name)

        tap.run("dead-lettered %s message: rabbitmq-c reads the headers with x-death"
                % publisher.name, dead_letter)
        for reader in (by_name["carehare"], by_name["pika"]):
            tap.run("dead-lettered %s message: %s reads it as rabbitmq-c does"
                    % (publisher.name, reader.name),
                    lambda reader=reader: read_like_reference(reader))

    try:
        broker.close()
    except Exception as e:
        print("# cannot delete the test queues: %s" % e)
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
