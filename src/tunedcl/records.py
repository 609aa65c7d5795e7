"""Compact, durable records of finished runs: what survives a change of machine.

A run directory holds checkpoints and TensorBoard files and lives on one machine. Its *record* is one JSON
file of a few kB that keeps what a table needs: the config, the results (``results.json``, which names the
hardware, torch and tunedcl versions), and the per-epoch metrics (``metrics.jsonl``). Records are committed
(``docs/results/runs/``) so that ``tunedcl report`` can rebuild every table without retraining.

An exported study is laid out like a sweep, one file per run instead of one folder::

    STUDY/<grid point>/seed<N>.json

:func:`point_runs` reads a grid point of either layout (a sweep's ``<point>/seed<N>/`` run folders or a
study's ``<point>/seed<N>.json`` records), so the summaries and paired tables are computed by the same code
from both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunedcl.rundir import MetricsLog, atomic_write_text

RECORD_FORMAT = "tunedcl-run-record/1"
# A run that stopped with a TrainingError (collapse, non-finite loss) inside a sweep: a result of its grid point
# (that setting fails), kept beside the run folder's checkpoint as FAILED_FILE and exported as seed<N>.failed.json.
FAILED_FILE = "failed.json"
GRID_FILE = "grid.json"  # an exported study's points in their sweeps' grid order (the first setting first)


# How results.json named the cross-entropy classifier when it stood in for the probe (before the protocols
# were made equal).
HEAD_AS_PROBE = "the cross-entropy classifier itself"


def equal_protocol_results(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` (a results.json's dict) with today's meaning of ``linear_top1``: the probe every method gets.

    Files written before the protocols were made equal gave a method with a classifier (the cross-entropy
    baseline) its own head as ``linear_top1`` / ``val_linear_top1``; the probe's numbers are in the same
    file (``paper_linear_top1`` / ``fast_linear_top1``, ``val_fast_linear_top1``), so the old file reads
    exactly as a new one would have been written. The head stays in ``ce_top1`` / ``val_ce_top1``. Any
    other dict is returned unchanged (a copy either way).
    """
    upgraded = dict(results)
    if upgraded.get("linear_probe") != HEAD_AS_PROBE:
        return upgraded
    if upgraded.get("paper_linear_top1") is not None:
        upgraded["linear_top1"] = upgraded["paper_linear_top1"]
        upgraded["linear_probe"] = "paper protocol"
    elif upgraded.get("fast_linear_top1") is not None:
        upgraded["linear_top1"] = upgraded["fast_linear_top1"]
        upgraded["linear_probe"] = "fast (cached features)"
    else:
        upgraded["linear_top1"], upgraded["linear_probe"] = None, "none"
    if "val_linear_top1" in upgraded:
        upgraded["val_linear_top1"] = upgraded.get("val_fast_linear_top1")
    return upgraded


@dataclass(frozen=True)
class RunData:
    """One finished run, from its folder or its record."""

    seed: int
    results: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None


def _seed_of(name: str, prefix: str = "seed", suffix: str = "") -> int | None:
    """``seed3`` (or ``seed3.json``) -> 3; None for any other name."""
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    digits = name[len(prefix): len(name) - len(suffix)]
    return int(digits) if digits.isdigit() else None


def run_record(run_dir: Path) -> dict[str, Any]:
    """The record of a finished run folder (``results.json`` present).

    Raises ValueError when the folder holds no finished run.
    """
    import yaml

    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise ValueError(f"{run_dir} holds no finished run (no results.json)")
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else None
    return {
        "format": RECORD_FORMAT,
        "config": config,
        "results": json.loads(results_path.read_text()),
        "metrics": MetricsLog(run_dir).read(),
    }


def read_record(path: Path) -> RunData:
    """A committed record as :class:`RunData`.

    Raises ValueError for a file that is not a tunedcl run record (or not named ``seed<N>.json``).
    """
    seed = _seed_of(path.name, suffix=".json")
    if seed is None:
        raise ValueError(f"{path}: a run record must be named seed<N>.json")
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable run record ({err})") from err
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or "results" not in record:
        raise ValueError(f"{path} is not a tunedcl run record (format must be {RECORD_FORMAT!r})")
    return RunData(seed, equal_protocol_results(record["results"]), record.get("metrics") or [], record.get("config"))


def point_runs(point_dir: Path) -> dict[int, RunData]:
    """The finished runs of one grid point by seed: run folders ``seed<N>/results.json`` of a sweep, or
    records ``seed<N>.json`` of an exported study (a folder holds one layout or the other)."""
    runs: dict[int, RunData] = {}
    for path in sorted(point_dir.iterdir()) if point_dir.is_dir() else []:
        if path.is_dir() and (seed := _seed_of(path.name)) is not None and (path / "results.json").is_file():
            results = equal_protocol_results(json.loads((path / "results.json").read_text()))
            runs[seed] = RunData(seed, results, MetricsLog(path).read())
        elif path.is_file() and _seed_of(path.name, suffix=".json") is not None:
            run = read_record(path)
            runs[run.seed] = run
    return runs


def point_failures(point_dir: Path) -> dict[int, str]:
    """The failed runs of one grid point by seed, with their error: run folders ``seed<N>/failed.json`` (and no
    results.json) of a sweep, or records ``seed<N>.failed.json`` of an exported study."""
    failures: dict[int, str] = {}
    for path in sorted(point_dir.iterdir()) if point_dir.is_dir() else []:
        if path.is_dir() and (seed := _seed_of(path.name)) is not None and (path / FAILED_FILE).is_file() \
                and not (path / "results.json").is_file():
            failures[seed] = str(json.loads((path / FAILED_FILE).read_text()).get("error", "failed"))
        elif path.is_file() and (seed := _seed_of(path.name, suffix=".failed.json")) is not None \
                and not (point_dir / f"seed{seed}.json").is_file():  # a retry that finished outranks the failure
            failures[seed] = str(json.loads(path.read_text()).get("error", "failed"))
    return failures


def failed_points(study: Path) -> dict[str, dict[int, str]]:
    """Every grid point of a sweep or an exported study with a failed run: {point: {seed: error}}."""
    found = {p.name: point_failures(p) for p in sorted(study.iterdir()) if p.is_dir()} if study.is_dir() else {}
    return {point: failures for point, failures in found.items() if failures}


def grid_order(folder: Path) -> list[str]:
    """The grid points of a sweep or an exported study in the order the sweep's grid listed them (its first
    setting first): ``grid.json`` of an export, else the rows of the sweep's ``summary.json``; [] with neither."""
    for name, key in ((GRID_FILE, None), ("summary.json", "rows")):
        path = folder / name
        if path.is_file():
            listed = json.loads(path.read_text())
            return [row["point"] for row in listed.get("rows", [])] if key else list(listed.get("points", []))
    return []


def finished_points(study: Path) -> list[str]:
    """Names of the grid points of a sweep or an exported study with at least one finished run."""
    return [p.name for p in study.iterdir() if p.is_dir() and point_runs(p)] if study.is_dir() else []


def export_runs(sources: list[Path], destination: Path) -> list[Path]:
    """Write the record of every finished run of the sweeps ``sources`` under ``destination``.

    With one sweep its grid points keep their names; with several, a point is named after its sweep folder
    (``simclr`` for a sweep's only point ``base``, else ``tcl-ssl-k1@loss.k1=0``), so that the sweeps of one
    study (one per method preset) become the points of one table. Existing records of the same runs are
    overwritten. ``grid.json`` keeps the points in their sweeps' grid order (the first setting first, which
    the interaction of ``tunedcl report --baseline`` is measured against). Returns the record files written.

    Raises ValueError for a source that is not a sweep with a finished or failed run, or for two sources that
    would write the same point.
    """
    from tunedcl.report import natural_key  # report builds on this module: imported when used

    if destination.exists() and not destination.is_dir():
        raise ValueError(f"--to {destination} is a file; choose a folder for the records")
    planned: dict[Path, tuple[Path, str]] = {}
    order: list[str] = []
    for source in sources:
        if len(sources) > 1 and "@" in source.name:
            raise ValueError(f"{source}: a sweep folder's name must not hold '@' (it separates a study's point "
                             "names from their grid values); rename the folder")
        points, failed = finished_points(source), failed_points(source)
        if not points and not failed:  # a sweep whose every run failed is a result too: its failures are exported
            raise ValueError(f"{source} is not a sweep with a finished or failed run (no <point>/seed<N>/results.json "
                             "or failed.json)")
        listed = [p for p in grid_order(source) if p in points or p in failed]
        for point in listed + sorted((set(points) | set(failed)) - set(listed), key=natural_key):
            name = point if len(sources) == 1 else source.name if point == "base" else f"{source.name}@{point}"
            order.append(name)
            for seed, error in failed.get(point, {}).items():  # a failure is a result of its grid point too
                planned[destination / name / f"seed{seed}.failed.json"] = (
                    source / point / f"seed{seed}", json.dumps({"format": RECORD_FORMAT, "error": error}) + "\n")
            for seed in sorted(point_runs(source / point)):
                run_dir = source / point / f"seed{seed}"
                if not (run_dir / "results.json").is_file():  # a record, not a run folder
                    raise ValueError(f"{source / point} holds run records, not run folders: it is exported "
                                     "already (copy the folder to move it)")
                target = destination / name / f"seed{seed}.json"
                if target in planned:
                    raise ValueError(f"{planned[target][0]} and {run_dir} would both be exported as {target}")
                planned[target] = (run_dir, json.dumps(run_record(run_dir), indent=1) + "\n")
    earlier = grid_order(destination) if (destination / GRID_FILE).is_file() else []
    planned[destination / GRID_FILE] = (destination, json.dumps({"points": order + [
        name for name in earlier if name not in order]}, indent=1) + "\n")  # the grid's order survives the export
    for target, (_, text) in planned.items():  # every record read before any is written
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        if target.name == GRID_FILE:
            continue
        seed = target.name.split(".")[0]  # one outcome per seed: a finished retry replaces a failure, and back
        other = target.with_name(f"{seed}.json" if target.name.endswith(".failed.json") else f"{seed}.failed.json")
        other.unlink(missing_ok=True)
    return [target for target in planned if target.name != GRID_FILE]
