"""Refresh the tables of docs/results.md from the sweep summaries (after `tunedcl report runs/studies/*`).

Each `<!-- summary: STUDY -->` marker in the document is followed (after a blank line) by the first table of
runs/studies/STUDY/summary.md, and each `<!-- batch: STUDY -->` marker by its second table (the last
epoch's denominator shares and similarities). The table after a marker is replaced; nothing else changes.

    .venv/bin/python studies/fill_results.py [docs/results.md] [runs/studies]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = re.compile(r"^<!-- (summary|batch): ([\w.-]+) -->$")


def tables(summary: Path) -> list[list[str]]:
    """The markdown tables of a summary.md, in order."""
    found: list[list[str]] = []
    current: list[str] = []
    for line in summary.read_text().splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def fill(document: Path, studies: Path) -> int:
    """Replace the table after every marker of ``document``; return how many were filled."""
    lines = document.read_text().splitlines()
    out: list[str] = []
    index, filled = 0, 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        match = MARKER.match(line)
        if not match:
            continue
        kind, study = match.groups()
        summary = studies / study / "summary.md"
        if not summary.is_file():
            raise SystemExit(f"{document}: marker {line!r} names {summary}, which does not exist")
        found = tables(summary)
        wanted = 0 if kind == "summary" else 1
        if len(found) <= wanted:
            raise SystemExit(f"{summary} has no {'second ' if wanted else ''}table for marker {line!r}")
        probe = index
        while probe < len(lines) and not lines[probe].strip():
            probe += 1
        if probe < len(lines) and lines[probe].startswith("|"):  # drop the old table (and the blank line)
            index = probe
            while index < len(lines) and lines[index].startswith("|"):
                index += 1
        out += ["", *found[wanted]]
        if index < len(lines) and lines[index].strip():  # keep text that follows apart from the table
            out.append("")
        filled += 1
    document.write_text("\n".join(out) + "\n")
    return filled


if __name__ == "__main__":
    args = sys.argv[1:]
    document = Path(args[0]) if args else Path("docs/results.md")
    studies = Path(args[1]) if len(args) > 1 else Path("runs/studies")
    print(f"{document}: {fill(document, studies)} tables refreshed")
