"""``tunedcl sweep``: a grid of runs over seeds, restartable, summarised as one mean ± std table.

    tunedcl sweep --config default --grid loss.k1=0,1000,5000 loss.k2=1,3 --seeds 3 --out runs/k1k2

Each grid point x seed is an ordinary run directory, ``OUT/<key=value,...>/seed<k>``. Finished runs
(``results.json`` present) are skipped when the sweep is started again; a run that was cut off is
resumed from its checkpoint. ``OUT/summary.md`` and ``OUT/summary.json`` hold, per grid point, the mean
and standard deviation over seeds of linear and kNN top-1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunedcl.report import write_summary
from tunedcl.train.config import ConfigError, load_config


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
