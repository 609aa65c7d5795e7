"""TCL minus SupCon, seed by seed, for every setting that sweeps were run with both methods.

Seeds fix the initialisation, data order and augmentation, so the runs of the two methods with the same
seed and otherwise identical config are pairs; their difference has less noise than the two means.

    .venv/bin/python studies/paired_differences.py runs/studies/d-* runs/studies/a-supervised

Prints one markdown row per setting (mean ± std over seeds of TCL - SupCon, linear and kNN top-1, in
points) and a last row over all settings: how many settings TCL's mean beat SupCon's.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import yaml

from tunedcl.methods import METHODS
from tunedcl.report import natural_key


def setting_of(run_dir: Path) -> str:
    """The run's config without its name, method and seed, and without the method's hyperparameters that are
    at their defaults (TCL has k1 and k2, SupCon a variant): what a TCL run and its SupCon pair share."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config.pop("name", None)
    loss = config.pop("loss")
    specs = METHODS.get(loss.pop("method")).hyperparameter_specs()
    config["loss"] = {k: v for k, v in loss.items() if k in specs and v != specs[k].default}
    config["train"].pop("seed")
    return json.dumps(config, sort_keys=True)


def main(folders: list[str]) -> int:
    runs: dict[tuple[str, str], dict[int, dict]] = {}  # (setting, method) -> seed -> results.json
    labels: dict[str, str] = {}
    for results_path in sorted(p for folder in folders for p in Path(folder).glob("*/seed*/results.json")):
        run_dir = results_path.parent
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        if config["loss"]["method"] not in ("supcon", "tcl"):
            continue
        setting = setting_of(run_dir)
        point = ",".join(p for p in run_dir.parent.name.split(",") if not p.startswith("loss.method="))
        labels.setdefault(setting, f"{run_dir.parent.parent.name}: {point or 'base'}")
        runs.setdefault((setting, config["loss"]["method"]), {})[config["train"]["seed"]] = json.loads(
            results_path.read_text()
        )
    lines = ["| setting | seeds | TCL - SupCon, linear (points) | TCL - SupCon, kNN (points) |", "|---|---:|---:|---:|"]
    wins = {"linear_top1": 0, "knn_top1": 0}
    settings = 0
    for setting, label in sorted(labels.items(), key=lambda item: natural_key(item[1])):
        tcl, supcon = runs.get((setting, "tcl"), {}), runs.get((setting, "supcon"), {})
        seeds = sorted(tcl.keys() & supcon.keys())
        if not seeds:
            continue
        settings += 1
        cells = []
        for key in wins:
            diffs = [tcl[s][key] - supcon[s][key] for s in seeds]
            mean = statistics.fmean(diffs)
            wins[key] += mean > 0
            spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            cells.append(f"{mean:+.2f} ± {spread:.2f}")
        lines.append(f"| {label} | {len(seeds)} | {cells[0]} | {cells[1]} |")
    lines.append(
        f"| TCL's mean ahead in | | {wins['linear_top1']} of {settings} settings | {wins['knn_top1']} of "
        f"{settings} settings |"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
