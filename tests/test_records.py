"""Durable results: run records (tunedcl export), tables rebuilt from them (tunedcl report) and copied into a
document (--fill), with no training. ``tests/data/records/example-study`` is a small committed study of
hand-chosen numbers, so every expected cell below is computed by hand."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tunedcl.cli import main
from tunedcl.docfill import fill_document
from tunedcl.records import RECORD_FORMAT, export_runs, point_runs, read_record
from tunedcl.report import point_overrides, write_summary

EXAMPLE = Path(__file__).parent / "data" / "records" / "example-study"


@pytest.fixture()
def study(tmp_path: Path) -> Path:
    """A copy of the committed example (reports are written next to the records)."""
    return Path(shutil.copytree(EXAMPLE, tmp_path / "example-study"))


def test_report_rebuilds_the_tables_of_a_committed_study(study: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(study), "--baseline", "tcl-ssl"]) == 0
    summary = (study / "summary.md").read_text()
    # simclr: linear 87.5, 87.0, 88.0 -> 87.50 ± 0.50; kNN 82.3, 82.0, 83.0 -> 82.43 ± 0.51; 60 s a run.
    assert "| simclr | 3 | 87.50 ± 0.50 | 82.43 ± 0.51 | 1.0 min |" in summary
    assert "| tcl-ssl | 3 | 87.90 ± 0.17 | 80.93 ± 0.81 | 1.5 min |" in summary
    assert summary.startswith("Machine: Example CPU (AVX2), 2 threads, fp32, torch 2.13.0+cpu (6 runs).")
    # simclr - tcl-ssl by seed: linear -0.5, -1.0, +0.3; kNN +1.0, +2.0, +1.5 (mean 1.5, sd 0.5, t(2) = 4.303:
    # half-width 1.24); three of three positive: sign p = Wilcoxon p = 2/8.
    paired = (study / "paired.md").read_text()
    header, delimiter = paired.splitlines()[2:4]
    assert header.count("|") == delimiter.count("|") == 11  # 10 columns: a markdown table renders
    assert "| simclr | 3 | -0.40 [" in paired
    assert "+1.50 [+0.26, +2.74] | 3/0/0 | 0.25 | 0.25 |" in paired
    assert str(study / "summary.md") in capsys.readouterr().out


def test_a_sweep_and_its_exported_records_give_the_same_tables(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for point, values in {"loss.k1=0": (80.0, 81.0), "loss.k1=5000": (79.5, 82.5)}.items():
        for seed, value in enumerate(values):
            run = sweep / point / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "config.yaml").write_text(f"name: s\nseed: {seed}\nloss:\n  k1: {point[8:]}\n")
            (run / "results.json").write_text(json.dumps({"linear_top1": value, "knn_top1": value - 5,
                                                          "train_seconds": 12.0, "hardware": "CPU X"}))
            (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 3, "loss": 2.0, "grad_from_positives":
                                                           value / 100, "grad_from_negatives": 0.1}) + "\n")
    (sweep / "loss.k1=0" / "seed2").mkdir()  # a run cut off before its results: not a finished run
    written = export_runs([sweep], tmp_path / "study")
    assert sorted(p.relative_to(tmp_path / "study").as_posix() for p in written) == [
        "loss.k1=0/seed0.json", "loss.k1=0/seed1.json", "loss.k1=5000/seed0.json", "loss.k1=5000/seed1.json"]
    record = json.loads(written[0].read_text())
    assert record["format"] == RECORD_FORMAT and record["config"]["seed"] == 0 and record["metrics"][0]["step"] == 3
    assert max(p.stat().st_size for p in written) < 4096  # compact: no checkpoint, no TensorBoard
    from_runs, from_records = write_summary(sweep), write_summary(tmp_path / "study")
    assert from_runs["table"] == from_records["table"]
    assert [row["point"] for row in from_records["rows"]] == ["loss.k1=0", "loss.k1=5000"]
    assert from_records["rows"][1]["overrides"] == {"loss.k1": 5000}
    assert from_records["rows"][0]["gradient_curves"]["grad_from_positives"] == [pytest.approx(0.805)]


def test_several_sweeps_become_the_points_of_one_study(tmp_path: Path) -> None:
    for sweep, point in (("simclr", "base"), ("tcl-ssl-k1", "loss.k1=0"), ("tcl-ssl-k1", "loss.k1=100")):
        run = tmp_path / "runs" / sweep / point / "seed0"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"linear_top1": 1.0, "knn_top1": 2.0}))
    export_runs([tmp_path / "runs" / "simclr", tmp_path / "runs" / "tcl-ssl-k1"], tmp_path / "study")
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == [
        "grid.json", "simclr", "tcl-ssl-k1@loss.k1=0", "tcl-ssl-k1@loss.k1=100"]
    assert point_overrides("tcl-ssl-k1@loss.k1=100") == ("loss.k1=100",) and point_overrides("simclr") == ()
    assert set(point_runs(tmp_path / "study" / "simclr")) == {0}


def test_fill_replaces_only_the_tables_after_markers(study: Path, tmp_path: Path) -> None:
    assert main(["report", str(study), "--baseline", "tcl-ssl"]) == 0
    document = tmp_path / "results.md"
    document.write_text("# Results\n\nProse before.\n\n<!-- summary: example-study -->\n\n| old | table |\n|---|---|\n"
                        "\nProse after.\n\n<!-- paired: example-study -->\nText right after.\n\n"
                        "<!-- summary: another-study -->\n\n| kept | as is |\n")
    filled, skipped = fill_document(document, {"example-study": study})
    assert len(filled) == 2 and skipped == ["<!-- summary: another-study -->"]
    text = document.read_text()
    assert "| old | table |" not in text and "| kept | as is |" in text
    assert "Prose before.\n\n<!-- summary: example-study -->\n\nMachine: Example CPU" in text
    assert "| simclr | 3 | 87.50 ± 0.50 | 82.43 ± 0.51 | 1.0 min |\n| tcl-ssl |" in text
    assert "| tcl-ssl | 3 | 87.90 ± 0.17 | 80.93 ± 0.81 | 1.5 min |\n\nProse after." in text
    assert "+1.50 [+0.26, +2.74] | 3/0/0 | 0.25 | 0.25 |\n\nText right after." in text
    again = document.read_text()
    fill_document(document, {"example-study": study})  # idempotent: filling twice changes nothing
    assert document.read_text() == again


def test_bad_records_and_folders_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "study" / "point" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"format": "something else", "results": {}}))
    with pytest.raises(ValueError, match="is not a tunedcl run record"):
        read_record(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable run record"):
        read_record(bad)
    (tmp_path / "empty").mkdir()
    cases = [
        (["export", str(tmp_path / "empty"), "--to", str(tmp_path / "out")], "is not a sweep with a finished or failed"),
        (["report", str(tmp_path / "empty")], "holds no finished run, sweep or exported study"),
        (["report", str(EXAMPLE), "--fill", str(tmp_path / "missing.md")], "--fill must be an existing markdown"),
        (["report", str(tmp_path / "study")], "unreadable run record"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_baseline_sweep_pairs_each_point_with_its_own_grid_values(tmp_path: Path) -> None:
    """Two sweeps (one per method, each at its own tuned lr) over the same axis, exported as one study:
    --baseline supcon pairs tcl@train.epochs=E with supcon@train.epochs=E."""
    values = {("supcon", 6): (80.0, 81.0), ("supcon", 12): (82.0, 83.0), ("tcl", 6): (80.5, 81.0),
              ("tcl", 12): (81.0, 81.5), ("tcl", 24): (90.0, 90.0)}  # no supcon@24: left unpaired
    for (sweep, epochs), runs in values.items():
        for seed, value in enumerate(runs):
            run = tmp_path / "runs" / sweep / f"train.epochs={epochs}" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"linear_top1": value, "knn_top1": value}))
    export_runs([tmp_path / "runs" / "supcon", tmp_path / "runs" / "tcl"], tmp_path / "study")
    assert main(["report", str(tmp_path / "study"), "--baseline", "supcon"]) == 0
    paired = (tmp_path / "study" / "paired.md").read_text()
    assert "minus `supcon` at the same grid values" in paired
    assert "| tcl@train.epochs=6 | 2 | +0.25 [" in paired  # (0.5 + 0.0) / 2
    assert "| tcl@train.epochs=12 | 2 | -1.25 [" in paired  # (-1.0 - 1.5) / 2
    assert "| tcl@train.epochs=24" not in paired and "| supcon@" not in paired
    assert "Not paired (no `supcon` point with the same grid values): tcl@train.epochs=24." in paired


def test_the_interaction_and_the_spread_across_settings_are_paired_by_seed(tmp_path: Path) -> None:
    """Two methods over three budgets, three seeds: the interaction (a point's difference minus the first
    budget's) and the spread (best minus worst budget per seed), worked out by hand, and filled into a doc."""
    values = {("supcon", 6): (80, 81, 82), ("supcon", 12): (82, 83, 85), ("supcon", 24): (83, 84, 86),
              ("tcl", 6): (81, 81, 83), ("tcl", 12): (82, 85, 85), ("tcl", 24): (85, 86, 86)}
    for (sweep, epochs), runs in values.items():
        for seed, value in enumerate(runs):
            run = tmp_path / "runs" / sweep / f"train.epochs={epochs}" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"linear_top1": value, "knn_top1": value + 1}))
    export_runs([tmp_path / "runs" / "supcon", tmp_path / "runs" / "tcl"], tmp_path / "study")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- paired: study -->\n\n<!-- interaction: study -->\n\n<!-- spread: study -->\nProse.\n")
    assert main(["report", str(tmp_path / "study"), "--baseline", "supcon", "--fill", str(doc)]) == 0
    paired = (tmp_path / "study" / "paired.md").read_text()
    # differences tcl - supcon per seed: 6 epochs (1, 0, 1), 12 (0, 2, 0), 24 (2, 2, 0); 12 minus 6: (-1, 2, -1),
    # sd sqrt(3), so the half-width is t(2) = 4.303
    assert "| tcl@train.epochs=12 | tcl@train.epochs=6 | 3 | +0.00 [-4.30, +4.30] | 1/2/0 |" in paired
    assert "| tcl@train.epochs=24 | tcl@train.epochs=6 | 3 | +0.67 [" in paired  # (1 + 2 - 1) / 3
    # spreads per seed: supcon (3, 3, 4), tcl (4, 5, 3); their difference (1, 2, -1)
    assert "| tcl | 3 | 3 | 3.33 [1.90, 4.77] | 4.00 [1.52, 6.48] | +0.67 [" in paired
    filled = doc.read_text()
    tables = [block for block in filled.split("\n\n") if block.startswith("|")]
    assert len(tables) == 3 and "| tcl@train.epochs=24 | 3 | +1.33 [" in tables[0]
    assert tables[1].startswith("| grid point | against |") and tables[2].startswith("| group | settings |")
    assert filled.endswith("Prose.\n")
    for table in tables:  # every row has as many cells as the header
        widths = {row.count("|") for row in table.splitlines()}
        assert len(widths) == 1, table


def test_the_interaction_is_against_the_grid_s_first_setting_and_failures_are_said(tmp_path: Path) -> None:
    """A grid listed crop-flip, simaug, autoaug (not alphabetical): the export keeps that order, so the
    interaction is measured against crop-flip. A seed whose run failed at one setting is left out of the
    interaction and the spread, and the table says so."""
    grid = ["crop-flip", "simaug", "autoaug"]
    for sweep, shift in (("supcon", 0.0), ("tcl", 1.0)):
        for index, augment in enumerate(grid):
            for seed in range(3):
                run = tmp_path / "runs" / sweep / f"data.augment={augment}" / f"seed{seed}"
                run.mkdir(parents=True)
                if sweep == "tcl" and augment == "autoaug" and seed == 2:
                    (run / "failed.json").write_text(json.dumps({"error": "the embeddings collapsed in epoch 2"}))
                    continue
                value = 80.0 + index + shift * (index + 1) + seed / 10
                (run / "results.json").write_text(json.dumps({"linear_top1": value, "knn_top1": value}))
        write_summary(tmp_path / "runs" / sweep, [f"data.augment={a}" for a in grid],
                      [(f"data.augment={a}",) for a in grid])  # what run_sweep writes: rows in grid order
    export_runs([tmp_path / "runs" / "supcon", tmp_path / "runs" / "tcl"], tmp_path / "study")
    assert json.loads((tmp_path / "study" / "grid.json").read_text())["points"] == [
        f"{sweep}@data.augment={a}" for sweep in ("supcon", "tcl") for a in grid]
    assert main(["report", str(tmp_path / "study"), "--baseline", "supcon"]) == 0
    paired = (tmp_path / "study" / "paired.md").read_text()
    # tcl - supcon: 1, 2, 3 at crop-flip, simaug, autoaug; minus crop-flip's: +1 and +2 (seed 2 left out of +2)
    assert "| tcl@data.augment=simaug | tcl@data.augment=crop-flip | 3 | +1.00 [" in paired
    assert "| tcl@data.augment=autoaug | tcl@data.augment=crop-flip | 2 | +2.00 [" in paired
    assert "| tcl | 3 | 2 | 2.00 [2.00, 2.00] | 4.00 [4.00, 4.00] | +2.00 [" in paired  # 82 - 80; 85 - 81
    assert "(a run failed, or is missing, at one of the group's settings or their `supcon` points): `tcl` seed 2." \
        in paired
    summary = (tmp_path / "study" / "summary.md").read_text()
    rows = [line.split(" | ")[0] for line in summary.splitlines() if line.startswith("| supcon@")]
    assert rows == [f"| supcon@data.augment={a}" for a in grid]  # the summary keeps the grid's order too


def test_a_marker_whose_table_is_not_there_says_why(tmp_path: Path) -> None:
    """One budget per method so far: no interaction table yet, and --fill names what writes one."""
    for sweep in ("supcon", "tcl"):
        run = tmp_path / "runs" / sweep / "train.epochs=6" / "seed0"
        run.mkdir(parents=True)
        (run / "results.json").write_text(json.dumps({"linear_top1": 80.0, "knn_top1": 70.0}))
    export_runs([tmp_path / "runs" / "supcon", tmp_path / "runs" / "tcl"], tmp_path / "study")
    assert main(["report", str(tmp_path / "study"), "--baseline", "supcon"]) == 0
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- interaction: study -->\n")
    with pytest.raises(ValueError, match="has no interaction table .* two or more paired settings"):
        fill_document(doc, {"study": tmp_path / "study"})
    assert doc.read_text() == "<!-- interaction: study -->\n"  # unchanged


def test_export_refuses_what_it_cannot_write_whole(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "runs" / "tcl@v2" / "base" / "seed0"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"linear_top1": 1.0, "knn_top1": 2.0}))
    shutil.copytree(EXAMPLE, tmp_path / "exported")
    (tmp_path / "file").write_text("")
    cases = [
        ([tmp_path / "runs" / "tcl@v2", tmp_path / "exported"], tmp_path / "out", "must not hold '@'"),
        ([tmp_path / "exported"], tmp_path / "out", "holds run records, not run folders"),
        ([tmp_path / "runs" / "tcl@v2"], tmp_path / "file", "is a file; choose a folder"),
    ]
    for sources, destination, message in cases:
        with pytest.raises(ValueError, match=message):
            export_runs(sources, destination)
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert main(["export", str(tmp_path / "exported"), "--to", str(tmp_path / "out")]) == 2
    assert "not run folders" in capsys.readouterr().err


def test_a_grid_item_baseline_pairs_points_that_differ_only_in_that_item(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """A batch x k1 grid: --baseline loss.k1=0 pairs each (batch, k1) with (batch, 0), never across batches."""
    values = {(16, 0): (80.0, 81.0), (16, 5000): (81.0, 83.0), (64, 0): (85.0, 86.0), (64, 5000): (84.0, 84.5),
              (32, 5000): (70.0, 70.0)}  # no (32, 0): left unpaired
    for (batch, k1), runs in values.items():
        for seed, value in enumerate(runs):
            run = tmp_path / "sweep" / f"train.batch_size={batch},loss.k1={k1}" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"linear_top1": value, "knn_top1": value + 1}))
    assert main(["report", str(tmp_path / "sweep"), "--baseline", "loss.k1=0"]) == 0
    paired = (tmp_path / "sweep" / "paired.md").read_text()
    assert "minus `loss.k1=0` at the same other grid values" in paired
    assert "| train.batch_size=16,loss.k1=5000 | 2 | +1.50 [" in paired  # (1 + 2) / 2
    assert "| train.batch_size=64,loss.k1=5000 | 2 | -1.25 [" in paired  # (-1 - 1.5) / 2
    assert "| train.batch_size=16,loss.k1=0 |" not in paired
    # the k1 effect at batch 64 minus at batch 16 (the first setting of the k1 = 5000 group): (-2, -3.5)
    assert "| train.batch_size=64,loss.k1=5000 | train.batch_size=16,loss.k1=5000 | 2 | -2.75 [" in paired
    assert "| loss.k1=5000 | 2 | 2 | 5.00 [" in paired  # k1 = 0 spreads over batch 16 and 64: (5, 5)
    assert "Not paired (no `loss.k1=0` point with the same grid values): train.batch_size=32,loss.k1=5000." in paired
    assert main(["report", str(tmp_path / "sweep"), "--baseline", "loss.k2=1"]) == 2  # no such item: one line
    err = capsys.readouterr().err
    assert "nor a grid item KEY=VALUE" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "runs" / "groups" / "loss.k1=5000" / "seed0"  # a second sweep in one study: its own group
    for k1 in (0, 5000):
        for seed in (0, 1):
            run = tmp_path / "runs" / "groups" / f"loss.k1={k1}" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({"linear_top1": 50.0 + k1 / 1000, "knn_top1": 50.0}))
    export_runs([tmp_path / "sweep", other.parent.parent], tmp_path / "study")
    assert main(["report", str(tmp_path / "study"), "--baseline", "loss.k1=0"]) == 0
    paired = (tmp_path / "study" / "paired.md").read_text()
    assert "| groups@loss.k1=5000 | 2 | +5.00 [" in paired and "| groups@loss.k1=5000 | sweep@" not in paired
    assert "| sweep@loss.k1=5000 | 2 | 2 |" in paired and "| groups@loss.k1=5000 | 1 |" not in paired


def test_with_the_paper_s_probe_the_fast_probe_is_a_column_and_the_probe_is_said(tmp_path: Path) -> None:
    """eval.linear_probe=both: `linear` is the paper's protocol, the same runs' fast probe is a column beside it,
    and the machine's line says which probe `linear` is (a document's marker carries that line); with the fast probe alone, neither appears."""
    for sweep, linear, fast in (("supcon", (86, 87), (88, 90)), ("tcl", (87, 89), (89, 89))):
        for seed in (0, 1):
            run = tmp_path / "runs" / sweep / "base" / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "results.json").write_text(json.dumps({
                "linear_top1": linear[seed], "paper_linear_top1": linear[seed], "fast_linear_top1": fast[seed],
                "knn_top1": 80, "linear_probe": "paper protocol (50 epochs)"}))
    export_runs([tmp_path / "runs" / "supcon", tmp_path / "runs" / "tcl"], tmp_path / "study")
    assert main(["report", str(tmp_path / "study")]) == 0
    lines = (tmp_path / "study" / "summary.md").read_text().splitlines()
    assert lines[0].startswith("Machine: ") and lines[0].endswith(" Linear probe: paper protocol (50 epochs) (4 runs).")
    header, rule, *rows = [line for line in lines if line.startswith("|")][:4]
    assert "| train time per run | fast probe linear top-1 (%) |" in header
    assert rule.count("|") == header.count("|")
    # supcon: paper 86, 87 -> 86.50 ± 0.71; fast 88, 90 -> 89.00 ± 1.41
    assert rows[0].startswith("| supcon | 2 | 86.50 ± 0.71 | 80.00 ± 0.00 |") and rows[0].endswith("| 89.00 ± 1.41 |")
    assert rows[1].endswith("| 89.00 ± 0.00 |")
    fast_only = tmp_path / "fast"
    (fast_only / "base" / "seed0").mkdir(parents=True)
    (fast_only / "base" / "seed0" / "results.json").write_text(json.dumps(
        {"linear_top1": 88, "fast_linear_top1": 88, "knn_top1": 80, "linear_probe": "fast (cached features)"}))
    write_summary(fast_only, ["base"], [()])
    text = (fast_only / "summary.md").read_text()
    assert "Linear probe" not in text and "fast probe" not in text
