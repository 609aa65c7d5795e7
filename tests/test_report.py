"""The sweep summary from hand-made run directories (no training): mean ± std over seeds, the gradient and
geometry columns, and the plots of one and two swept keys."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tunedcl.report import _swept_keys, plot_sweep_accuracy, write_summary

pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install 'tunedcl[dev]')")


def fake_run(run_dir: Path, linear: float, knn: float, gradients: list[float] | None = None, **extra: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"linear_top1": linear, "knn_top1": knn,
                                                      "train_seconds": 30.0, **extra}))
    lines = [json.dumps({"epoch": e + 1, "step": 10 * (e + 1), "loss": 1.0, "grad_from_positives": g,
                         "grad_from_negatives": g / 2, "share_k1": g / 10}) for e, g in enumerate(gradients or [])]
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))


def test_summary_holds_mean_std_gradient_curves_and_geometry(tmp_path: Path) -> None:
    fake_run(tmp_path / "loss.k1=0" / "seed0", 80.0, 70.0, [2.0, 1.0], alignment=0.5, uniformity=-3.0, tolerance=0.6)
    fake_run(tmp_path / "loss.k1=0" / "seed1", 82.0, 74.0, [4.0, 3.0, 9.0], alignment=0.7, uniformity=-3.2,
             tolerance=0.4)
    summary = write_summary(tmp_path)
    (row,) = summary["rows"]
    assert row["linear_top1_mean"] == 81.0 and row["linear_top1_std"] == pytest.approx(statistics.stdev([80, 82]))
    assert row["knn_top1_mean"] == 72.0
    # Curves cover the epochs every seed logged (2 here), averaged over seeds.
    assert row["gradient_curves"]["grad_from_positives"] == [3.0, 2.0]
    assert row["gradient_curves"]["grad_from_negatives"] == [1.5, 1.0]
    assert row["tolerance_mean"] == pytest.approx(0.5)
    assert row["last_epoch_batch"] == {"share_k1": pytest.approx(0.2)}  # epoch 2: (0.1 + 0.3) / 2
    table = (tmp_path / "summary.md").read_text()
    assert "| loss.k1=0 | 2 | 81.00 ± 1.41 | 72.00 ± 2.83 | 0.5 min | 2.000 / 1.000 | 0.600 ± 0.141 |" in table
    assert (tmp_path / "gradients.png").is_file()
    assert "| loss.k1=0 | - | 0.200 | - |" in table


def test_accuracy_plot_of_one_and_two_swept_keys(tmp_path: Path) -> None:
    def row(overrides: dict[str, str], value: float) -> dict:
        return {"point": ",".join(f"{k}={v}" for k, v in overrides.items()), "overrides": overrides,
                "linear_top1_mean": value, "linear_top1_std": 0.5, "knn_top1_mean": value - 3, "knn_top1_std": 0.4}

    k1 = [row({"loss.k1": v}, 80 + i) for i, v in enumerate(["0", "10", "100000"])]
    assert _swept_keys(k1) == ["loss.k1"] and plot_sweep_accuracy(k1, tmp_path / "k1.png")
    figure2 = [row({"loss.method": m, "data.augment": a}, 80 + i)
               for i, (m, a) in enumerate((m, a) for m in ("supcon", "tcl") for a in ("crop-flip", "simaug"))]
    assert _swept_keys(figure2) == ["loss.method", "data.augment"]
    assert plot_sweep_accuracy(figure2, tmp_path / "figure2.png") and (tmp_path / "figure2.png").is_file()
    # A key fixed across the grid (one value) is not an axis; three swept keys have no plot.
    fixed = [row({"loss.k1": "50000", "loss.k2": v}, 80) for v in ("1", "3")]
    assert _swept_keys(fixed) == ["loss.k2"]
    mixed = [row({}, 80), *k1]  # a "base" point next to a k1 grid: plotted without it, no KeyError
    assert plot_sweep_accuracy(mixed, tmp_path / "mixed.png")
    three = [row({"a.x": str(i), "a.y": str(i), "a.z": str(i)}, 80) for i in range(2)]
    assert not plot_sweep_accuracy(three, tmp_path / "three.png") and not (tmp_path / "three.png").exists()


def test_report_orders_points_numerically_or_as_the_sweep_did(tmp_path: Path) -> None:
    for point in ("loss.k1=100000", "loss.k1=50000", "loss.k1=0"):
        fake_run(tmp_path / point / "seed0", 80.0, 70.0)
    assert [r["point"] for r in write_summary(tmp_path)["rows"]] == ["loss.k1=0", "loss.k1=50000", "loss.k1=100000"]
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    (tmp_path / "summary.json").write_text(json.dumps({"rows": rows[::-1]}))  # a sweep's own grid order wins
    assert [r["point"] for r in write_summary(tmp_path)["rows"]] == ["loss.k1=100000", "loss.k1=50000", "loss.k1=0"]
