"""Slow, obviously-correct references written loop by loop from the equations in shared/research/tcl.md.

Everything is plain float64 torch scalars in Python loops (no logsumexp, no masks, no vectorisation), so
autograd through them gives reference gradients too. Only for small N and moderate logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor


def flatten(features: Tensor) -> tuple[Tensor, list[int]]:
    """Rows sample-major, and the sample index of each row."""
    if features.ndim == 3:
        batch, views, dim = features.shape
        return features.reshape(batch * views, dim), [b for b in range(batch) for _ in range(views)]
    return features, list(range(features.shape[0]))


def positive_sets(features: Tensor, labels: Tensor | None, mask: Tensor | None) -> list[list[int]]:
    """P(i) for every row, straight from the definitions (never contains i)."""
    rows, sample = flatten(features)
    n = rows.shape[0]
    sets = []
    for i in range(n):
        members = []
        for j in range(n):
            if i == j:
                continue
            if labels is not None:
                positive = int(labels[sample[i]]) == int(labels[sample[j]])
            elif mask is not None:
                positive = bool(mask[sample[i], sample[j]]) or sample[i] == sample[j]
            else:
                positive = sample[i] == sample[j]
            if positive:
                members.append(j)
        sets.append(members)
    return sets


def _unit_rows(features: Tensor, normalize: bool) -> list[Tensor]:
    rows, _ = flatten(features.to(torch.float64))
    out = []
    for i in range(rows.shape[0]):
        row = rows[i]
        out.append(row / row.norm().clamp_min(1e-12) if normalize else row)
    return out


def _dot(a: Tensor, b: Tensor) -> Tensor:
    total = a[0] * b[0]
    for k in range(1, a.shape[0]):
        total = total + a[k] * b[k]
    return total


def tcl_anchor(s_pos: list[Tensor], s_neg: list[Tensor], *, temperature: float, k1: float = 0.0, k2: float = 1.0,
               k1_uses_temperature: bool = False) -> Tensor:
    """TCL for one anchor (tcl.md §1); k1 = 0, k2 = 1 is SupCon L_out."""
    tau = temperature
    k1_exponent = (lambda v: -v / tau) if k1_uses_temperature else (lambda v: -v)
    d = sum(torch.exp(s / tau) for s in s_pos)
    d = d + k1 * sum(torch.exp(k1_exponent(s)) for s in s_pos)
    if s_neg:
        d = d + k2 * sum(torch.exp(s / tau) for s in s_neg)
    return -sum(torch.log(torch.exp(s / tau) / d) for s in s_pos) / len(s_pos)


def supcon_in_anchor(s_pos: list[Tensor], s_neg: list[Tensor], *, temperature: float) -> Tensor:
    """SupCon L_in for one anchor: -log of the mean positive probability."""
    d = sum(torch.exp(s / temperature) for s in s_pos + s_neg)
    return -torch.log(sum(torch.exp(s / temperature) / d for s in s_pos) / len(s_pos))


def ntxent_anchor(s_pos: list[Tensor], s_neg: list[Tensor], *, temperature: float) -> Tensor:
    """NT-Xent for one anchor: each positive pair's softmax against the negatives only."""
    tau = temperature
    negatives = sum(torch.exp(s / tau) for s in s_neg) if s_neg else 0.0
    return -sum(torch.log(torch.exp(s / tau) / (torch.exp(s / tau) + negatives)) for s in s_pos) / len(s_pos)


AnchorLoss = Callable[[list[Tensor], list[Tensor]], Tensor]


def per_anchor_reference(features: Tensor, labels: Tensor | None, mask: Tensor | None, anchor_loss: AnchorLoss,
                         normalize: bool = True) -> Tensor:
    """Per-anchor losses [N] (0 for anchors without positives) of ``anchor_loss(s_pos, s_neg)``, the loss of
    one anchor from its similarities to its positives and to its negatives."""
    z = _unit_rows(features, normalize)
    n = len(z)
    positives = positive_sets(features, labels, mask)
    per_anchor = []
    for i in range(n):
        p_set = positives[i]
        if not p_set:
            per_anchor.append(torch.zeros((), dtype=torch.float64))
            continue
        n_set = [j for j in range(n) if j != i and j not in p_set]
        per_anchor.append(anchor_loss([_dot(z[i], z[p]) for p in p_set], [_dot(z[i], z[m]) for m in n_set]))
    return torch.stack(per_anchor)


def reference_losses(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    loss: str,
    temperature: float,
    k1: float = 0.0,
    k2: float = 1.0,
    k1_uses_temperature: bool = False,
    normalize: bool = True,
) -> Tensor:
    """Per-anchor losses [N] (0 for anchors without positives) for loss in tcl | supcon-out |
    supcon-in | ntxent."""
    anchors = {
        "tcl": partial(tcl_anchor, temperature=temperature, k1=k1, k2=k2, k1_uses_temperature=k1_uses_temperature),
        "supcon-out": partial(tcl_anchor, temperature=temperature),
        "supcon-in": partial(supcon_in_anchor, temperature=temperature),
        "ntxent": partial(ntxent_anchor, temperature=temperature),
    }
    if loss not in anchors:
        raise ValueError(loss)
    return per_anchor_reference(features, labels, mask, anchors[loss], normalize)


def reference_coefficients(
    similarities_pos: list[float],
    similarities_neg: list[float],
    *,
    temperature: float,
    k1: float,
    k2: float,
    k1_uses_temperature: bool = False,
) -> tuple[list[float], list[float]]:
    """c_p and c_n of tcl.md §2 for one anchor: dL_i/dz_i = sum_p c_p z_p + sum_n c_n z_n."""
    tau = temperature
    k1_scale = 1.0 / tau if k1_uses_temperature else 1.0
    d = sum(math.exp(s / tau) for s in similarities_pos)
    d += k1 * sum(math.exp(-k1_scale * s) for s in similarities_pos)
    d += k2 * sum(math.exp(s / tau) for s in similarities_neg)
    n_pos = len(similarities_pos)
    c_p = [
        (1 / tau) * (math.exp(s / tau) / d - 1 / n_pos) - k1_scale * k1 * math.exp(-k1_scale * s) / d
        for s in similarities_pos
    ]
    c_n = [(k2 / tau) * math.exp(s / tau) / d for s in similarities_neg]
    return c_p, c_n
