r"""The gradient response of TCL and SupCon (tcl.md §2): per-pair coefficients and their magnitudes.

For anchor i with s_ij = z_i . z_j, the loss's gradient w.r.t. z_i is

    dL_i/dz_i = sum_{p in P(i)} c_p z_p + sum_{n in N(i)} c_n z_n
    c_p = (1/tau)(e^{s_p/tau}/D_i - 1/|P(i)|) - a k1 e^{-a' s_p}/D_i        (pulls: c_p < 0 when it attracts)
    c_n = (k2/tau) e^{s_n/tau}/D_i                                          (pushes: always > 0)

with a = 1, a' = 1 in the paper's code (no temperature in the k1 term), a = a' = 1/tau in the tempered
form. k1 = 0, k2 = 1 is SupCon. The coefficients are dL_i/ds_ij exactly (checked against autograd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Coefficients:
    """Per-pair coefficients of a batch (rows: anchors)."""

    values: Tensor  # [N, N] c_ij (0 on the diagonal)
    positive: Tensor  # [N, N] bool, j in P(i)
    negative: Tensor  # [N, N] bool, j in N(i)
    similarity: Tensor  # [N, N] s_ij
    z: Tensor  # [N, D] the (normalised) embeddings


def gradient_coefficients(
    features: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.1,
    k1: float = 5000.0,
    k2: float = 1.0,
    k1_uses_temperature: bool = False,
    normalize: bool = True,
) -> Coefficients:
    """c_ij for every anchor i and contrast row j of ``features [N, D]`` with ``labels [N]``, in float64.

    Anchors without a positive get zero coefficients.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"features must be [N, D] with labels [N]; got features {tuple(features.shape)} and labels "
            f"{tuple(labels.shape)}"
        )
    if temperature <= 0 or k1 < 0 or k2 <= 0:
        raise ValueError(f"need temperature > 0, k1 >= 0, k2 > 0; got {temperature}, {k1}, {k2}")
    z = features.detach().double()
    z = F.normalize(z, dim=1) if normalize else z
    labels = labels.to(z.device)
    s = z @ z.T
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    negative = ~positive & ~eye
    a = 1.0 / temperature if k1_uses_temperature else 1.0
    log_k2 = math.log(k2)
    main = torch.where(positive, s / temperature, torch.where(negative, s / temperature + log_k2, -math.inf))
    log_d = torch.logsumexp(main, dim=1)
    if k1 > 0:
        pull = torch.where(positive, -a * s + math.log(k1), -math.inf)
        log_d = torch.logaddexp(log_d, torch.logsumexp(pull, dim=1))
    n_pos = positive.sum(1, keepdim=True).clamp_min(1)
    weight = torch.exp(s / temperature - log_d[:, None])
    c_pos = (weight - 1.0 / n_pos) / temperature
    if k1 > 0:
        c_pos = c_pos - a * torch.exp(-a * s + math.log(k1) - log_d[:, None])
    c_neg = k2 * weight / temperature
    has_pos = positive.any(1, keepdim=True)
    values = torch.where(positive, c_pos, torch.where(negative, c_neg, 0.0)) * has_pos
    return Coefficients(values=values, positive=positive, negative=negative, similarity=s, z=z)


def mean_gradient_magnitudes(coefficients: Coefficients) -> dict[str, float]:
    """Mean over anchors (with a positive) of the tangential gradient from positives and from negatives.

    The gradient from positives is g_P = sum_p c_p z_p; only its tangential part g_P - (g_P . z_i) z_i can
    turn z_i on the unit sphere, so that is what is measured (likewise for negatives).
    """
    c, z = coefficients.values, coefficients.z
    anchors = coefficients.positive.any(1)

    def tangential(mask: Tensor) -> Tensor:
        g = (c * mask) @ z
        g = g - (g * z).sum(1, keepdim=True) * z
        return g.norm(dim=1)[anchors]

    return {
        "grad_from_positives": float(tangential(coefficients.positive).mean()) if anchors.any() else 0.0,
        "grad_from_negatives": float(tangential(coefficients.negative).mean()) if anchors.any() else 0.0,
    }


def denominator_shares(
    features: Tensor, labels: Tensor, *, temperature: float = 0.1, k1: float = 5000.0, k2: float = 1.0,
    k1_uses_temperature: bool = False, normalize: bool = True,
) -> dict[str, float]:
    """Mean share of D_i from its three terms (positives, the k1 pull, negatives), and the mean and
    hardest positive and negative similarities (hardest positive: lowest s; hardest negative: highest)."""
    coefficients = gradient_coefficients(features, labels, temperature=temperature, k1=k1, k2=k2,
                                         k1_uses_temperature=k1_uses_temperature, normalize=normalize)
    s, pos, neg = coefficients.similarity, coefficients.positive, coefficients.negative
    a = 1.0 / temperature if k1_uses_temperature else 1.0
    anchors = pos.any(1)
    terms = torch.stack([
        torch.where(pos, torch.exp(s / temperature), 0.0).sum(1),
        k1 * torch.where(pos, torch.exp(-a * s), 0.0).sum(1),
        k2 * torch.where(neg, torch.exp(s / temperature), 0.0).sum(1),
    ], dim=1)[anchors]
    shares = (terms / terms.sum(1, keepdim=True)).mean(0)
    has_neg = neg[anchors].any(1)
    return {
        "share_positives": float(shares[0]),
        "share_k1": float(shares[1]),
        "share_negatives": float(shares[2]),
        "mean_positive_similarity": float(s[pos].mean()),
        "hardest_positive_similarity": float(torch.where(pos, s, math.inf).amin(1)[anchors].mean()),
        "mean_negative_similarity": float(s[neg].mean()) if neg.any() else float("nan"),
        "hardest_negative_similarity": float(torch.where(neg, s, -math.inf).amax(1)[anchors][has_neg].mean())
        if has_neg.any() else float("nan"),
    }


def batch_gradient_statistics(embeddings: Tensor, labels: Tensor | None, terms: dict[str, Any]) -> dict[str, float]:
    """The gradient response of one training batch: :func:`mean_gradient_magnitudes` and
    :func:`denominator_shares` of ``embeddings [B, V, D]`` under the TCL ``terms`` a loss family gives
    (``ContrastiveLoss.gradient_terms()``). ``labels=None``: instance positives (each image its own id)."""
    batch, views, dim = embeddings.shape
    ids = labels if labels is not None else torch.arange(batch, device=embeddings.device)
    rows, row_labels = embeddings.reshape(-1, dim).cpu(), ids.repeat_interleave(views).cpu()
    stats = mean_gradient_magnitudes(gradient_coefficients(rows, row_labels, **terms))
    stats.update(denominator_shares(rows, row_labels, **terms))
    return stats
