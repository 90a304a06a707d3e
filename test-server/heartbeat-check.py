#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# heartbeat-check.py [SECONDS]: shows that a client asking for heartbeat=1
# gets a 1 s heartbeat from the test broker (which proposes the default 60 s;
# the lower value wins) and that an idle connection then stays up.
# Also checks EXTERNAL login with the client certificate (CN=guest).
# Needs the broker running: eval "$(test-server/broker env)".
import os
import ssl
import sys

import pika


def main():
    idle = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    uri = os.environ["CAREHARE_TEST_AMQP_URI"]

    params = pika.URLParameters(uri + "?heartbeat=1")
    conn = pika.BlockingConnection(params)
    negotiated = conn._impl.params.heartbeat
    print(f"heartbeat: negotiated {negotiated} s")
    if negotiated != 1:
        print("FAIL: expected a 1 s heartbeat")
        return 1
    # sleep() keeps servicing I/O, so heartbeats flow while we are idle.
    conn.sleep(idle)
    if not conn.is_open:
        print(f"FAIL: connection closed while idle for {idle} s")
        return 1
    ch = conn.channel()
    ch.queue_declare(queue="", exclusive=True)
    conn.close()
    print(f"heartbeat: connection stayed open while idle for {idle} s: ok")

    certs = os.environ["CAREHARE_TEST_CERT_DIR"]
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    ctx.load_cert_chain(os.path.join(certs, "client.pem"),
                        os.path.join(certs, "client-key.pem"))
    tls = pika.ConnectionParameters(
        host="localhost",
        port=int(os.environ["CAREHARE_TEST_BROKER_TLS_PORT"]),
        ssl_options=pika.SSLOptions(ctx, "localhost"),
        credentials=pika.credentials.ExternalCredentials())
    conn = pika.BlockingConnection(tls)
    conn.channel().queue_declare(queue="", exclusive=True)
    conn.close()
    print("EXTERNAL: TLS login with the client certificate (CN=guest): ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
