"""Paired statistics (tunedcl.paired) against SciPy, and the paired table of a sweep (tunedcl report
--baseline) from hand-made run directories, including an A/A control."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from tunedcl.cli import main
from tunedcl.paired import paired, sign_test_p, t_quantile_975, wilcoxon_p
from tunedcl.report import write_paired

stats = pytest.importorskip("scipy.stats", reason="SciPy comes with scikit-learn (pip install 'tunedcl[dev]')")


@pytest.mark.parametrize("df", [1, 2, 3, 5, 9, 17, 30, 31, 45, 100, 1000])
def test_t_quantile_matches_scipy(df: int) -> None:
    assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)


@pytest.mark.parametrize("wins,losses", [(0, 0), (3, 0), (5, 5), (9, 1), (2, 7), (12, 3)])
def test_sign_test_matches_scipy(wins: int, losses: int) -> None:
    expected = 1.0 if wins + losses == 0 else stats.binomtest(wins, wins + losses, 0.5).pvalue
    assert sign_test_p(wins, losses) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_wilcoxon_matches_scipy_exact(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(3, 12)
    differences = [round(rng.gauss(0.3, 1.0), 1) for _ in range(n)]  # rounding makes ties
    nonzero = [d for d in differences if d != 0]
    ties = len({abs(d) for d in nonzero}) < len(nonzero)
    if not nonzero:
        return
    expected = stats.wilcoxon(nonzero, method="exact" if not ties else "approx", correction=True).pvalue
    got = wilcoxon_p(differences)
    assert got == pytest.approx(expected, rel=1e-9) if not ties else abs(got - expected) < 0.08


def test_paired_mean_interval_and_counts() -> None:
    a, b = [80.0, 81.0, 79.5, 80.5, 80.0], [80.5, 81.5, 79.5, 81.5, 80.25]
    result = paired(a, b)
    differences = [y - x for x, y in zip(a, b, strict=True)]
    sem = stats.sem(differences)
    low, high = stats.t.interval(0.95, len(differences) - 1, loc=sum(differences) / 5, scale=sem)
    assert (result.n, result.wins, result.losses, result.ties) == (5, 4, 0, 1)
    assert result.mean == pytest.approx(0.45) and result.low == pytest.approx(low, abs=1e-3)
    assert result.high == pytest.approx(high, abs=1e-3)
    one = paired([1.0], [2.0])
    assert one.mean == 1.0 and math.isnan(one.low) and "[-]" in one.cells()
    with pytest.raises(ValueError, match="one length"):
        paired([1.0, 2.0], [1.0])


def fake_results(run_dir: Path, linear: float, knn: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({"linear_top1": linear, "knn_top1": knn}))


def test_a_sweep_s_points_against_a_baseline_with_an_a_a_control(tmp_path: Path, capsys) -> None:
    rng = random.Random(0)
    for seed in range(5):
        shared = rng.gauss(0, 0.3)  # what a seed does to every configuration alike
        fake_results(tmp_path / "loss.method=tcl-ssl" / f"seed{seed}", 80 + shared, 70 + shared)
        # A/A: the same function computed another way (the dense loss path): equal up to rounding
        fake_results(tmp_path / "loss.chunk_size=0" / f"seed{seed}", 80 + shared + 0.01 * (-1) ** seed,
                     70 + shared)
        fake_results(tmp_path / "loss.method=simclr" / f"seed{seed}", 78 + shared + rng.gauss(0, 0.1),
                     66 + shared)
    table = write_paired(tmp_path, "loss.method=tcl-ssl")
    assert (tmp_path / "paired.md").read_text() == table
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| loss.")}
    assert set(rows) == {"loss.chunk_size=0", "loss.method=simclr"}
    assert "| 5 | -2." in rows["loss.method=simclr"] and "0/5/0 | 0.06 | 0.06" in rows["loss.method=simclr"]
    assert "+0.00 [" in rows["loss.chunk_size=0"]  # A/A: no effect, its interval straddles 0
    assert "interaction" not in table and "Spread" not in table  # each point is a setting of its own
    with pytest.raises(ValueError, match=r"--baseline 'nope' is neither a finished grid point"):
        write_paired(tmp_path, "nope")
    assert main(["report", str(tmp_path), "--baseline", "loss.method=tcl-ssl"]) == 0
    assert "paired.md" in capsys.readouterr().out
    assert main(["report", str(tmp_path), "--baseline", "nope"]) == 2
