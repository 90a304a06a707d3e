#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the small seed corpora under fuzz/corpus/ (committed).  The bytes
are the hand-written encodings also used by tests/test-wire.c, and for
fuzz-connection scripts of a fake broker's and the program's actions."""

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


# fuzz-connection: a script of actions (see the enums in fuzz-connection.c).
(ITERATE, RAW, REPLY, METHOD, DELIVER, SERVER_CLOSE, CALL, CANCEL, DROP, HOLD) = range(10)
(SM_CHANNEL_OPEN_OK, SM_CHANNEL_CLOSE, SM_CHANNEL_CLOSE_OK, SM_CHANNEL_FLOW, SM_CONNECTION_CLOSE,
 SM_CONNECTION_CLOSE_OK, SM_CONNECTION_BLOCKED, SM_CONNECTION_UNBLOCKED, SM_QUEUE_DECLARE_OK,
 SM_QUEUE_DELETE_OK, SM_QUEUE_PURGE_OK, SM_QUEUE_BIND_OK, SM_EXCHANGE_DECLARE_OK, SM_BASIC_QOS_OK,
 SM_BASIC_CONSUME_OK, SM_BASIC_CANCEL, SM_BASIC_CANCEL_OK, SM_CONFIRM_SELECT_OK, SM_BASIC_ACK,
 SM_BASIC_NACK, SM_BASIC_RETURN, SM_BASIC_DELIVER, SM_HEADER, SM_BODY, SM_HEARTBEAT) = range(25)
(C_QUEUE_DECLARE, C_QUEUE_DELETE, C_QUEUE_PURGE, C_QUEUE_BIND, C_EXCHANGE_DECLARE, C_PUBLISH,
 C_CONSUME, C_NEXT_DELIVERY, C_NEXT_DELIVERIES, C_CONSUMER_CLOSE, C_CLOSE, C_ACK, C_NACK,
 C_ACK_TAG) = range(14)
# an operation's flags: what its callback does
CB_CANCELLABLE, CB_DROP_CONNECTION, CB_DROP_CONSUMERS, CB_CLOSE = 1, 2, 4, 8
CB_CHAIN, CB_ACK, CB_NACK, CB_REQUEUE = 16, 32, 64, 128
# byte 0: frame_max offered (0: 4096, 1: 131072, 2: none, 3: 4 GiB), channel_max << 2
# (0: none, 1: 1, 2: 3, 3: 2047), 16: heartbeat 60 s, 32: max_body_size=1000
# byte 1: what the broker holds
HOLD_CHANNEL_OPEN, HOLD_RPC, HOLD_QOS, HOLD_CONSUME = 1, 2, 4, 8
HOLD_CONFIRM_SELECT, HOLD_PUBLISH, HOLD_CHANNEL_CLOSE, HOLD_CANCEL_AND_CLOSE = 16, 32, 64, 128
# byte 2
NO_WAIT, CONNECT_CANCELLABLE, DROP_IN_CONNECT_CB, CLOSE_AT_END = 1, 2, 4, 8
RESET_AT_END, SILENT_AT_END = 16, 32


def script(config, hold, flags, *actions):
    return bytes([config, hold, flags]) + b"".join(bytes(a) for a in actions)


def call(c, flags=0, arg=0):
    return [CALL, c, flags, arg]


def method(kind, channel_selector, arg=0):
    return [METHOD, kind, channel_selector, arg]


def run(n=8):
    return [ITERATE, n - 1] * 2


SEEDS["fuzz-connection"] = {
    # tests/test-hostile.c's cases, and the ways a connection ends
    "declare-then-reset": script(1, HOLD_RPC, 0, call(C_QUEUE_DECLARE), run(), [SERVER_CLOSE, 1]),
    "delivery-beyond-prefetch": script(
        1, 0, CLOSE_AT_END, call(C_CONSUME, 0, 1), run(),
        [DELIVER, 0, 1], [DELIVER, 0, 1], [DELIVER, 0, 1], run(),
        call(C_NEXT_DELIVERY), call(C_NEXT_DELIVERY, CB_ACK), run()),
    "server-close-while-declare-callback-drops": script(
        1, HOLD_RPC, 0, call(C_QUEUE_DECLARE, CB_DROP_CONNECTION), run(),
        method(SM_CONNECTION_CLOSE, 0, 0), run()),
    "frame-max-huge": script(
        3, 0, CLOSE_AT_END, call(C_PUBLISH, 0, 2), call(C_CONSUME, 0, 3), run(),
        [DELIVER, 0, 2], call(C_NEXT_DELIVERY, CB_ACK), run()),
    "frame-max-small-big-bodies": script(
        0, 0, CLOSE_AT_END, call(C_PUBLISH, 0, 2), call(C_CONSUME, 0, 3), run(),
        [DELIVER, 0, 2], [DELIVER, 0, 3], call(C_NEXT_DELIVERIES, CB_NACK | CB_REQUEUE), run()),
    "body-too-large": script(
        0x21, 0, CLOSE_AT_END, call(C_CONSUME, 0, 2), run(), [DELIVER, 0, 3], [DELIVER, 0, 1],
        call(C_NEXT_DELIVERY, CB_CHAIN), run()),
    "unroutable-return": script(
        1, HOLD_PUBLISH, 0, call(C_PUBLISH, 0, 1), run(), method(SM_BASIC_RETURN, 0, 1),
        [REPLY, 0], run()),
    "publish-nacked-and-unknown-ack": script(
        1, HOLD_PUBLISH, RESET_AT_END, call(C_PUBLISH), call(C_PUBLISH), run(), [REPLY, 1],
        method(SM_BASIC_ACK, 0, 0x3F), run()),
    "consumer-cancelled-by-server": script(
        1, 0, 0, call(C_CONSUME, CB_CHAIN, 1), run(), call(C_NEXT_DELIVERY),
        method(SM_BASIC_CANCEL, 0), run(), [DROP, 3], run()),
    "channel-close-on-consumer": script(
        1, 0, 0, call(C_CONSUME, 0, 1), run(), [DELIVER, 0, 1], run(), call(C_NEXT_DELIVERY),
        run(), method(SM_CHANNEL_CLOSE, 0, 1), call(C_ACK), run()),
    "cancel-pending-declare": script(
        1, HOLD_RPC | HOLD_CHANNEL_CLOSE, 0, call(C_QUEUE_DECLARE, CB_CANCELLABLE), run(),
        [CANCEL, 0], run(), [REPLY, 0], [REPLY, 0], call(C_QUEUE_DECLARE), run(), [REPLY, 0], run()),
    "close-held-callback-drops": script(
        1, HOLD_CANCEL_AND_CLOSE, SILENT_AT_END | RESET_AT_END,
        call(C_QUEUE_DECLARE), run(), call(C_CLOSE, CB_DROP_CONNECTION), [DROP, 0], run()),
    "consumer-close-in-callback": script(
        1, HOLD_CHANNEL_CLOSE, CLOSE_AT_END, call(C_CONSUME, CB_DROP_CONSUMERS | CB_CLOSE, 1),
        run(), [DELIVER, 0, 0], call(C_CONSUMER_CLOSE), run(), [REPLY, 0], run()),
    "garbage-during-handshake": script(
        1, 0, NO_WAIT | CONNECT_CANCELLABLE, [ITERATE, 1], [RAW, 8], b"\x01\x00\x00\xff\xff\xff\xff\xce",
        run()),
    "cancel-connect": script(1, 0, NO_WAIT | CONNECT_CANCELLABLE, [CANCEL, 0], run()),
    "connection-blocked-publish": script(
        1, 0, CLOSE_AT_END, method(SM_CONNECTION_BLOCKED, 0), call(C_PUBLISH, CB_DROP_CONNECTION),
        run(), method(SM_CONNECTION_UNBLOCKED, 0), run()),
    "one-channel": script(
        4, HOLD_RPC, 0, call(C_QUEUE_DECLARE), call(C_PUBLISH), call(C_CONSUME), run(),
        [REPLY, 0], run(), [DROP, 3], run()),
}

for target, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
