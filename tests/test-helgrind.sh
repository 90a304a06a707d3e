#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The helgrind phase (TAP): calls from many threads on one connection
# under valgrind's race detector.
#
#   test-helgrind.sh PRELOAD CANARY TEST_THREADS
#
# PRELOAD is helgrind-glib-sync.so (declares GLib's own locks to helgrind),
# CANARY helgrind-canary, TEST_THREADS test-threads. First the canaries
# show that races are seen and that GLib's real ordering is not reported;
# then test-threads runs 8 threads x 500 publishes with confirms, the
# thread-pool consumer and the blocking twins, and the session's tests
# (4 threads x 200 publishes through one session, topology recorded from a
# worker, a session consumer acked from a thread pool, a close from a
# thread): no race, no lock misuse.
set -u

preload=$1 canary=$2 test_threads=$3
here=$(cd "$(dirname "$0")" && pwd)
helgrind=(valgrind --tool=helgrind --error-exitcode=97 --num-callers=30
  "--suppressions=$here/helgrind.supp"
  --suppressions=/usr/share/glib-2.0/valgrind/glib.supp)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0 failed=0

check () {
  local name=$1 ok=$2
  n=$((n + 1))
  if [ "$ok" = yes ]; then
    echo "ok $n $name"
  else
    echo "not ok $n $name"
    # The first report whole (both stacks of a race), then the end.
    grep -m1 -A70 -E "Possible data race|unlocked a not-locked|lock order" "$log" | sed 's/^/# /'
    sed 's/^/# /' "$log" | tail -30
    failed=1
  fi
}

echo "1..3"

LD_PRELOAD=$preload "${helgrind[@]}" "$canary" race >"$log" 2>&1
rc=$?
ok=no
if [ $rc -eq 97 ] && grep -q "Possible data race" "$log" && grep -q "count_racy" "$log"; then
  ok=yes
fi
check "a race between two threads is reported (exit $rc)" $ok

LD_PRELOAD=$preload "${helgrind[@]}" "$canary" glib >"$log" 2>&1
rc=$?
check "GMutex, GThreadPool and GTask hand-offs are not reported (exit $rc)" \
  "$([ $rc -eq 0 ] && echo yes || echo no)"

CAREHARE_TEST_THREADS=8 CAREHARE_TEST_PUBLISHES=500 \
  CAREHARE_TEST_SESSION_THREADS=4 CAREHARE_TEST_SESSION_PUBLISHES=200 \
  LD_PRELOAD=$preload "${helgrind[@]}" "$test_threads" >"$log" 2>&1
rc=$?
ok=no
if [ $rc -eq 0 ] && ! grep -q "^not ok" "$log" && grep -q "^ok .*/threads/publish/many-threads" "$log" &&
   grep -q "^ok .*/threads/session/many-threads-publish" "$log" &&
   grep -q "^ok .*/threads/session/thread-pool-acks" "$log"; then
  ok=yes
fi
check "test-threads, 8 threads x 500 publishes and a session from 4 threads, under helgrind (exit $rc)" $ok

exit $failed
