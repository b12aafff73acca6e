"""Each benchmark script owns one marked section of BENCHMARKS.md and rewrites only that."""

from __future__ import annotations

import os


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: str, name: str, body: str, after: str | None = None) -> None:
    """Replace the text between section ``name``'s markers in ``path``, atomically.

    Without the markers the section is inserted after the text ``after`` when given and
    present, else appended at the end (a missing file is created).
    """
    start, end = markers(name)
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif after and after in text:
        i = text.index(after) + len(after)
        text = text[:i] + "\n\n" + block + text[i:]
    else:
        text = text + ("\n" if text and not text.endswith("\n") else "") + (
            "\n" if text else "") + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
