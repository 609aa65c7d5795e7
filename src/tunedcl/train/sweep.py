"""``tunedcl sweep``: a grid of runs over seeds, restartable, summarised as one mean ± std table.

    tunedcl sweep --config default --grid loss.k1=0,1000,5000 loss.k2=1,3 --seeds 3 --out runs/k1k2

Each grid point x seed is an ordinary run directory, ``OUT/<key=value,...>/seed<k>``. Finished runs
(``results.json`` present) are skipped when the sweep is started again; a run that was cut off is
resumed from its checkpoint. Either way the run's config.yaml must equal the one the sweep would run
(the run name aside): a stale folder from another base config is an error, never a silent reuse.

``--reuse DIR`` links (a relative symlink) every grid point x seed whose exact config already finished
somewhere under DIR, e.g. the base point shared by several one-factor studies, instead of training it
again. ``OUT/summary.md`` and ``OUT/summary.json`` hold, per grid point, the mean and standard deviation
over seeds of linear and kNN top-1.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedcl.records import FAILED_FILE, failed_points
from tunedcl.report import write_summary
from tunedcl.rundir import atomic_write_text, write_json
from tunedcl.train.config import RESULT_NEUTRAL, Config, ConfigError, flat_config, load_config, load_run_config


@dataclass(frozen=True)
class GridPoint:
    overrides: tuple[str, ...]  # ("loss.k1=1000", "loss.k2=3")

    @property
    def name(self) -> str:
        return ",".join(self.overrides) or "base"


def parse_grid(items: list[str]) -> list[GridPoint]:
    """``["loss.k1=0,1000", "loss.k2=1,3"]`` -> the cartesian product of the listed values."""
    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise ConfigError(f"--grid item {item!r} must look like section.key=v1,v2,...")
        for value in values.split(","):
            if "/" in value or "\\" in value or value.strip() in (".", ".."):
                raise ConfigError(f"--grid value {value.strip()!r} of {key.strip()} would not stay a folder name under "
                                  "--out (no '/', '\\', '.' or '..'); pass paths as fixed overrides instead")
        axes.append([f"{key.strip()}={value.strip()}" for value in values.split(",") if value.strip()])
    return [GridPoint(tuple(point)) for point in itertools.product(*axes)]


def _identity(config: Config) -> str:
    """What makes two runs the same experiment: the whole config except RESULT_NEUTRAL fields."""
    data = {key: value for key, value in flat_config(config).items() if key not in RESULT_NEUTRAL}
    return json.dumps(data, sort_keys=True, default=str)


def _check_same_config(run_dir: Path, planned: Config) -> None:
    """ConfigError unless the run in ``run_dir`` was started with ``planned`` (up to result-neutral fields)."""
    saved = load_run_config(run_dir)
    if _identity(saved) != _identity(planned):
        old, new = flat_config(saved), flat_config(planned)
        differing = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k != "train.tensorboard")
        shown = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} planned" for k in differing)
        raise ConfigError(
            f"{run_dir} was run with a different config (differs in {shown}); remove that folder or choose "
            "another --out"
        )


def finished_runs(roots: list[Path]) -> dict[str, Path]:
    """Finished run directories under ``roots`` (searched recursively), keyed by their config identity."""
    found: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--reuse {root}: no such folder; expected a folder of finished runs or sweeps")
        for results in sorted(root.rglob("results.json")):
            run_dir = results.parent
            if (run_dir / "config.yaml").is_file():
                found.setdefault(_identity(load_run_config(run_dir)), run_dir.resolve())
    return found


def run_sweep(
    config_name: str,
    grid: list[str],
    seeds: int,
    out: Path,
    overrides: list[str],
    quiet: bool = True,
    reuse: list[Path] | None = None,
) -> dict[str, Any]:
    """Run (or finish) every grid point x seed, then write and return the summary.

    ``reuse``: folders of earlier runs; a planned run whose exact config finished there is linked, not rerun.
    """
    from tunedcl.train.loop import TrainingError
    from tunedcl.train.run import run_training

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1; got {seeds}")
    points = parse_grid(grid)
    configs = {}
    for point in points:  # validate the whole sweep, and every run folder already there, before running any
        for seed in range(seeds):
            config = load_config(config_name, [*overrides, *point.overrides, f"train.seed={seed}"])
            config.name = f"{point.name} seed{seed}"
            run_dir = out / point.name / f"seed{seed}"
            if run_dir.is_symlink() and not run_dir.exists():
                raise ConfigError(f"{run_dir} links to a run that no longer exists; remove the link")
            if (run_dir / "config.yaml").is_file():
                _check_same_config(run_dir, config)
            configs[point, seed] = config
    earlier = finished_runs(list(reuse or []))
    for (point, seed), config in configs.items():
        run_dir = out / point.name / f"seed{seed}"
        if (run_dir / "results.json").is_file():
            continue
        if (run_dir / FAILED_FILE).is_file():  # the same config fails the same way: not retried on its own
            print(f"sweep: {run_dir} failed before; delete that run folder to try it afresh", flush=True)
            continue
        if not run_dir.exists() and _identity(config) in earlier:
            source = earlier[_identity(config)]
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(os.path.relpath(source, run_dir.parent.resolve()), target_is_directory=True)
            print(f"sweep: reusing {source} as {run_dir}", flush=True)
            continue
        resume = (run_dir / "config.yaml").is_file()
        print(f"sweep: {'resuming' if resume else 'running'} {run_dir}", flush=True)
        try:
            run_training(None if resume else config, run_dir, resume=resume, quiet=quiet)
        except TrainingError as error:  # a setting that collapses or diverges is a result of the grid, not a crash
            write_json(run_dir / FAILED_FILE, {"error": str(error)})
            print(f"sweep: {run_dir} failed: {error}", flush=True)
    return write_summary(out, [p.name for p in points], [p.overrides for p in points])


SELECTION_METRICS = ("linear", "knn")


def select_and_confirm(
    config_name: str, out: Path, overrides: list[str], rows: list[dict[str, Any]], metric: str, final_seeds: int,
    quiet: bool = True,
) -> str:
    """Pick, per method (the ``loss.method`` item of a grid point; one pick when the grid has none), the point
    with the best mean validation top-1 (``metric``: linear or kNN), then run it with ``final_seeds`` seeds under
    ``OUT/selected/<point>`` (the grid's own finished seeds are linked, not rerun) and report its test numbers.
    Nothing chosen ever looks at the test split. Writes and returns ``OUT/selected.md``."""
    if metric not in SELECTION_METRICS:
        raise ConfigError(f"--select-on must be one of {', '.join(SELECTION_METRICS)}; got {metric!r}")
    key = f"val_{metric}_top1_mean"
    # A point that failed on any seed is never chosen, whether or not another of its seeds finished.
    excluded = {point: next(iter(failures.values())) for point, failures in failed_points(out).items()}
    rows = [row for row in rows if row["point"] not in excluded]
    if not rows and excluded:
        raise ConfigError(f"--select-on {metric}: every grid point of {out} has a failed run "
                          f"({', '.join(excluded)}); nothing to choose")
    if not rows or any(key not in row for row in rows):
        raise ConfigError(f"--select-on {metric} needs validation numbers: set data.validation=N (images per class "
                          "held out of training) in the base config or the overrides")
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["overrides"].get("loss.method", "")), []).append(row)
    lines = [f"Best grid point per method by mean validation {metric} top-1, then {final_seeds} seeds on test.", "",
             f"| method | chosen point | validation {metric} top-1 | seeds | test linear top-1 | test kNN top-1 |",
             "|---|---|---:|---:|---:|---:|"]
    chosen: dict[str, dict[str, Any]] = {}
    best_rows = {method: max(members, key=lambda row: row[key]) for method, members in groups.items()}
    _set_aside_superseded(out, {best["point"] for best in best_rows.values()})
    for method, best in best_rows.items():
        chosen[method or "-"] = {"point": best["point"], "overrides": best["overrides"], key: best[key]}
        # A grid of one point, spelled as the grid spelled it, so OUT/selected/<point> has the point's own name
        point = best["point"].split(",") if best["overrides"] else []
        finals = run_sweep(config_name, point, final_seeds, out / "selected", overrides, quiet=quiet,
                           reuse=[out / best["point"]])["rows"]
        if not finals:  # every new seed failed: said in the table (selected/summary.md lists the errors)
            lines.append(f"| {method or '-'} | {best['point']} | {best[key]:.2f} | 0 | failed | failed |")
            continue
        final = finals[0]
        lines.append(f"| {method or '-'} | {best['point']} | {best[key]:.2f} | {final['seeds']} | "
                     f"{final['linear_top1_mean']:.2f} ± {final['linear_top1_std']:.2f} | "
                     f"{final['knn_top1_mean']:.2f} ± {final['knn_top1_std']:.2f} |")
    write_summary(out / "selected")  # every chosen point's summary together
    if excluded:
        lines += ["", "Not eligible (a run failed): " + "; ".join(f"`{p}`: {e}" for p, e in excluded.items())]
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "selected.md", table)
    # for the next stage of a study
    write_json(out / "selected.json", {"metric": metric, "chosen": chosen, "excluded": excluded})
    return table


def _set_aside_superseded(out: Path, chosen_points: set[str]) -> None:
    """Move every point under ``OUT/selected`` that is no longer chosen (the grid grew since, and another point
    won) to ``OUT/superseded/``, so that ``selected/``, its summary and its records hold only today's choices.
    The runs are kept, not deleted: they are finished test runs of an earlier choice."""
    selected = out / "selected"
    stale = [p for p in selected.iterdir() if p.is_dir() and p.name not in chosen_points] if selected.is_dir() else []
    for point in stale:
        target, suffix = out / "superseded" / point.name, 1
        while target.exists():  # superseded twice: keep both
            target, suffix = out / "superseded" / f"{point.name}~{suffix}", suffix + 1
        target.parent.mkdir(parents=True, exist_ok=True)
        point.rename(target)  # same depth under OUT, so the relative links to the grid's runs still resolve
        print(f"sweep: {point} is no longer chosen; moved to {target}", flush=True)
