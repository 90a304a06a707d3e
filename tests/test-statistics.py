# SPDX-License-Identifier: LGPL-2.1-or-later
# carehare_connection_get_statistics() through PyGObject: the boxed
# snapshot and its getters are usable from Python, counts exact.
import os
import sys

import gi
gi.require_version("Carehare", "1.0")
from gi.repository import Carehare, GLib  # noqa: E402

uri = os.environ["CAREHARE_TEST_AMQP_URI"]
loop = GLib.MainLoop()
state = {}


def run(start, finish):
    def done(source, result):
        state["value"] = finish(source, result)
        loop.quit()
    start(done)
    loop.run()
    return state.pop("value")


conn = run(lambda cb: Carehare.Connection.new_async(uri, None, cb),
           lambda _s, r: Carehare.Connection.new_finish(r))
queue = "carehare-statistics-py-%d" % os.getpid()
run(lambda cb: conn.queue_declare_async(queue, Carehare.QueueFlags.AUTO_DELETE, None, None, cb),
    lambda s, r: s.queue_declare_finish(r))
for i in range(100):
    run(lambda cb: conn.publish_async("", queue, GLib.Bytes.new(b"x"), None,
                                      Carehare.PublishFlags.NONE, None, cb),
        lambda s, r: s.publish_finish(r))
stats = conn.get_statistics()
assert isinstance(stats, Carehare.Statistics), stats
assert stats.get_messages_published() == 100, stats.get_messages_published()
assert stats.get_messages_confirmed() == 100
assert stats.get_messages_nacked() == 0
assert stats.get_bytes_sent() > 0 and stats.get_bytes_received() > 0
assert stats.get_time_since_last_received() >= 0
run(lambda cb: conn.queue_delete_async(queue, Carehare.QueueDeleteFlags.NONE, None, cb),
    lambda s, r: s.queue_delete_finish(r))
run(lambda cb: conn.close_async(None, cb), lambda s, r: s.close_finish(r))
print("ok")
sys.exit(0)
