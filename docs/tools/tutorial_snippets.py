#!/usr/bin/env python3
"""Keeps docs/TUTORIAL.md's C++ programs identical to examples/tutorial_*.cpp.

Each program in the tutorial sits in a ```cpp block right after a line
`<!-- example: examples/tutorial_<name>.cpp -->`. `check` (the ctest docs.tutorial_snippets) fails
when a block differs from its file, a marker names a missing file, or an examples/tutorial_*.cpp has
no block; `write` rewrites the blocks from the files. The programs themselves are compiled against
the installed package, outside the source tree, by tests/install.

usage: tutorial_snippets.py check|write [ROOT]
"""
import pathlib
import re
import sys

MARK = re.compile(r"^<!-- example: (examples/tutorial_[a-z_]+\.cpp) -->\n```cpp\n(.*?)```\n", re.S | re.M)


def main(argv):
    if len(argv) < 2 or argv[1] not in ("check", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    root = pathlib.Path(argv[2] if len(argv) > 2 else pathlib.Path(__file__).resolve().parents[2])
    doc = root / "docs" / "TUTORIAL.md"
    text = doc.read_text()
    problems, seen = [], set()

    def sub(m):
        rel = m.group(1)
        seen.add(rel)
        f = root / rel
        if not f.exists():
            problems.append(f"{doc}: the example {rel} does not exist")
            return m.group(0)
        code = f.read_text()
        if code != m.group(2):
            problems.append(f"{doc}: the block after '<!-- example: {rel} -->' differs from {rel}")
        return f"<!-- example: {rel} -->\n```cpp\n{code}```\n"

    new = MARK.sub(sub, text)
    for f in sorted((root / "examples").glob("tutorial_*.cpp")):
        rel = f"examples/{f.name}"
        if rel not in seen:
            problems.append(f"{doc}: no '<!-- example: {rel} -->' block shows {rel}")
    if argv[1] == "write":
        doc.write_text(new)
        missing = [p for p in problems if "no '<!--" in p or "does not exist" in p]
        for p in missing:
            print(p, file=sys.stderr)
        return 1 if missing else 0
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print("fix the tutorial, or regenerate its blocks: python3 docs/tools/tutorial_snippets.py write",
              file=sys.stderr)
        return 1
    print(f"{len(seen)} tutorial programs match their files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
