#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A broker that logs in, opens channels and then answers nothing else: the
slow or stuck broker a command-line tool must still be able to stop.

    silent-broker.py PORT_FILE

Listens on 127.0.0.1 on a free port, writes the port to PORT_FILE, then
prints "method CLASS METHOD" for every method it reads (flushed), and
answers only the handshake, Channel.Open and Connection.Close. Heartbeats
are off. Runs until killed."""
import socket
import struct
import sys
import threading


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def long_string(data):
    return struct.pack(">I", len(data)) + data


def short_string(data):
    return struct.pack(">B", len(data)) + data


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def serve(sock):
    try:
        read_exactly(sock, 8)  # the protocol header
        capabilities = b"".join(short_string(name) + b"t\x01" for name in (
            b"publisher_confirms", b"consumer_cancel_notify", b"basic.nack",
            b"connection.blocked", b"direct_reply_to"))
        properties = short_string(b"capabilities") + b"F" + long_string(capabilities)
        sock.sendall(method(0, 10, 10, b"\x00\x09" + long_string(properties)
                            + long_string(b"PLAIN") + long_string(b"en_US")))
        while True:
            kind, channel, size = struct.unpack(">BHI", read_exactly(sock, 7))
            payload = read_exactly(sock, size)
            read_exactly(sock, 1)
            if kind != 1:
                continue
            class_id, method_id = struct.unpack(">HH", payload[:4])
            print(f"method {class_id} {method_id}", flush=True)
            if (class_id, method_id) == (10, 11):    # Start-Ok -> Tune
                sock.sendall(method(0, 10, 30, struct.pack(">HIH", 2047, 131072, 0)))
            elif (class_id, method_id) == (10, 40):  # Open -> Open-Ok
                sock.sendall(method(0, 10, 41, short_string(b"")))
            elif (class_id, method_id) == (20, 10):  # Channel.Open -> Open-Ok
                sock.sendall(method(channel, 20, 11, long_string(b"")))
            elif (class_id, method_id) == (10, 50):  # Close -> Close-Ok
                sock.sendall(method(0, 10, 51))
    except (EOFError, OSError):
        pass
    sock.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    with open(sys.argv[1], "w") as port_file:
        port_file.write(f"{listener.getsockname()[1]}\n")
    while True:
        sock, _address = listener.accept()
        threading.Thread(target=serve, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
