r"""Paired statistics for two configurations run with the same seeds: the mean difference with its 95% t
interval, the seeds each way, and two-sided sign and Wilcoxon signed-rank p-values (exact for small n).

Runs with the same seed share initialisation, data order and augmentation, so the difference of a pair has
far less noise than the difference of two means. For n pairs with differences d_i:

    mean = (1/n) sum d_i,   interval = mean -+ t_{0.975, n-1} s / sqrt(n)     (s: sample standard deviation)
    sign test:  P(at most min(wins, losses) of the n' non-tied pairs go one way | p = 1/2), doubled
    Wilcoxon:   W+ = sum of the ranks of |d_i| over d_i > 0 (zeros dropped, ties get their mean rank);
                the exact null distribution of W+ over all 2^n' sign patterns, two-sided

Pure Python: no SciPy (the test suite checks these against it).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# t_{0.975, df} for df = 1..30 (standard tables); above 30 the Cornish-Fisher expansion is within 1e-4.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_Z975 = 1.959963984540054
EXACT_WILCOXON_UP_TO = 25  # pairs; above, the normal approximation with a tie correction


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be an integer >= 1; got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test of ``wins`` against ``losses`` (ties left out): 1.0 with no pair."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the differences (zeros dropped); 1.0 with none left."""
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    if n == 0:
        return 1.0
    doubled_ranks = _doubled_ranks([abs(d) for d in nonzero])  # 2 x rank: mean ranks of ties stay integers
    w_plus = sum(r for r, d in zip(doubled_ranks, nonzero, strict=True) if d > 0)
    if n <= EXACT_WILCOXON_UP_TO:
        counts = _sign_pattern_sums(doubled_ranks)
        total = 2**n
        lower = sum(c for s, c in counts.items() if s <= w_plus) / total
        upper = sum(c for s, c in counts.items() if s >= w_plus) / total
        return min(1.0, 2 * min(lower, upper))
    mean = sum(doubled_ranks) / 2
    variance = sum(r * r for r in doubled_ranks) / 4
    z = (abs(w_plus - mean) - 0.5) / math.sqrt(variance) if variance else 0.0
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def _doubled_ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0] * len(values)
    start = 0
    while start < len(order):
        stop = start
        while stop + 1 < len(order) and values[order[stop + 1]] == values[order[start]]:
            stop += 1
        for position in range(start, stop + 1):
            ranks[order[position]] = start + stop + 2  # 2 x the mean of ranks start+1 .. stop+1
        start = stop + 1
    return ranks


def _sign_pattern_sums(ranks: list[int]) -> dict[int, int]:
    """How many of the 2^n sign patterns give each sum of the positive ranks."""
    counts = {0: 1}
    for rank in ranks:
        grown: dict[int, int] = dict(counts)
        for total, count in counts.items():
            grown[total + rank] = grown.get(total + rank, 0) + count
        counts = grown
    return counts


@dataclass(frozen=True)
class Paired:
    """B - A over paired seeds."""

    n: int
    mean: float
    low: float  # 95% t interval (nan with one pair)
    high: float
    wins: int  # pairs where B > A
    losses: int  # pairs where B < A
    ties: int
    sign_p: float
    wilcoxon_p: float

    def cells(self) -> str:
        """``+0.12 [-0.05, +0.29] | 3/2/0 | 1.00 | 0.81``: mean [interval] | wins/losses/ties | sign p | Wilcoxon p."""
        interval = f"[{self.low:+.2f}, {self.high:+.2f}]" if self.n > 1 else "[-]"
        return (f"{self.mean:+.2f} {interval} | {self.wins}/{self.losses}/{self.ties} | {self.sign_p:.2f} | "
                f"{self.wilcoxon_p:.2f}")


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired statistics of ``b - a`` (the i-th entries of ``a`` and ``b`` share a seed)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values must be two non-empty sequences of one length; got {len(a)} and {len(b)}")
    differences = [y - x for x, y in zip(a, b, strict=True)]
    n, mean = len(differences), statistics.fmean(differences)
    half = t_quantile_975(n - 1) * statistics.stdev(differences) / math.sqrt(n) if n > 1 else math.nan
    wins, losses = sum(d > 0 for d in differences), sum(d < 0 for d in differences)
    return Paired(n=n, mean=mean, low=mean - half, high=mean + half, wins=wins, losses=losses,
                  ties=n - wins - losses, sign_p=sign_test_p(wins, losses), wilcoxon_p=wilcoxon_p(differences))
