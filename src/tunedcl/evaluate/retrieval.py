"""Retrieval metrics on cosine similarity: every item queries all the others of the same set.

MAP@R (Musgrave et al., 2020, "A Metric Learning Reality Check") rewards ranking all R items of the
query's class first, not just one; Recall@k is the usual metric-learning one (the share of queries with
at least one item of their class among the k nearest). Both complement classification accuracy when
comparing embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl._checks import bad_argument, check_int
from tunedcl.evaluate.checks import check_features, check_labels


@dataclass(frozen=True)
class RetrievalResult:
    """Leave-one-out retrieval metrics in percent, averaged over queries that have a relevant item.

    Attributes:
        map_at_r: mean average precision at R, R the number of other items of the query's class.
        recall_at_k: ``{k: percent of queries with a same-class item among their k nearest}``.
        queries: how many queries counted (those whose class has at least one other item).
    """

    map_at_r: float
    recall_at_k: dict[int, float] = field(default_factory=dict)
    queries: int = 0


def retrieval_metrics(
    features: Tensor, labels: Tensor, *, ks: Sequence[int] = (1, 5), batch_size: int = 1024
) -> RetrievalResult:
    """MAP@R and Recall@k of every item against all the others, by cosine similarity.

    For query q with R other items of its class, ranked by similarity (q itself excluded; equal
    similarities in ``topk``'s order): ``AP@R = (1/R) sum_{i <= R} rel(i) * P(i)``, ``P(i)`` the share of
    relevant items among the first i. Memory is ``batch_size x n`` similarities.

    Args:
        features: ``[n, D]`` floating features (e.g. the test split's).
        labels: ``[n]`` integer class indices.
        ks: the k of Recall@k, each >= 1.
        batch_size: queries per chunk.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> retrieval_metrics(x, torch.tensor([0, 0, 1, 1]), ks=(1,)).map_at_r
        100.0
    """
    x = check_features("features", features)
    y = check_labels("labels", labels, x.shape[0], "features").to(x.device)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise bad_argument("ks", ks, "a non-empty sequence of ints >= 1")
    ks = [check_int("ks", k, low=1) for k in ks]
    batch_size = check_int("batch_size", batch_size, low=1)
    n = x.shape[0]
    x = F.normalize(x, dim=1)
    relevant_total = torch.bincount(y)[y] - 1  # R of every item: others of its class
    depth = min(n - 1, max(int(relevant_total.max()) if n else 0, *ks))
    ap_sum, counted = 0.0, 0
    recall_hits = dict.fromkeys(ks, 0)
    for start in range(0, n if depth > 0 else 0, batch_size):
        stop = min(start + batch_size, n)
        rows = torch.arange(start, stop, device=x.device)
        sim = x[start:stop] @ x.T
        sim[rows - start, rows] = -torch.inf  # a query is not its own result
        ranked = sim.topk(depth, dim=1).indices
        rel = y[ranked] == y[start:stop, None]
        r = relevant_total[start:stop]
        valid = r > 0
        position = torch.arange(1, depth + 1, device=x.device)
        precision = rel.cumsum(dim=1) / position
        within_r = position[None, :] <= r[:, None]
        ap = (precision * rel * within_r).sum(dim=1) / r.clamp_min(1)
        ap_sum += float(ap[valid].sum())
        counted += int(valid.sum())
        for k in ks:
            recall_hits[k] += int((rel[:, :k].any(dim=1) & valid).sum())
    if counted == 0:
        return RetrievalResult(map_at_r=0.0, recall_at_k=dict.fromkeys(ks, 0.0), queries=0)
    return RetrievalResult(
        map_at_r=100.0 * ap_sum / counted,
        recall_at_k={k: 100.0 * hits / counted for k, hits in recall_hits.items()},
        queries=counted,
    )
