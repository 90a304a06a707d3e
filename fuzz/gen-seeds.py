#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the small seed corpora under fuzz/corpus/ (committed).  The bytes
are the hand-written encodings also used by tests/test-wire.c."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def unhex(s):
    return bytes.fromhex("".join(s.split()))


def table(entries_hex):
    body = unhex(entries_hex)
    return len(body).to_bytes(4, "big") + body


def frame(ftype, channel, payload):
    return bytes([ftype]) + channel.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + payload + b"\xce"


ALL_TYPES = (
    "01 74 74 01  01 62 62 FE  01 42 42 FF  01 73 73 FFFE  01 75 75 FFFF"
    " 01 49 49 FFFFFFFE  01 69 69 FFFFFFFF  01 6C 6C FFFFFFFFFFFFFFFE"
    " 01 66 66 3FC00000  01 64 64 3FF8000000000000  01 44 44 02 FFFFFB2E"
    " 01 53 53 00000002 6869  01 78 78 00000003 000102"
    " 01 41 41 0000000B 49 00000001 53 00000001 61"
    " 01 54 54 0000000065000000  01 46 46 00000003 01 6E 56  01 56 56"
)

server_props = table(
    "07 70726F64756374 53 00000008 5261626269744D51"
    "0C 6361706162696C6974696573 46 00000015 12 7075626C69736865725F636F6E6669726D73 74 01")

SEEDS = {
    "fuzz-table": {
        "empty": table(""),
        "all-types": table(ALL_TYPES),
        "nested": table("01 61 41 " + table("46" + table(ALL_TYPES).hex() + " 41 00000000").hex()),
        "not-utf8": table("01 6B 53 00000002 FFFE  01 6B 53 00000003 610062"),
        "server-properties": server_props,
    },
    "fuzz-uri": {
        "plain": b"amqp://guest:guest@localhost:5672/%2f",
        "default": b"amqp://",
        "tls": b"amqps://user:p%40ss@broker.example:5671/myvhost?heartbeat=10&cacertfile=/tmp/ca.pem"
               b"&certfile=/tmp/c.pem&keyfile=/tmp/k.pem&server_name_indication=broker&verify=verify_peer",
        "ipv6": b"amqp://[::1]:5673/v?frame_max=131072&channel_max=10&connection_timeout=5000",
    },
    "fuzz-frame": {
        "heartbeat": frame(8, 0, b""),
        "connection-start": frame(1, 0, unhex("000A 000A 00 09") + server_props
                                  + unhex("0000000E 414D51504C41494E20504C41494E 00000005 656E5F5553")),
        "connection-tune": frame(1, 0, unhex("000A 001E 07FF 00020000 003C")),
        "channel-close": frame(1, 1, unhex("0014 0028 0194 09 4E4F545F464F554E44 0028 000A")),
        "delivery": frame(1, 1, unhex("003C 003C 04 63746167 0000000000000007 01 02 6578 02 726B"))
                    + frame(2, 1, unhex("003C 0000 0000000000000005 FFFC 0A 746578742F706C61696E 01 61")
                            + table(ALL_TYPES) + unhex("02 09 01 62 01 63 01 64 01 65 0000000065000000"
                                                       " 01 66 01 67 01 68 01 69"))
                    + frame(3, 1, b"hello") + frame(8, 0, b""),
        "queue-declare-ok": frame(1, 2, unhex("0032 000B 0B 616D712E67656E2D58595A 00000003 00000001")),
    },
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
