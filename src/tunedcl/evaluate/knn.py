"""Weighted k-nearest-neighbour classification on cosine similarity (Wu et al., 2018).

The classifier that needs no training: every test point votes with its k most similar training points,
each weighted by ``exp(similarity / T)``. It is the standard companion of the linear probe in
contrastive learning (InstDisc, solo-learn, lightly use k = 200, T = 0.1), and it checks the geometry the
loss actually optimises, cosine similarity, where a linear probe can rescale dimensions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl._checks import check_int, check_real
from tunedcl.evaluate.accuracy import add_hits, percent, topk_hits
from tunedcl.evaluate.checks import (
    check_feature_splits,
    check_features,
    check_same_dim,
    check_train_features,
    resolve_classes,
)


@dataclass(frozen=True)
class KNNResult:
    """Weighted-kNN test accuracy in percent (top-5 is 100 when there are at most 5 classes)."""

    top1: float
    top5: float


def _neighbours(sim: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Similarities and indices of the k most similar columns of every row, most similar first.

    Equal similarities go to the lower training index, so the neighbour set is well defined.
    ``topk`` leaves the order of ties to the implementation, which matters only for rows where ties
    straddle the k-th place; those rows (rare outside duplicated data) are redone with a stable sort.
    """
    values, indices = sim.topk(k, dim=1)
    ambiguous = (sim >= values[:, -1:]).sum(dim=1) > k
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().flatten()
        # A stable descending sort keeps equal similarities in increasing index order.
        order = torch.sort(sim[rows], dim=1, descending=True, stable=True).indices[:, :k]
        indices[rows] = order
        values[rows] = sim[rows].gather(1, order)
    return values, indices


def _check_options(k: object, temperature: object, batch_size: object) -> tuple[int, float, int]:
    """``k`` >= 1, ``temperature`` > 0 and ``batch_size`` >= 1, checked in that order."""
    return (
        check_int("k", k, low=1),
        check_real("temperature", temperature, low=0.0, low_inclusive=False),
        check_int("batch_size", batch_size, low=1),
    )


def _score_chunks(
    train: Tensor, labels: Tensor, queries: Tensor, k: int, temperature: float, num_classes: int, batch_size: int
) -> Iterator[tuple[int, Tensor]]:
    """``(start, scores)`` for every ``batch_size`` queries, ``scores`` ``[chunk, num_classes]``.

    ``train`` is L2-normalised already; each chunk of queries is moved to its device and normalised there,
    so memory is one chunk of ``batch_size x n_train`` similarities at a time.
    """
    for start in range(0, queries.shape[0], batch_size):
        chunk = F.normalize(queries[start : start + batch_size].to(train.device), dim=1)
        yield start, _scores(train, labels, chunk, k, temperature, num_classes)


def _scores(train: Tensor, labels: Tensor, queries: Tensor, k: int, temperature: float, num_classes: int) -> Tensor:
    """Class scores of normalised ``queries`` against normalised ``train``: ``[n_queries, num_classes]``."""
    sim = queries @ train.T
    values, indices = _neighbours(sim, min(k, train.shape[0]))
    # Shifting by the nearest neighbour's similarity scales a row by a constant, which changes no
    # ranking, and keeps exp() finite for any temperature (exp(1 / 0.001) would overflow float32).
    weights = torch.exp((values - values[:, :1]) / temperature)
    scores = torch.zeros(queries.shape[0], num_classes, device=queries.device, dtype=weights.dtype)
    return scores.scatter_add_(1, labels[indices], weights)


def knn_scores(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 1024,
) -> Tensor:
    """Weighted-kNN class scores of every query: ``[n_queries, num_classes]`` float32.

    Features are L2-normalised; a query's neighbours are the ``k`` training rows of highest cosine
    similarity ``s`` (ties to the lower training index; ``k`` is clipped to the training size), and
    class c scores ``sum over neighbours of class c of exp(s / temperature)``, divided by
    ``exp(s_max / temperature)`` (``s_max`` the query's nearest similarity) so that it cannot overflow;
    that factor is the same for every class of a query, so rankings are those of the plain sum.

    Queries are processed ``batch_size`` at a time: memory is ``batch_size x n_train`` similarities
    (about 250 MB at the defaults and 60k training rows) on the device of ``train_features``.

    Args:
        train_features: ``[n_train, D]`` floating features of the labelled set.
        train_labels: ``[n_train]`` integer class indices.
        query_features: ``[n_queries, D]`` floating features to classify.
        k: neighbours per query (>= 1).
        temperature: weight sharpness (> 0); smaller favours the nearest neighbours more.
        num_classes: score columns; ``None`` means the largest training label + 1.
        batch_size: queries per chunk.

    Example:
        >>> import torch
        >>> train = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); labels = torch.tensor([0, 1])
        >>> knn_scores(train, labels, torch.tensor([[2.0, 0.1]]), k=1).argmax(dim=1)
        tensor([0])
    """
    train, labels = check_train_features(train_features, train_labels)
    k, temperature, batch_size = _check_options(k, temperature, batch_size)
    queries = check_features("query_features", query_features)
    check_same_dim("train_features", train, "query_features", queries)
    classes = resolve_classes(num_classes, [("train_labels", labels)])
    out = torch.empty(queries.shape[0], classes, device=train.device)
    train = F.normalize(train, dim=1)
    for start, scores in _score_chunks(train, labels, queries, k, temperature, classes, batch_size):
        out[start : start + scores.shape[0]] = scores
    return out


def knn_classify(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    batch_size: int = 1024,
) -> KNNResult:
    """Top-1 and top-5 test accuracy (percent) of the weighted kNN classifier of ``knn_scores``.

    The prediction is the class of highest score, ties to the lower class index; the defaults k = 200,
    T = 0.1 are those of Wu et al. (2018) and of solo-learn's and lightly's kNN monitors.

    Args:
        train_features, test_features: ``[n, D]`` floating features (e.g. from ``extract_features``).
        train_labels, test_labels: ``[n]`` integer class indices.
        k, temperature, batch_size: as in ``knn_scores``.
        num_classes: ``None`` means the largest label in either split + 1.

    Example:
        >>> import torch
        >>> x = torch.randn(100, 4); y = (x[:, 0] > 0).long()
        >>> knn_classify(x, y, x, y, k=1).top1
        100.0
    """
    train, labels, test, y_test, classes = check_feature_splits(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    k, temperature, batch_size = _check_options(k, temperature, batch_size)
    train = F.normalize(train, dim=1)
    hits = [0, 0]
    for start, scores in _score_chunks(train, labels, test, k, temperature, classes, batch_size):
        hits = add_hits(hits, topk_hits(scores, y_test[start : start + scores.shape[0]], (1, 5)))
    return KNNResult(top1=percent(hits[0], test.shape[0]), top5=percent(hits[1], test.shape[0]))
