"""Reports from run directories and run records: report.md and plots of a run; summary.md, paired.md and
plots of a sweep or of an exported study (:mod:`tunedcl.records`; plots need matplotlib, optional)."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tunedcl.paired import paired, t_quantile_975
from tunedcl.records import equal_protocol_results, failed_points, finished_points, grid_order, point_runs
from tunedcl.rundir import MetricsLog, atomic_write_text, parse_override, write_json


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _finish(plt: Any, figure: Any, axis: Any, path: Path, legend: bool = True, integer_x: bool = False) -> bool:
    """Grid, legend, layout, then an atomic save (temporary file, rename) and close."""
    if integer_x:  # epochs
        from matplotlib.ticker import MaxNLocator

        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    if legend:
        axis.legend()
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp)
    tmp.replace(path)
    plt.close(figure)
    return True


def plot_gradient_curves(records: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Mean tangential gradient from positives and from negatives per epoch (train.log_gradients=true)."""
    plt = _pyplot()
    rows = [r for r in records if "grad_from_positives" in r and "epoch" in r]
    if plt is None or not rows:
        return False
    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=110)
    epochs = [r["epoch"] for r in rows]
    axis.plot(epochs, [r["grad_from_positives"] for r in rows], marker="o", markersize=3, label="from positives")
    axis.plot(epochs, [r["grad_from_negatives"] for r in rows], marker="s", markersize=3, label="from negatives")
    axis.set_xlabel("epoch")
    axis.set_ylabel("mean tangential gradient")
    axis.set_title(title)
    return _finish(plt, figure, axis, path, integer_x=True)


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _swept_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Keys that take more than one value across the rows, in grid order."""
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row["overrides"] if key not in keys]
    return [key for key in keys if len({str(row["overrides"].get(key)) for row in rows}) > 1]


def plot_sweep_accuracy(rows: list[dict[str, Any]], path: Path) -> bool:
    """Accuracy (mean ± std over seeds) against the swept value.

    One swept key: linear and kNN top-1 against it. Two (e.g. ``loss.method`` x ``train.batch_size``, the
    paper's Figure 2): one line per value of the first, against the second, in a linear and a kNN panel.
    Numeric values are placed by value (symlog when they span decades, as k1 does), others in grid order.
    """
    plt = _pyplot()
    keys = _swept_keys(rows)
    rows = [row for row in rows if all(key in row["overrides"] for key in keys)]  # e.g. a "base" point: no x
    if plt is None or not 1 <= len(keys) <= 2 or len(rows) < 2:
        return False
    x_key = keys[-1]
    x_values = list(dict.fromkeys(str(row["overrides"][x_key]) for row in rows))
    numeric = all(_as_number(v) is not None for v in x_values)
    position = {v: (_as_number(v) if numeric else i) for i, v in enumerate(x_values)}
    if len(keys) == 1:
        series = {"": rows}
        panels = [(("linear_top1", "linear top-1"), ("knn_top1", "kNN top-1"))]
    else:
        series = {}
        for row in rows:
            series.setdefault(f"{keys[0]}={row['overrides'][keys[0]]}", []).append(row)
        panels = [(("linear_top1", "linear top-1"),), (("knn_top1", "kNN top-1"),)]
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 3.6), dpi=110, squeeze=False)
    for axis, metrics in zip(axes[0], panels, strict=True):
        for name, members in series.items():
            members = sorted(members, key=lambda row: position[str(row["overrides"][x_key])])
            for metric, label in metrics:
                if all(metric + "_mean" in row for row in members):
                    axis.errorbar(
                        [position[str(row["overrides"][x_key])] for row in members],
                        [row[metric + "_mean"] for row in members],
                        yerr=[row[metric + "_std"] for row in members],
                        marker="o",
                        capsize=3,
                        linestyle="-" if numeric else ":",  # categories (methods, presets): no implied trend
                        label=f"{name} {label}".strip() if len(metrics) > 1 else (name or label),
                    )
        positive = [position[v] for v in x_values if numeric and position[v] > 0]
        if positive and max(positive) / min(positive) > 10:  # k1 sweeps span decades: 0, 10, ..., 1e5
            axis.set_xscale("symlog", linthresh=min(positive))
        if not numeric:
            axis.set_xticks(range(len(x_values)), x_values)
        axis.set_xlabel(x_key)
        axis.set_ylabel(f"{metrics[0][1] if len(metrics) == 1 else 'top-1'} (%)")
        if axis is not axes[0][-1]:
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    return _finish(plt, figure, axes[0][-1], path)


GEOMETRY_KEYS = ("alignment", "uniformity", "tolerance")  # eval.geometry=true
GRADIENT_KEYS = (("grad_from_positives", "from positives"), ("grad_from_negatives", "from negatives"))


BATCH_KEYS = (  # train.log_gradients: D's three shares and the similarities, shown at the last epoch
    ("share_positives", "D share: positives"),
    ("share_k1", "D share: k1 term"),
    ("share_negatives", "D share: negatives"),
    ("mean_positive_similarity", "mean s+"),
    ("hardest_positive_similarity", "hardest s+"),
    ("mean_negative_similarity", "mean s-"),
    ("hardest_negative_similarity", "hardest s-"),
)


def _logged_statistics(metrics: list[list[dict[str, Any]]]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """From train.log_gradients records (``metrics``: each seed's metrics.jsonl): per-epoch means over seeds of
    the gradient magnitudes (over the epochs every seed logged), and the means over seeds of the last such
    epoch's batch statistics."""
    per_seed = [[r for r in records if "grad_from_positives" in r and "epoch" in r] for records in metrics]
    epochs = min((len(records) for records in per_seed), default=0)
    if epochs == 0:
        return {}, {}
    curves = {
        key: [statistics.fmean(records[e][key] for records in per_seed) for e in range(epochs)]
        for key, _ in GRADIENT_KEYS
    }
    last = {
        key: statistics.fmean(records[epochs - 1][key] for records in per_seed)
        for key, _ in BATCH_KEYS
        if all(key in records[epochs - 1] for records in per_seed)
    }
    return curves, last


def plot_sweep_gradients(rows: list[dict[str, Any]], path: Path) -> bool:
    """Mean gradient from positives and from negatives per epoch, one line per grid point (mean over seeds)."""
    plt = _pyplot()
    rows = [row for row in rows if row.get("gradient_curves")]
    if plt is None or not rows:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    for axis, (key, label) in zip(axes, GRADIENT_KEYS, strict=True):
        for row in rows:
            curve = row["gradient_curves"][key]
            axis.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=row["point"])
        axis.set_xlabel("epoch")
        axis.set_ylabel("mean tangential gradient")
        axis.set_title(f"gradient {label} (mean over seeds)")
        if axis is not axes[-1]:
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    return _finish(plt, figure, axes[-1], path, legend=False, integer_x=True)


def _plot_loss_curve(records: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Loss (and kNN top-1 when logged) per epoch; False when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return False
    epochs = [r["epoch"] for r in records if "epoch" in r]
    losses = [r["loss"] for r in records if "epoch" in r]
    figure, axis = plt.subplots(figsize=(6, 3.6), dpi=110)
    axis.plot(epochs, losses, marker="o", markersize=3, color="tab:blue", label="training loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss", color="tab:blue")
    knn = [(r["epoch"], r["knn_top1"]) for r in records if "knn_top1" in r and "epoch" in r]
    if knn:
        twin = axis.twinx()
        twin.plot(*zip(*knn, strict=True), marker="s", markersize=3, color="tab:orange", label="kNN top-1")
        twin.set_ylabel("kNN top-1 (%)", color="tab:orange")
    axis.set_title(title)
    return _finish(plt, figure, axis, path, legend=False, integer_x=True)


def write_run_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` (and ``loss_curve.png``) from results.json and metrics.jsonl."""
    run_dir = Path(run_dir)
    results = equal_protocol_results(json.loads((run_dir / "results.json").read_text()))
    records = MetricsLog(run_dir).read()
    title = f"{results.get('name')} ({results.get('method')}, {results.get('dataset')})"
    plotted = _plot_loss_curve(records, run_dir / "loss_curve.png", title)

    def pct(key: str) -> str:
        value = results.get(key)
        return "-" if value is None else f"{value:.2f}"

    lines = [
        f"# {title}",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| linear top-1 (%) ({results.get('linear_probe', '-')}) | {pct('linear_top1')} |",
        f"| kNN top-1 (%) | {pct('knn_top1')} |",
    ]
    for key, label in (
        ("paper_linear_top1", "paper-protocol linear top-1 (%)"),
        ("fast_linear_top1", "fast linear top-1 (%)"),
        ("ce_top1", "classifier head top-1 (%) (its own head, not the probe)"),
    ):
        if key in results:
            lines.append(f"| {label} | {pct(key)} |")
    lines += [
        f"| training time | {results.get('train_seconds', 0) / 60:.1f} min |",
        f"| evaluation time | {results.get('eval_seconds', 0):.0f} s |",
        f"| views/s | {results.get('views_per_second', 0):,.0f} |",
        f"| peak memory | {results.get('peak_memory_bytes', 0) / 2**30:.2f} GiB |",
        f"| steps | {results.get('steps')} |",
        f"| hardware | {results.get('hardware')} ({results.get('precision')}, {results.get('world_size')} process) |",
        "",
    ]
    if plotted:
        lines += ["![loss curve](loss_curve.png)", ""]
    else:
        lines += ["(install matplotlib, `pip install 'tunedcl[train]'`, for the loss-curve plot)", ""]
    if plot_gradient_curves(records, run_dir / "gradient_curves.png", title):
        lines += ["![gradient curves](gradient_curves.png)", ""]
    lines += ["| epoch | loss | lr | views/s | seconds |", "|---:|---:|---:|---:|---:|"]
    for r in records:
        if "epoch" in r:
            lines.append(
                f"| {r['epoch']} | {r['loss']:.4f} | {r['lr']:.4g} | {r['views_per_s']:,.0f} | {r['seconds']:.1f} |"
            )
    lines += ["", "Config: `config.yaml`; per-epoch metrics: `metrics.jsonl`; raw results: `results.json`.", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _cell(row: dict[str, Any], key: str) -> str:
    return f"{row[key + '_mean']:.2f} ± {row[key + '_std']:.2f}" if key + "_mean" in row else "-"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def natural_key(point: str) -> list[tuple[str, float, str]]:
    """``loss.k1=50000`` before ``loss.k1=100000``: numeric values compare as numbers."""
    key = []
    for item in point.split(","):
        name, _, value = item.partition("=")
        number = _as_number(value)
        key.append((name, number if number is not None else float("inf"), value))
    return key


def ordered_points(out: Path, points: Iterable[str]) -> list[str]:
    """``points`` in their grid's order (:func:`tunedcl.records.grid_order`), the rest in natural order."""
    found = set(points)
    listed = [point for point in dict.fromkeys(grid_order(out)) if point in found]
    return listed + sorted(found - set(listed), key=natural_key)


def point_overrides(point: str) -> tuple[str, ...]:
    """The overrides a grid point's name spells: ``loss.k1=0,loss.k2=3`` -> both; ``base`` or an exported
    study's ``simclr`` -> none; ``tcl-ssl-k1@loss.k1=0`` -> ``loss.k1=0`` (:func:`tunedcl.records.export_runs`)."""
    spelled = point.rpartition("@")[2]
    return tuple(item for item in spelled.split(",") if "=" in item)


def _machines(results: list[dict[str, Any]]) -> str:
    """Which machine the numbers came from: each hardware line (and torch) with its number of runs."""
    counts: dict[str, int] = {}
    for r in results:
        machine = f"{r.get('hardware', 'unknown hardware')}, {r.get('precision', '?')}, torch {r.get('torch', '?')}"
        counts[machine] = counts.get(machine, 0) + 1
    said = "; ".join(f"{machine} ({n} run{'s' * (n != 1)})" for machine, n in counts.items())
    return said or "none (no run finished)"


def _probes(results: list[dict[str, Any]]) -> str:
    """Which linear probe `linear top-1` is, said when any run used another than the fast one (the default)."""
    probes: dict[str, int] = {}
    for r in results:
        probe = str(r.get("linear_probe", "?"))
        probes[probe] = probes.get(probe, 0) + 1
    if all(probe.startswith("fast") for probe in probes):
        return ""
    said = "; ".join(f"{probe} ({n} run{'s' * (n != 1)})" for probe, n in probes.items())
    return f" Linear probe: {said}."


def _accuracy_table(rows: list[dict[str, Any]]) -> list[str]:
    """summary.md's first table: top-1 (mean ± std), train time, and the columns the runs have (the classifier
    head, validation, the last epoch's gradients, geometry)."""
    gradients = any("gradient_curves" in row for row in rows)
    shapes = [key for key in GEOMETRY_KEYS if any(key + "_mean" in row for row in rows)]
    validation = [key for key in ("val_linear_top1", "val_knn_top1") if any(key + "_mean" in row for row in rows)]
    head = any("ce_top1_mean" in row for row in rows)  # a classifier's own head, beside the probe every method gets
    # With the paper's probe as `linear`, the fast probe of the same run beside it (eval.linear_probe=both)
    fast = any("fast_linear_top1_mean" in row for row in rows)
    extra = " fast probe linear top-1 (%) |" if fast else ""
    extra += " classifier head top-1 (%) |" if head else ""
    extra += "".join(f" validation {key[4:].replace('_top1', '').replace('knn', 'kNN')} top-1 |" for key in validation)
    extra += " gradient from positives / negatives (last epoch) |" if gradients else ""
    extra += "".join(f" {key} |" for key in shapes)
    columns = int(fast) + int(head) + len(validation) + int(gradients) + len(shapes)
    lines = [
        f"| grid point | seeds | linear top-1 (%) | kNN top-1 (%) | train time per run |{extra}",
        "|---|---:|---:|---:|---:|" + "---:|" * columns,
    ]
    for row in rows:
        cells = f"| {row['point']} | {row['seeds']} | {_cell(row, 'linear_top1')} | {_cell(row, 'knn_top1')} | "
        cells += f"{row['train_minutes_mean']:.1f} min |"
        cells += f" {_cell(row, 'fast_linear_top1')} |" if fast else ""
        cells += f" {_cell(row, 'ce_top1')} |" if head else ""
        cells += "".join(f" {_cell(row, key)} |" for key in validation)
        if gradients:
            curves = row.get("gradient_curves")
            last = [curves[key][-1] for key, _ in GRADIENT_KEYS] if curves else None
            cells += f" {last[0]:.3f} / {last[1]:.3f} |" if last else " - |"
        for key in shapes:
            cells += f" {row[key + '_mean']:.3f} ± {row[key + '_std']:.3f} |" if key + "_mean" in row else " - |"
        lines.append(cells)
    return lines


FAILED_LINE = "Runs that failed (not in the table): "  # opens the line under summary.md's table (docfill finds it)


def write_summary(out: Path, names: list[str] | None = None, overrides: list[tuple[str, ...]] | None = None) -> dict:
    """summary.md / summary.json from the run directories (a sweep) or run records (an exported study,
    :mod:`tunedcl.records`) under ``out``; every grid point found there when ``names`` is None. The first
    line of summary.md names the machine(s) the numbers came from."""
    failed = failed_points(out)
    if names is not None:  # a sweep: its own grid's failures
        failed = {point: seeds for point, seeds in failed.items() if point in names}
    else:  # tunedcl report: the points found, in the sweep's own order when it wrote one
        names = ordered_points(out, finished_points(out))
        overrides = [point_overrides(n) for n in names]
    rows, every_result = [], []
    for name, point in zip(names, overrides or [()] * len(names), strict=True):
        runs = list(point_runs(out / name).values())
        results = [run.results for run in runs]
        if not results:
            continue
        every_result += results
        row: dict[str, Any] = {
            "point": name,
            "overrides": dict(parse_override(o)[:2] for o in point),
            "seeds": len(results),
        }
        for key in ("linear_top1", "knn_top1", "val_linear_top1", "val_knn_top1", "ce_top1", *GEOMETRY_KEYS):
            values = [r[key] for r in results if r.get(key) is not None]
            if values:
                row[key + "_mean"], row[key + "_std"] = _mean_std(values)
        fast = [r["fast_linear_top1"] for r in results if r.get("paper_linear_top1") is not None
                and r.get("fast_linear_top1") is not None]  # only beside the paper's probe: else it is `linear`
        if fast:
            row["fast_linear_top1_mean"], row["fast_linear_top1_std"] = _mean_std(fast)
        row["train_minutes_mean"] = statistics.fmean(r.get("train_seconds", 0.0) for r in results) / 60
        curves, last = _logged_statistics([run.metrics for run in runs])
        if curves:
            row["gradient_curves"], row["last_epoch_batch"] = curves, last
        rows.append(row)
    # One line, which document markers carry over with the table (tunedcl.docfill)
    lines = [f"Machine: {_machines(every_result)}.{_probes(every_result)}", "", *_accuracy_table(rows)]
    if failed:  # a setting that collapsed or went non-finite is a result: said under the table, never dropped
        lines += ["", FAILED_LINE + "; ".join(_failures_said(failed)) + "."]
    batch_rows = [row for row in rows if row.get("last_epoch_batch")]
    if batch_rows:
        lines += [
            "",
            "Last epoch, mean over seeds of the logged batches (train.log_gradients): the share of D_i from each "
            "term and the mean and hardest positive (s+) and negative (s-) similarities.",
            "",
            "| grid point | " + " | ".join(label for _, label in BATCH_KEYS) + " |",
            "|---|" + "---:|" * len(BATCH_KEYS),
        ]
        for row in batch_rows:
            values = row["last_epoch_batch"]
            cells = [f"{values[key]:.3f}" if key in values else "-" for key, _ in BATCH_KEYS]
            lines.append(f"| {row['point']} | " + " | ".join(cells) + " |")
    out.mkdir(parents=True, exist_ok=True)
    if plot_sweep_accuracy(rows, out / "accuracy.png"):
        lines += ["", "![accuracy against the swept value](accuracy.png)"]
    if plot_sweep_gradients(rows, out / "gradients.png"):
        lines += ["", "![mean gradient from positives and negatives per epoch](gradients.png)"]
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    listed = {point: [{"seed": seed, "error": error} for seed, error in sorted(seeds.items())]  # JSON keys would be
              for point, seeds in failed.items()}  # text: a seed stays a number in a list of objects
    write_json(out / "summary.json", {"rows": rows, "failed": listed})
    return {"rows": rows, "table": "\n".join(lines), "failed": failed}


def _failures_said(failed: dict[str, dict[int, str]]) -> list[str]:
    """``point`` seeds 0, 1: what happened (the error's first clause; the whole error is in the run's
    failed.json), one item per point and error."""
    said = []
    for point, seeds in failed.items():
        by_error: dict[str, list[int]] = {}
        for seed, error in sorted(seeds.items()):
            by_error.setdefault(re.split(r"[:;]", error, maxsplit=1)[0].strip(), []).append(seed)
        said += [f"`{point}` seed{'s' * (len(s) > 1)} {', '.join(map(str, s))}: {e}" for e, s in by_error.items()]
    return said


def _results_by_seed(point_dir: Path) -> dict[int, dict[str, Any]]:
    return {seed: run.results for seed, run in point_runs(point_dir).items()}


def _reference_of(points: list[str], baseline: str, out: Path) -> dict[str, str]:
    """Each point's baseline point. ``baseline`` is one of:

    - a point: every other point is paired with it;
    - a sweep of an exported study (``supcon``, whose points are ``supcon@train.epochs=12``, ...): each other
      sweep's point is paired with the baseline sweep's point of the same grid values
      (``tcl@train.epochs=12`` - ``supcon@train.epochs=12``);
    - one grid item ``KEY=VALUE`` of a grid with several axes: each point is paired with the point that differs
      from it only in KEY, which is VALUE there (``train.batch_size=16,loss.k1=5000`` -
      ``train.batch_size=16,loss.k1=0``)."""
    if baseline in points:
        return {point: baseline for point in points if point != baseline}
    prefix = baseline + "@"
    if any(point.startswith(prefix) for point in points):
        return {point: prefix + point.rpartition("@")[2] for point in points
                if "@" in point and not point.startswith(prefix) and prefix + point.rpartition("@")[2] in points}
    key, _, value = baseline.partition("=")
    references = {}
    for point in points if value and "," not in baseline and "@" not in baseline else []:
        head, at, spelled = point.rpartition("@")
        items = [item.partition("=") for item in spelled.split(",")]
        if key in (name for name, _, _ in items):
            reference = head + at + ",".join(f"{name}={value if name == key else v}" for name, _, v in items)
            if reference != point and reference in points:
                references[point] = reference
    if not references:
        raise ValueError(f"--baseline {baseline!r} is neither a finished grid point of {out}, nor a sweep of its "
                         f"points (SWEEP@values), nor a grid item KEY=VALUE of them; its points: "
                         f"{', '.join(points) or 'none'}")
    return references


PAIRED_HEADER = "mean [95% interval] | more/less/equal | sign p | Wilcoxon p"
_METRICS = ("linear_top1", "knn_top1")


def _paired_seeds(*runs: dict[int, dict[str, Any]]) -> list[int]:
    """The seeds every one of ``runs`` finished with both metrics."""
    common = set.intersection(*(set(r) for r in runs)) if runs else set()
    return sorted(s for s in common if all(r[s].get(k) is not None for r in runs for k in _METRICS))


def _group_of(point: str, baseline: str, by_sweep: bool) -> str | None:
    """What sets ``point`` apart from its reference (its sweep, or its value of the baseline's KEY); None when
    the baseline is one point (every point is a setting of its own)."""
    if by_sweep:
        return point.rpartition("@")[0]
    key = baseline.partition("=")[0]
    head, at, spelled = point.rpartition("@")  # a study of several sweeps: a group never spans two of them
    items = [item for item in spelled.split(",") if item.partition("=")[0] == key]
    return head + at + items[0] if items and "=" in baseline else None


def _mean_interval(values: list[float]) -> str:
    """``1.23 [0.80, 1.66]``: the mean with its 95% t interval (``[-]`` with one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f} [-]"
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def _interaction_and_spread(out: Path, references: dict[str, str], groups: dict[str, list[str]],
                            baseline: str) -> list[str]:
    """The tables of how the paired difference changes across the grid and of the spread across settings.

    Interaction: within a group (a sweep, or one value of the baseline's KEY), each point's difference
    d_p(s) = x_p(s) - x_ref(p)(s) minus the first setting's, d_p(s) - d_first(s), paired by seed: whether the
    gap between the methods depends on the setting. Spread: per seed, max_p x_p(s) - min_p x_p(s) over the
    group's settings, against the same for the baseline over the same settings, paired by seed."""
    grouped = {name: points for name, points in groups.items() if len(points) > 1}
    if not grouped:
        return []
    runs = {p: _results_by_seed(out / p) for points in grouped.values() for p in points}
    runs |= {references[p]: _results_by_seed(out / references[p]) for points in grouped.values() for p in points}
    interaction = ["", "How the difference changes across the grid (the interaction): each point's difference minus "
                   "that of the first setting of its group, paired by seed (points of top-1).", "",
                   f"| grid point | against | pairs | linear: {PAIRED_HEADER} | kNN: {PAIRED_HEADER} |",
                   "|---|---|---:|" + "---|---:|---:|---:|" * 2]
    spread = ["", "Spread across settings: per seed, the best minus the worst setting's top-1 (points) over a "
              f"group's settings, its mean [95% interval] over seeds, and the group's spread minus `{baseline}`'s "
              "over the same settings, paired by seed.", "",
              f"| group | settings | pairs | `{baseline}` linear spread | linear spread | linear: {PAIRED_HEADER} | "
              f"`{baseline}` kNN spread | kNN spread | kNN: {PAIRED_HEADER} |",
              "|---|---:|---:|" + "---|---|---|---:|---:|---:|" * 2]
    failed = failed_points(out)
    left_out = []
    for name, points in grouped.items():
        first = points[0]
        for point in points[1:]:
            seeds = _paired_seeds(*(runs[p] for p in (first, references[first], point, references[point])))
            if not seeds:
                continue
            cells = [paired([runs[first][s][k] - runs[references[first]][s][k] for s in seeds],
                            [runs[point][s][k] - runs[references[point]][s][k] for s in seeds]).cells()
                     for k in _METRICS]
            interaction.append(f"| {point} | {first} | {len(seeds)} | {cells[0]} | {cells[1]} |")
        seeds = _paired_seeds(*(runs[p] for p in points), *(runs[references[p]] for p in points))
        every = {s for p in points for q in (p, references[p]) for s in (*runs[q], *failed.get(q, {}))}
        if set(every) - set(seeds):  # a seed that failed (or is missing) at one setting: said, never hidden
            left_out.append(f"`{name}` seed{'s' * (len(every - set(seeds)) > 1)} "
                            f"{', '.join(map(str, sorted(every - set(seeds))))}")
        if not seeds:
            continue
        row = [name, str(len(points)), str(len(seeds))]
        for k in _METRICS:
            ours = [max(runs[p][s][k] for p in points) - min(runs[p][s][k] for p in points) for s in seeds]
            theirs = [max(runs[references[p]][s][k] for p in points) - min(runs[references[p]][s][k] for p in points)
                      for s in seeds]
            row += [_mean_interval(theirs), _mean_interval(ours), paired(theirs, ours).cells()]
        spread.append("| " + " | ".join(row) + " |")
    if left_out:  # a collapse is the least stable outcome there is: the reader must know it is not in the spread
        spread += ["", "Left out of the interaction and the spread (a run failed, or is missing, at one of the "
                   f"group's settings or their `{baseline}` points): {'; '.join(left_out)}."]
    return interaction + spread


def write_paired(out: Path, baseline: str) -> str:
    """``OUT/paired.md``: every grid point of a sweep against the ``baseline`` point (or, in an exported study of
    several sweeps, against the baseline sweep's point with the same grid values), seed by seed
    (:mod:`tunedcl.paired`: the mean difference with its 95% t interval, seeds each way, sign and Wilcoxon
    p-values), for linear and kNN top-1. Where a sweep (or a value of the baseline's KEY) has several settings,
    two more tables: the interaction (does the difference change with the setting?) and the spread across
    settings (how much does each method move?). Returns the text."""
    points = ordered_points(out, finished_points(out))  # the grid's order: a group's first setting is its reference
    references = _reference_of(points, baseline, out)
    by_sweep = any(point.startswith(baseline + "@") for point in points)
    kind = "" if baseline in points else " at the same grid values" if by_sweep else " at the same other grid values"
    lines = [f"Each grid point minus `{baseline}`{kind}, paired by seed (points of top-1).", "",
             f"| grid point | pairs | linear: {PAIRED_HEADER} | kNN: {PAIRED_HEADER} |",
             "|---|---:|" + "---|---:|---:|---:|" * 2]  # one delimiter per column, or it renders as no table
    unpaired = [point for point in points if point not in references and point not in references.values()
                and point != baseline and not point.startswith(baseline + "@")]
    groups: dict[str, list[str]] = {}
    for point in points:
        if point not in references:
            continue
        reference, runs = _results_by_seed(out / references[point]), _results_by_seed(out / point)
        seeds = _paired_seeds(reference, runs)
        if not seeds:
            continue
        cells = [paired([reference[s][key] for s in seeds], [runs[s][key] for s in seeds]).cells() for key in _METRICS]
        lines.append(f"| {point} | {len(seeds)} | {cells[0]} | {cells[1]} |")
        group = None if baseline in points else _group_of(point, baseline, by_sweep)
        if group is not None:
            groups.setdefault(group, []).append(point)
    if unpaired:  # no baseline point with the same grid values: said, not dropped silently
        lines += ["", f"Not paired (no `{baseline}` point with the same grid values): {', '.join(unpaired)}."]
    lines += _interaction_and_spread(out, references, groups, baseline)
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "paired.md", table)
    return table


def report_dirs(dirs: Iterable[Path], baseline: str | None = None) -> list[str]:
    """Rewrite report.md of each finished run and summary.md of each sweep (and, with ``baseline``, its
    paired.md); what was written, as lines.

    Raises ValueError for a folder that holds neither.
    """
    lines = []
    for folder in map(Path, dirs):
        if (folder / "results.json").is_file():
            lines.append(f"{folder}: {write_run_report(folder)}")
        elif finished_points(folder) or failed_points(folder):  # a sweep whose every run failed: said, not refused
            lines += [write_summary(folder)["table"], f"{folder}: {folder / 'summary.md'}"]
            if baseline is not None and not finished_points(folder):  # every run failed: nothing to pair
                lines.append(f"{folder}: no paired.md (no run finished)")
            elif baseline is not None:
                lines += [write_paired(folder, baseline), f"{folder}: {folder / 'paired.md'}"]
        else:
            raise ValueError(f"{folder} holds no finished run, sweep or exported study")
    return lines
