#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""TLS: certificates from the URI, certificates as GIO objects with EXTERNAL
authentication, and what a certificate problem looks like.

    tls.py amqps://HOST:PORT/ CERT_DIR

CERT_DIR holds ca.pem (the CA that signed the broker's certificate),
client.pem and client-key.pem (a client certificate whose common name is a
RabbitMQ user), and other-ca.pem (a CA the broker has nothing to do with).
Shown in docs/tls.md and run by the tests.
"""
import os
import sys
from urllib.parse import quote

import gi

gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, Gio, GLib  # noqa: E402


class App:
    def __init__(self, base_uri, cert_dir):
        self.loop = GLib.MainLoop()
        self.status = 0
        self.base_uri = base_uri
        self.cert_dir = cert_dir
        self.connect_with_uri()

    def path(self, name):
        return os.path.join(self.cert_dir, name)

    def fail(self, message):
        print(message, file=sys.stderr)
        self.status = 1
        self.loop.quit()

    def connect_with_uri(self):
        """The simplest way: the files in the URI's query, percent-encoded."""
        uri = (f"{self.base_uri}?cacertfile={quote(self.path('ca.pem'))}"
               f"&certfile={quote(self.path('client.pem'))}"
               f"&keyfile={quote(self.path('client-key.pem'))}")
        Carehare.Connection.new_async(uri, None, self.on_uri_files)

    def on_uri_files(self, source, result):
        try:
            conn = Carehare.Connection.new_finish(result)
        except GLib.Error as e:
            return self.fail(f"connecting with the URI's certificates failed: {e.message}")
        print("connected over TLS, certificates named in the URI")
        conn.close_async(None, lambda conn, result: self.connect_with_objects(
            "ca.pem", self.on_external))

    def connect_with_objects(self, ca_name, callback):
        """Trusts the CAs in ca_name only, presents client.pem, and logs in
        as the certificate's common name: no password anywhere."""
        try:
            database = Gio.TlsFileDatabase.new(self.path(ca_name))
            certificate = Gio.TlsCertificate.new_from_files(self.path("client.pem"),
                                                            self.path("client-key.pem"))
        except GLib.Error as e:
            return self.fail(f"cannot load the certificates: {e.message}")
        conn = Carehare.Connection(uri=f"{self.base_uri}?auth_mechanism=external",
                                   tls_database=database, tls_certificate=certificate)
        conn.init_async(GLib.PRIORITY_DEFAULT, None, callback)

    def on_external(self, conn, result):
        try:
            conn.init_finish(result)
        except GLib.Error as e:
            return self.fail(f"EXTERNAL login failed: {e.message}")
        print("logged in with the client certificate (EXTERNAL)")
        conn.close_async(None, lambda conn, result: self.connect_with_objects(
            "other-ca.pem", self.on_wrong_ca))

    def on_wrong_ca(self, conn, result):
        try:
            conn.init_finish(result)
            return self.fail("expected a certificate error, got a connection")
        except GLib.Error as e:
            # Gio.TlsError.BAD_CERTIFICATE, saying why the broker's
            # certificate was refused. Not worth retrying: the configuration
            # must change.
            if not e.matches(Gio.tls_error_quark(), Gio.TlsError.BAD_CERTIFICATE):
                return self.fail(f"expected a certificate error, got {e.message}")
            print(f"as expected: {e.message}")
        self.loop.quit()


def main():
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} amqps://host:port/ CERT_DIR", file=sys.stderr)
        return 2
    app = App(sys.argv[1], sys.argv[2])
    app.loop.run()
    return app.status


if __name__ == "__main__":
    sys.exit(main())
