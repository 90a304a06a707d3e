# SPDX-License-Identifier: LGPL-2.1-or-later
"""pika-peer: Debian's python3-pika as an interop peer.

  pika-peer.py describe              print the message `publish` sends, with
                                     the AMQP type pika's encoder picks for
                                     every value
  pika-peer.py publish QUEUE         publish it (with confirms) to QUEUE
  pika-peer.py dump QUEUE [requeue]  basic.get one message from QUEUE (waiting
                                     for one), print it as pika decoded it,
                                     then ack it (or reject it back)

`dump` prints pika's view: pika decodes tables into Python values, so the
type tags are Python types ("int", "str", "Decimal"...), not AMQP letters;
interop-test.py projects exact descriptions onto that view. Connects to
127.0.0.1:$CAREHARE_TEST_BROKER_PORT as guest, vhost "/". Any failure
exits non-zero.
"""

import calendar
import datetime
import decimal
import json
import os
import sys
import time

import pika
import pika.compat

TIMEOUT_S = 20
BODY = b"pika\x00\x7f\x80\xff"


def message():
    headers = {
        "bool": True,
        "bool-false": False,
        "int": -2000000000,                # fits in 32 bits: pika sends I
        "int-big": 9000000000000,          # pika sends l
        "int64-min": -(2 ** 63),           # l
        "long-small": pika.compat.long(5),  # pika sends its `long` as l
        "decimal": decimal.Decimal("-1.25"),
        "decimal-trailing-zeros": decimal.Decimal("7.00"),  # normalized: (0, 7)
        "string": "h\u00e9llo \u2603",
        "string-empty": "",
        "bytes": b"\x00\xff\x01",
        "array": [1, "two", [True], {"k": None}],
        "array-empty": [],
        "timestamp": datetime.datetime(2023, 11, 14, 22, 13, 24),  # 1700000004
        "table": {"nested": {"deeper": "yes"}},
        "table-empty": {},
        "void": None,
    }
    properties = pika.BasicProperties(
        content_type="application/x-pika",
        content_encoding="gzip",
        headers=headers,
        delivery_mode=2,
        priority=9,
        correlation_id="pika-corr",
        reply_to="pika-reply",
        expiration="1200000",
        message_id="pika-msg-1",
        timestamp=1700000005,
        type="pika-type",
        user_id="guest",
        app_id="pika-peer",
    )
    return properties, BODY


PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode",
                  "priority", "correlation_id", "reply_to", "expiration",
                  "message_id", "timestamp", "type", "user_id", "app_id",
                  "cluster_id")


def describe_properties(properties, table_fn):
    out = {}
    for name in PROPERTY_NAMES:
        value = getattr(properties, name)
        if value is None:
            continue
        if name == "headers":
            out[name] = table_fn(value)
        elif isinstance(value, bytes):
            out[name] = {"hex": value.hex()}
        else:
            out[name] = value
    return out


# ---- describe: the AMQP types pika 1.2's encoder writes (pika/data.py) -------

def exact(value):
    if isinstance(value, str):
        return {"t": "S", "v": value}
    if isinstance(value, bytes):
        return {"t": "x", "hex": value.hex()}
    if isinstance(value, bool):
        return {"t": "t", "v": value}
    if isinstance(value, pika.compat.long):
        return {"t": "l", "v": int(value)}
    if isinstance(value, int):
        return {"t": "I" if -2 ** 31 <= value < 2 ** 31 else "l", "v": value}
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.normalize().as_tuple()
        scale = max(0, -exponent)
        return {"t": "D", "v": [scale, int(value.scaleb(scale))]}
    if isinstance(value, datetime.datetime):
        return {"t": "T", "v": calendar.timegm(value.utctimetuple())}
    if isinstance(value, dict):
        return exact_table(value)
    if isinstance(value, list):
        return {"t": "A", "v": [exact(v) for v in value]}
    if value is None:
        return {"t": "V"}
    raise TypeError("pika cannot send %r" % (value,))


def exact_table(table):
    return {"t": "F", "v": [[k, exact(v)] for k, v in table.items()]}


# ---- dump: what pika decoded, tagged with Python types ----------------------

def seen(value):
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": int(value)}
    if isinstance(value, float):  # pika 1.2 never produces one (see interop-test.py)
        return {"t": "float", "v": value}
    if isinstance(value, decimal.Decimal):
        sign, digits, exponent = value.as_tuple()
        scale = -exponent
        return {"t": "Decimal", "v": [scale, int(value.scaleb(scale))]}
    if isinstance(value, str):
        return {"t": "str", "v": value}
    if isinstance(value, bytes):
        return {"t": "bytes", "hex": value.hex()}
    if isinstance(value, list):
        return {"t": "list", "v": [seen(v) for v in value]}
    if isinstance(value, datetime.datetime):
        return {"t": "datetime", "v": calendar.timegm(value.utctimetuple())}
    if isinstance(value, dict):
        return seen_table(value)
    if value is None:
        return {"t": "None"}
    return {"t": "?", "python": type(value).__name__, "repr": repr(value)}


def seen_table(table):
    return {"t": "dict", "v": [[k, seen(v)] for k, v in table.items()]}


def connect():
    port = os.environ.get("CAREHARE_TEST_BROKER_PORT")
    if not port:
        sys.exit("pika-peer: CAREHARE_TEST_BROKER_PORT is not set: "
                 "run eval \"$(test-server/broker env)\"")
    params = pika.ConnectionParameters(
        host="127.0.0.1", port=int(port), virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        socket_timeout=TIMEOUT_S, blocked_connection_timeout=TIMEOUT_S)
    return pika.BlockingConnection(params)


def publish(queue):
    properties, body = message()
    connection = connect()
    channel = connection.channel()
    channel.confirm_delivery()
    # Raises on nack or (mandatory) return.
    channel.basic_publish("", queue, body, properties, mandatory=True)
    connection.close()


def dump(queue, requeue):
    connection = connect()
    channel = connection.channel()
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is not None:
            break
        if time.monotonic() > deadline:
            sys.exit("pika-peer: no message in the queue")
        time.sleep(0.05)
    out = {
        "exchange": method.exchange,
        "routing_key": method.routing_key,
        "redelivered": bool(method.redelivered),
        "properties": describe_properties(properties, seen_table),
        "body": body.hex(),
    }
    print(json.dumps(out), flush=True)
    if requeue:
        channel.basic_reject(method.delivery_tag, requeue=True)
    else:
        channel.basic_ack(method.delivery_tag)
    connection.close()


def main(argv):
    if len(argv) == 2 and argv[1] == "describe":
        properties, body = message()
        print(json.dumps({"properties": describe_properties(properties, exact_table),
                          "body": body.hex()}))
    elif len(argv) == 3 and argv[1] == "publish":
        publish(argv[2])
    elif len(argv) in (3, 4) and argv[1] == "dump" and argv[3:] in ([], ["requeue"]):
        dump(argv[2], len(argv) == 4)
    else:
        sys.exit("usage: pika-peer.py describe | publish QUEUE | dump QUEUE [requeue]")


if __name__ == "__main__":
    main(sys.argv)
