"""``tunedcl sweep``: a grid of runs over seeds, restartable, summarised as one mean ± std table.

    tunedcl sweep --config default --grid loss.k1=0,1000,5000 loss.k2=1,3 --seeds 3 --out runs/k1k2

Each grid point x seed is an ordinary run directory, ``OUT/<key=value,...>/seed<k>``. Finished runs
(``results.json`` present) are skipped when the sweep is started again; a run that was cut off is
resumed from its checkpoint. ``OUT/summary.md`` and ``OUT/summary.json`` hold, per grid point, the mean
and standard deviation over seeds of linear and kNN top-1.
"""

from __future__ import annotations

import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedcl.train import rundir
from tunedcl.train.config import ConfigError, load_config, parse_override


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
        axes.append([f"{key.strip()}={value.strip()}" for value in values.split(",") if value.strip()])
    return [GridPoint(tuple(point)) for point in itertools.product(*axes)]


def run_sweep(
    config_name: str, grid: list[str], seeds: int, out: Path, overrides: list[str], quiet: bool = True
) -> dict[str, Any]:
    """Run (or finish) every grid point x seed, then write and return the summary."""
    from tunedcl.train.run import run_training

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1; got {seeds}")
    points = parse_grid(grid)
    configs = {}
    for point in points:  # validate the whole sweep before running any of it
        for seed in range(seeds):
            configs[point, seed] = load_config(config_name, [*overrides, *point.overrides, f"train.seed={seed}"])
    for (point, seed), config in configs.items():
        run_dir = out / point.name / f"seed{seed}"
        if (run_dir / "results.json").is_file():
            continue
        resume = (run_dir / "config.yaml").is_file()
        config.name = f"{point.name} seed{seed}"
        print(f"sweep: {'resuming' if resume else 'running'} {run_dir}", flush=True)
        run_training(None if resume else config, run_dir, resume=resume, quiet=quiet)
    return write_summary(out, [p.name for p in points], [p.overrides for p in points])


def _cell(row: dict[str, Any], key: str) -> str:
    return f"{row[key + '_mean']:.2f} ± {row[key + '_std']:.2f}" if key + "_mean" in row else "-"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_summary(out: Path, names: list[str] | None = None, overrides: list[tuple[str, ...]] | None = None) -> dict:
    """summary.md / summary.json from the run directories under ``out`` (every grid point found there
    when ``names`` is None)."""
    if names is None:
        names = sorted(p.name for p in out.iterdir() if p.is_dir() and any(p.glob("seed*/results.json")))
        overrides = [tuple(n.split(",")) if n != "base" else () for n in names]
    rows = []
    for name, point in zip(names, overrides or [()] * len(names), strict=True):
        results = [json.loads(p.read_text()) for p in sorted((out / name).glob("seed*/results.json"))]
        if not results:
            continue
        row: dict[str, Any] = {
            "point": name,
            "overrides": dict(parse_override(o)[:2] for o in point),
            "seeds": len(results),
        }
        for key in ("linear_top1", "knn_top1"):
            values = [r[key] for r in results if r.get(key) is not None]
            if values:
                row[key + "_mean"], row[key + "_std"] = _mean_std(values)
        row["train_minutes_mean"] = statistics.fmean(r.get("train_seconds", 0.0) for r in results) / 60
        rows.append(row)
    lines = [
        "| grid point | seeds | linear top-1 (%) | kNN top-1 (%) | train time per run |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['point']} | {row['seeds']} | {_cell(row, 'linear_top1')} | {_cell(row, 'knn_top1')} | "
            f"{row['train_minutes_mean']:.1f} min |"
        )
    out.mkdir(parents=True, exist_ok=True)
    from tunedcl.report import plot_sweep_accuracy

    if plot_sweep_accuracy(rows, out / "accuracy.png"):
        lines += ["", "![accuracy against the swept value](accuracy.png)"]
    rundir.atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    rundir.write_json(out / "summary.json", {"rows": rows})
    return {"rows": rows, "table": "\n".join(lines)}
