// SPDX-License-Identifier: LGPL-2.1-or-later
// The typelib from the build directory loads in GJS and its enums, flags
// and error helpers behave as the C API does.
imports.gi.versions.Carehare = '1.0';
const {Carehare, GLib} = imports.gi;
const System = imports.system;

let failures = 0;
function check(what, cond) {
    print((cond ? 'ok - ' : 'not ok - ') + what);
    if (!cond)
        failures++;
}

print(Carehare.Error.CHANNEL_CLOSED_BY_SERVER);
check('error enum is registered', Carehare.Error.CHANNEL_CLOSED_BY_SERVER === 6);
check('error enum has MESSAGE_TOO_LARGE', Carehare.Error.MESSAGE_TOO_LARGE === 10);
check('error quark', Carehare.error_quark() === GLib.quark_from_string('carehare-error-quark'));
check('publish flags', Carehare.PublishFlags.MANDATORY === 1);
check('queue flags', Carehare.QueueFlags.AUTO_DELETE === 8);
check('exchange flags', Carehare.ExchangeFlags.INTERNAL === 8);
check('version', Carehare.get_major_version() >= 0 && Carehare.check_version(0, 1, 0));

const err = new GLib.Error(Carehare.error_quark(), Carehare.Error.CHANNEL_CLOSED_BY_SERVER,
    "Channel closed by server: 404 NOT_FOUND - no exchange 'x' in vhost '/'");
check('reply code survives GJS', Carehare.error_get_reply_code(err) === 404);
check('GLib.Error.matches', err.matches(Carehare.Error, Carehare.Error.CHANNEL_CLOSED_BY_SERVER));
const other = new GLib.Error(Carehare.error_quark(), Carehare.Error.CONNECTION_CLOSED, 'closed 404 NOT_FOUND');
check('no reply code on other codes', Carehare.error_get_reply_code(other) === 0);

System.exit(failures ? 1 : 0);
