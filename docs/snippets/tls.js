// SPDX-License-Identifier: LGPL-2.1-or-later
// TLS: certificates from the URI, certificates as GIO objects with EXTERNAL
// authentication, and what a certificate problem looks like.
//
//     gjs -m tls.js amqps://HOST:PORT/ CERT_DIR
//
// CERT_DIR holds ca.pem (the CA that signed the broker's certificate),
// client.pem and client-key.pem (a client certificate whose common name is a
// RabbitMQ user), and other-ca.pem (a CA the broker has nothing to do with).
// Shown in docs/tls.md and run by the tests.
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import System from 'system';
// carehare.js, installed as $datadir/carehare-glib-1.0/carehare.js; here,
// from the source tree.
import Carehare from '../../bindings/gjs/carehare.js';

// carehare.js promisifies Carehare.Connection's init_async (GAsyncInitable's)
// too, as every *_async of the library's classes.

// The simplest way: the files in the URI's query, percent-encoded.
function connectWithUri(baseUri, certDir) {
    const q = name => GLib.uri_escape_string(GLib.build_filenamev([certDir, name]), '/', false);
    return Carehare.Connection.new_async(
        `${baseUri}?cacertfile=${q('ca.pem')}&certfile=${q('client.pem')}` +
        `&keyfile=${q('client-key.pem')}`, null);
}

// Trusts the CAs in caName only, presents client.pem, and logs in as the
// certificate's common name: no password anywhere.
async function connectWithObjects(baseUri, certDir, caName) {
    const path = name => GLib.build_filenamev([certDir, name]);
    const conn = new Carehare.Connection({
        uri: `${baseUri}?auth_mechanism=external`,
        tls_database: Gio.TlsFileDatabase.new(path(caName)),
        tls_certificate: Gio.TlsCertificate.new_from_files(path('client.pem'),
            path('client-key.pem')),
    });
    await conn.init_async(GLib.PRIORITY_DEFAULT, null);
    return conn;
}

async function main(baseUri, certDir) {
    let conn = await connectWithUri(baseUri, certDir);
    print('connected over TLS, certificates named in the URI');
    await conn.close_async(null);

    conn = await connectWithObjects(baseUri, certDir, 'ca.pem');
    print('logged in with the client certificate (EXTERNAL)');
    await conn.close_async(null);

    try {
        conn = await connectWithObjects(baseUri, certDir, 'other-ca.pem');
        await conn.close_async(null);
        throw new Error('expected a certificate error, got a connection');
    } catch (e) {
        // Gio.TlsError.BAD_CERTIFICATE, saying why the broker's certificate
        // was refused. Not worth retrying: the configuration must change.
        if (!(e instanceof GLib.Error) || !e.matches(Gio.TlsError, Gio.TlsError.BAD_CERTIFICATE))
            throw e;
        print(`as expected: ${e.message}`);
    }
}

const ARGV = System.programArgs;
if (ARGV.length !== 2) {
    printerr('usage: gjs -m tls.js amqps://host:port/ CERT_DIR');
    System.exit(2);
}
const loop = new GLib.MainLoop(null, false);
let status = 0;
main(ARGV[0], ARGV[1]).catch(e => {
    printerr(`failed: ${e.message}`);
    status = 1;
}).finally(() => loop.quit());
loop.run();
System.exit(status);
