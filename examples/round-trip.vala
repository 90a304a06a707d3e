// SPDX-License-Identifier: LGPL-2.1-or-later
// Declares a queue, publishes a message with a confirm, consumes it and
// acks it, then closes: carehare-glib from Vala, through the VAPI the build
// generates from the GIR (carehare-glib-1.0.vapi). Vala's async methods
// wrap the *_async/*_finish pairs (keeping the _async name).
//
//     vala-round-trip URI
//
// Prints "received: hello from Vala"; a failure is printed with its reply
// code and whether retrying later may help (Carehare.Error.is_transient),
// and exits 1. --help prints the usage.

async int round_trip (string uri) {
    try {
        var conn = yield new Carehare.Connection (uri, null);
        uint messages, consumers;
        var queue = yield conn.queue_declare_async (
            "", Carehare.QueueFlags.EXCLUSIVE, null, null, out messages, out consumers);
        yield conn.publish_async ("", queue, new Bytes ("hello from Vala".data), null,
                            Carehare.PublishFlags.MANDATORY, null);
        var consumer = yield conn.acking_consumer_async (queue, 0, 1, null);
        var delivery = yield consumer.next_delivery_async (null);
        print ("received: %s\n", (string) delivery.get_body ().get_data ());
        consumer.ack (delivery.get_delivery_tag ());
        yield consumer.close_async (null);
        yield conn.close_async (null);
        return 0;
    } catch (Error e) {
        printerr ("failed: %s (reply code %u)\n  -> %s\n", e.message,
                  Carehare.Error.get_reply_code (e),
                  Carehare.Error.is_transient (e)
                  ? "transient: retrying later (with backoff) may succeed"
                  : "retrying will not help until the cause is fixed");
        return 1;
    }
}

int main (string[] args) {
    // --help prints the usage and exits 0, as every example does.
    var context = new OptionContext ("URI");
    context.set_summary ("Declares a queue, publishes a message with a confirm, consumes it\n"
                         + "and acks it, then closes.");
    bool parsed = true;
    try {
        context.parse (ref args);
    } catch (OptionError e) {
        printerr ("%s\n", e.message);
        parsed = false;
    }
    if (!parsed || args.length != 2) {
        printerr ("%s", context.get_help (true, null));
        return 2;
    }
    var loop = new MainLoop ();
    int status = 1;
    round_trip.begin (args[1], (obj, res) => {
        status = round_trip.end (res);
        loop.quit ();
    });
    loop.run ();
    return status;
}
