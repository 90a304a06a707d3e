#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Print "N passed, N failed[, N skipped]" counted from meson test logs.

Each argument is a meson-logs/testlog.json (one JSON object per test). A log
that is missing counts as one failure, so a build that never got to run its
tests cannot look green. Before the count, every test that did not pass is
named with its log and the lines of its output that say why (failed GLib
test cases, criticals, sanitizer and memcheck reports), so that the end of a
CI log is enough to know what broke."""
import json
import re
import sys

TELLING = re.compile(
    r"not ok|Bail out|ERROR|CRITICAL|WARNING|FAIL|Assertion|assert|"
    r"AddressSanitizer|runtime error|LeakSanitizer|==\d+== (Invalid|Conditional|"
    r"Use of|Syscall|Mismatched|Source and|\d+ bytes in)|Traceback|Error:|timed out",
)
TAIL = 12


TAP_RESULT = re.compile(r"^(not )?ok \d+ ")


def explain(stdout):
    """The telling lines of a test's output, else its last lines.

    A GLib test that aborts (g_error, a timeout) prints no result line for
    the case it was running, so the last result line comes first: the case
    after it in the program's order is the one that broke."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    telling = [line for line in lines if TELLING.search(line)][-TAIL:]
    results = [line for line in lines if TAP_RESULT.match(line)]
    if results and results[-1] not in telling:
        telling.insert(0, "last result before the failure: " + results[-1])
    return telling or lines[-TAIL:]


passed = failed = skipped = 0
failures = []
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except OSError:
        failures.append((path, "no test log", "", []))
        failed += 1
        continue
    for line in lines:
        test = json.loads(line)
        result = test.get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
            # meson keeps stderr apart unless the test merges it.
            output = (test.get("stdout") or "") + "\n" + (test.get("stderr") or "")
            failures.append((path, test.get("name", "?"), result, explain(output)))

for path, name, result, why in failures:
    print(f"FAILED {name} ({result}) in {path}")
    for line in why:
        print(f"    {line[:300]}")

line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
