#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""TLS: certificates from the URI, the trust from an ssl.SSLContext with
EXTERNAL authentication, and what a certificate problem looks like.

    tls.py amqps://HOST:PORT/ CERT_DIR

CERT_DIR holds ca.pem (the CA that signed the broker's certificate),
client.pem and client-key.pem (a client certificate whose common name is a
RabbitMQ user), and other-ca.pem (a CA the broker has nothing to do with).
Shown in docs/tls.md and run by the tests. asyncio through the PyGObject
override (docs/python.md).
"""
import os
import ssl
import sys
from urllib.parse import quote

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare as carehare  # noqa: E402


def uri_with_files(base_uri, cert_dir):
    """The simplest way: the files in the URI's query, percent-encoded."""
    def q(name):
        return quote(os.path.join(cert_dir, name))
    return (f"{base_uri}?cacertfile={q('ca.pem')}"
            f"&certfile={q('client.pem')}&keyfile={q('client-key.pem')}")


async def connect_external(base_uri, cert_dir, ca_name):
    """Trusts the CAs in ca_name only, presents client.pem, and logs in as
    the certificate's common name: no password anywhere."""
    # The context's CA certificates become the connection's trust; nothing
    # else of it is used: the client certificate comes from the URI.
    context = ssl.create_default_context(cafile=os.path.join(cert_dir, ca_name))
    cert = quote(os.path.join(cert_dir, "client.pem"))
    key = quote(os.path.join(cert_dir, "client-key.pem"))
    return await carehare.connect(
        f"{base_uri}?auth_mechanism=external&certfile={cert}&keyfile={key}", ssl=context)


async def main(base_uri, cert_dir):
    async with carehare.connect(uri_with_files(base_uri, cert_dir)):
        print("connected over TLS, certificates named in the URI")

    connection = await connect_external(base_uri, cert_dir, "ca.pem")
    print("logged in with the client certificate (EXTERNAL)")
    await connection.close()

    try:
        connection = await connect_external(base_uri, cert_dir, "other-ca.pem")
        await connection.close()
        raise RuntimeError("expected a certificate error, got a connection")
    except ssl.SSLCertVerificationError as e:
        # The broker's certificate was refused; the message says why. Not
        # worth retrying: the configuration must change.
        print(f"as expected: {e}")


def run():
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} amqps://host:port/ CERT_DIR", file=sys.stderr)
        return 2
    try:
        carehare.run(main(sys.argv[1], sys.argv[2]))
    except Exception as e:  # noqa: BLE001: every failure is reported
        print(f"failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
