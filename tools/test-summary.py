#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Print "N passed, N failed[, N skipped]" counted from meson test logs.

Each argument is a meson-logs/testlog.json (one JSON object per test). A log
that is missing counts as one failure, so a build that never got to run its
tests cannot look green."""
import json
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except OSError:
        print(f"{path}: no test log", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        result = json.loads(line).get("result")
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1

line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)
