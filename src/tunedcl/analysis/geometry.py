r"""Embedding geometry of a trained encoder.

alignment  (Wang & Isola 2020)  E_{(i,j) positive} ||z_i - z_j||^alpha          (alpha = 2; lower: tighter)
uniformity (Wang & Isola 2020)  log E_{i != j} exp(-t ||z_i - z_j||^2)            (t = 2; lower: more uniform)
tolerance  (Wang & Liu 2021)    E_{i != j, same class} z_i . z_j                   (higher: classes kept together)

All on L2-normalised embeddings; pairs are all ordered pairs of distinct rows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _pairs(features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if features.ndim != 2 or labels.shape != (features.shape[0],) or features.shape[0] < 2:
        raise ValueError(f"need features [N, D] (N >= 2) with labels [N]; got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)}")
    z = F.normalize(features.detach().double(), dim=1)
    labels = labels.to(z.device)
    distinct = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    same = (labels[:, None] == labels[None, :]) & distinct
    return z, distinct, same


def _squared_distances(z: Tensor) -> Tensor:
    """||z_i - z_j||^2 = 2 - 2 z_i . z_j for unit vectors (exact where cdist's matmul path is not)."""
    return (2.0 - 2.0 * (z @ z.T)).clamp_min(0.0)


def alignment(features: Tensor, labels: Tensor, alpha: float = 2.0) -> float:
    z, _, same = _pairs(features, labels)
    squared = _squared_distances(z)
    return float(squared[same].pow(alpha / 2).mean()) if same.any() else float("nan")


def uniformity(features: Tensor, labels: Tensor | None = None, t: float = 2.0) -> float:
    labels = torch.zeros(features.shape[0], dtype=torch.long) if labels is None else labels
    z, distinct, _ = _pairs(features, labels)
    squared = _squared_distances(z)[distinct]
    return float(torch.logsumexp(-t * squared, dim=0)) - math.log(squared.numel())


def tolerance(features: Tensor, labels: Tensor) -> float:
    z, _, same = _pairs(features, labels)
    return float((z @ z.T)[same].mean()) if same.any() else float("nan")


def geometry(features: Tensor, labels: Tensor) -> dict[str, float]:
    """Alignment, uniformity and tolerance of ``features [N, D]`` with class ``labels [N]``."""
    return {
        "alignment": alignment(features, labels),
        "uniformity": uniformity(features, labels),
        "tolerance": tolerance(features, labels),
    }
