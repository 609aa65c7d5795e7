"""docs/results.md against its committed records: every `tunedcl report docs/results/runs/... --fill
docs/results.md` command written in the document, run on a copy with no training, leaves the document as it is,
so every table there comes from docs/results/runs/ by the command next to it. The only tables without records
are the earlier, untuned studies, named here; a new study cannot join them. (Numbers quoted in the prose are not
checked: only the tables after the markers.)"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tunedcl.cli import main
from tunedcl.docfill import MARKER

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "results.md"
RECORDS = REPO / "docs" / "results" / "runs"
# `tunedcl report STUDY... [--baseline POINT] --fill docs/results.md`, possibly wrapped over lines in the prose
COMMAND = re.compile(r"tunedcl report((?:\s+docs/results/runs/[\w.@=,-]+)+)(?:\s+--baseline\s+(\S+))?"
                     r"\s+--fill\s+docs/results\.md")
# The earlier studies (untuned, run before records existed): their tables stay as written until the
# studies/supervised.sh stages replace them. Nothing may be added here.
UNTUNED = {"a-supervised", "a-ce-equal-compute", "a-supervised-full", "c-k1", "c-k2", "e-k1-temperature",
           "e-k1-temperature-large", "d-batch", "d-projector", "d-augment", "d-encoder-resnet18"}


def test_every_table_of_docs_results_regenerates_from_the_committed_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    text = DOC.read_text()
    commands = [(study.split(), baseline) for study, baseline in COMMAND.findall(text)]
    assert commands, "no tunedcl report --fill command found in docs/results.md"
    (tmp_path / "docs" / "results").mkdir(parents=True)
    copied = Path(shutil.copytree(RECORDS, tmp_path / "docs" / "results" / "runs"))  # reports go beside records
    for report in copied.glob("*/*.md"):  # every table rebuilt from the records, none taken from a committed file
        report.unlink()
    shutil.copy(DOC, tmp_path / "docs" / "results.md")
    monkeypatch.chdir(tmp_path)
    filled = set()
    for studies, baseline in commands:
        assert main(["report", *studies, *(["--baseline", baseline] if baseline else []),
                     "--fill", "docs/results.md"]) == 0, (studies, capsys.readouterr().err)
        filled |= {Path(study).name for study in studies}
    regenerated = (tmp_path / "docs" / "results.md").read_text()
    assert regenerated == text, "docs/results.md differs from what its commands rebuild from docs/results/runs"
    markers = {match.group(2) for line in text.splitlines() if (match := MARKER.match(line))}
    assert markers - filled == UNTUNED, "a table with neither records nor a command that fills it"
    assert not UNTUNED & {p.name for p in RECORDS.iterdir()}, "an untuned study now has records: drop it from UNTUNED"
    unused = {p.name for p in RECORDS.iterdir() if p.is_dir()} - filled
    assert not unused, f"records that no command of docs/results.md reports: {sorted(unused)}"
