"""Counting correct predictions: top-k hits with a defined tie rule, and percentages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def topk_hits(scores: Tensor, labels: Tensor, ks: Sequence[int]) -> list[int]:
    """For each k, how many rows have their label among the k highest scores.

    Ties between equal scores go to the lower class index (the rule of ``argmax``), so the count is
    well defined: the label's rank is the number of classes that beat it, a class beating it when its
    score is higher, or equal with a lower index. With k >= the number of classes every row is a hit.
    """
    s_y = scores.gather(1, labels.view(-1, 1))
    lower = torch.arange(scores.shape[1], device=scores.device).view(1, -1) < labels.view(-1, 1)
    rank = (scores > s_y).sum(dim=1) + ((scores == s_y) & lower).sum(dim=1)
    return [int((rank < k).sum()) for k in ks]


def add_hits(total: list[int], hits: list[int]) -> list[int]:
    """Element-wise sum of two hit counts (one per k), for accumulating over chunks."""
    return [a + b for a, b in zip(total, hits, strict=True)]


def percent(hits: int, total: int) -> float:
    """``100 * hits / total``; 0 for an empty set (nothing to be right about)."""
    return 100.0 * hits / total if total else 0.0
