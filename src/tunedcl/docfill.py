"""Copy the tables of sweep / study summaries into a markdown document (``tunedcl report --fill DOC``).

A document marks where a table goes with a comment line naming the study folder:

- ``<!-- summary: STUDY -->``: the machine line and the first table of ``STUDY/summary.md``, and the line
  under it that lists the runs that failed, if any;
- ``<!-- batch: STUDY -->``: its second table (the last epoch's denominator shares and similarities);
- ``<!-- paired: STUDY -->``: the first table of ``STUDY/paired.md`` (``tunedcl report --baseline``);
- ``<!-- interaction: STUDY -->`` and ``<!-- spread: STUDY -->``: its tables of how the difference changes
  across the grid and of the spread across settings (written where a sweep has several settings).

What follows a marker (blank lines, a ``Machine:`` line, one table, a failed-runs line) is replaced; nothing
else changes, so the prose around the tables stays as written.
"""

from __future__ import annotations

import re
from pathlib import Path

from tunedcl.report import FAILED_LINE
from tunedcl.rundir import atomic_write_text

MARKER = re.compile(r"^<!-- (summary|batch|paired|interaction|spread): ([\w.@=,-]+) -->$")
_GROUPS = (" (written by tunedcl report --baseline only where a sweep, or a value of the baseline's KEY, has two "
           "or more paired settings)")
# which file of a study a marker reads, and which of its tables (0: the first)
_TABLE = {"summary": ("summary.md", 0), "batch": ("summary.md", 1), "paired": ("paired.md", 0),
          "interaction": ("paired.md", 1), "spread": ("paired.md", 2)}


def _blocks(path: Path) -> tuple[str | None, list[list[str]], str | None]:
    """The ``Machine:`` line (or None), the markdown tables of a summary.md / paired.md in order, and the
    failed-runs line (or None)."""
    machine, tables, current, failed = None, [], [], None
    for line in path.read_text().splitlines() + [""]:
        if line.startswith(FAILED_LINE):
            failed = line
        if line.startswith("|"):
            current.append(line)
            continue
        if current:
            tables.append(current)
            current = []
        if line.startswith("Machine: ") and machine is None:
            machine = line
    return machine, tables, failed


def _content(kind: str, study: Path, marker: str) -> list[str]:
    """The lines that go after ``marker``. Raises ValueError when the study lacks the file or table."""
    name, wanted = _TABLE[kind]
    path = study / name
    if not path.is_file():
        raise ValueError(f"marker {marker!r} names {path}, which does not exist (run tunedcl report on it)")
    machine, tables, failed = _blocks(path)
    if len(tables) <= wanted:
        why = {"batch": " (written with train.log_gradients=true)", "interaction": _GROUPS, "spread": _GROUPS}
        raise ValueError(f"{path} has no {kind} table for marker {marker!r}{why.get(kind, '')}")
    head = [machine, ""] if kind == "summary" and machine else []
    tail = ["", failed] if kind == "summary" and failed else []
    return ["", *head, *tables[wanted], *tail]


def _skip_old(lines: list[str], index: int, kind: str) -> int:
    """Index just after the old content of a marker (blank lines, a Machine: line, one table, and under a
    summary table the failed-runs line)."""
    probe = index
    while probe < len(lines) and not lines[probe].strip():
        probe += 1
    if probe < len(lines) and lines[probe].startswith("Machine: "):
        probe += 1
        while probe < len(lines) and not lines[probe].strip():
            probe += 1
    if probe < len(lines) and lines[probe].startswith("|"):
        while probe < len(lines) and lines[probe].startswith("|"):
            probe += 1
        after = probe
        while after < len(lines) and not lines[after].strip():
            after += 1
        failed_line = kind == "summary" and after < len(lines) and lines[after].startswith(FAILED_LINE)
        return after + 1 if failed_line else probe
    return index  # no table after the marker yet: insert, keep what follows


def fill_document(document: Path, studies: dict[str, Path]) -> tuple[list[str], list[str]]:
    """Replace the content after every marker of ``document`` whose study is in ``studies`` (folder name ->
    folder). Returns the markers filled and those left as they were (their study was not given).

    Raises ValueError when a given study lacks the summary or table its marker asks for; the document is
    then unchanged.
    """
    lines = document.read_text().splitlines()
    out: list[str] = []
    filled: list[str] = []
    skipped: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        match = MARKER.match(line)
        if not match:
            continue
        kind, name = match.groups()
        if name not in studies:
            skipped.append(line)
            continue
        out += _content(kind, studies[name], line)
        index = _skip_old(lines, index, kind)
        if index < len(lines) and lines[index].strip():  # keep the text that follows apart from the table
            out.append("")
        filled.append(line)
    atomic_write_text(document, "\n".join(out) + "\n")
    return filled, skipped
