"""Reports from run directories: report.md with the results and a loss-curve PNG (matplotlib, optional)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunedcl.train.rundir import MetricsLog, atomic_write_text


def _plot_loss_curve(records: list[dict[str, Any]], path: Path, title: str) -> bool:
    """Loss (and kNN top-1 when logged) per epoch; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
    axis.grid(alpha=0.3)
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
    return True


def write_run_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.md`` (and ``loss_curve.png``) from results.json and metrics.jsonl."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
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
        ("ce_top1", "cross-entropy classifier top-1 (%)"),
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
