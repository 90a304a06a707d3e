#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks that the code in the guides is the code the tests run.

    check-snippets.py DOCS_DIR

gi-docgen cannot include files, so a guide shows code in fenced blocks and
names the file each block comes from on the line before it:

    <!-- snippet: getting-started.c -->

    ```c
    ...
    ```

Each such block must be byte-identical to a run of whole lines of
DOCS_DIR/snippets/NAME, which the tests compile or run. Also: every C,
Python or JavaScript block in a guide names its snippet, every guide shows
all three languages, and every snippet file is shown somewhere.
"""
import os
import re
import sys

GUIDES = ["getting-started.md", "error-handling.md", "flow-control.md", "tls.md"]
LANGUAGES = {"c": ".c", "python": ".py", "js": ".js"}
MARKER = re.compile(r"^<!-- snippet: (?P<name>[A-Za-z0-9_.-]+) -->$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")


def blocks(path):
    """Yields (line number, language, snippet name or None, code) for each
    fenced block of the Markdown file at path."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    pending = None  # (line number, name) of a marker awaiting its block
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            if pending:
                raise SyntaxError(f"{path}:{pending[0]}: snippet marker without a code block")
            pending = (i + 1, m["name"])
            i += 1
            continue
        m = FENCE.match(lines[i])
        if m:
            start = i
            i += 1
            while i < len(lines) and lines[i] != "```":
                i += 1
            if i == len(lines):
                raise SyntaxError(f"{path}:{start + 1}: unterminated code block")
            code = "".join(line + "\n" for line in lines[start + 1:i])
            yield start + 1, m["lang"], pending[1] if pending else None, code
            pending = None
        elif lines[i].strip() and pending:
            raise SyntaxError(f"{path}:{pending[0]}: snippet marker not followed by a code block")
        i += 1
    if pending:
        raise SyntaxError(f"{path}:{pending[0]}: snippet marker without a code block")


def is_line_run(code, source):
    """Whether code is a run of whole lines of source."""
    at = source.find(code)
    while at >= 0:
        if at == 0 or source[at - 1] == "\n":
            return True
        at = source.find(code, at + 1)
    return False


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} DOCS_DIR", file=sys.stderr)
        return 2
    docs = sys.argv[1]
    snippets_dir = os.path.join(docs, "snippets")
    snippet_files = {name for name in os.listdir(snippets_dir)
                     if os.path.splitext(name)[1] in LANGUAGES.values()}
    shown = set()
    errors = []
    checked = 0

    for guide in GUIDES:
        path = os.path.join(docs, guide)
        languages = set()
        try:
            found = list(blocks(path))
        except (OSError, SyntaxError) as e:
            errors.append(str(e))
            continue
        for line, lang, name, code in found:
            where = f"{guide}:{line}"
            if name is None:
                if lang in LANGUAGES:
                    errors.append(f"{where}: a {lang} block must name its snippet "
                                  "(<!-- snippet: NAME --> on the line before)")
                continue
            if lang not in LANGUAGES or not name.endswith(LANGUAGES[lang]):
                errors.append(f"{where}: a ```{lang} block cannot come from {name}")
                continue
            try:
                with open(os.path.join(snippets_dir, name), encoding="utf-8") as f:
                    source = f.read()
            except OSError as e:
                errors.append(f"{where}: {e}")
                continue
            if not code.strip():
                errors.append(f"{where}: empty block")
            elif not is_line_run(code, source):
                errors.append(f"{where}: the block differs from snippets/{name}; "
                              "copy the lines from the file again")
            else:
                checked += 1
            languages.add(lang)
            shown.add(name)
        for lang in sorted(set(LANGUAGES) - languages):
            errors.append(f"{guide}: no {lang} snippet")

    for name in sorted(snippet_files - shown):
        errors.append(f"snippets/{name} is not shown in any guide")

    for error in errors:
        print(error, file=sys.stderr)
    print(f"{checked} snippet blocks match their files; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
