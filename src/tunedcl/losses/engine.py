"""What every contrastive loss here shares: similarities, self-exclusion, anchors without positives,
reduction, and the compute dtype.

A loss family supplies a *row loss* for the dense autograd path (given one row of logits ``s_ij / tau``
per anchor, its own column at -inf, and the positive pairs, return one loss per anchor) and a *row
kernel* for the chunked path (:mod:`tunedcl.losses.chunked`). The dense path only ever hands the row
loss anchors with at least one positive, so no family has to guard against empty positive sets (the
cause of NaN in the reference code).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl.losses.chunked import RowKernel, per_anchor_chunked
from tunedcl.losses.inputs import Positives, prepare
from tunedcl.losses.pairs import Pairs, exclude_self_and_pair

# (logits [m, n] with each anchor's own column at -inf, its positive pairs) -> per-anchor loss [m]
RowLoss = Callable[[Tensor, Pairs], Tensor]


def per_anchor_dense(
    anchors: Tensor,
    contrast: Tensor,
    anchor_ids: Tensor,
    contrast_ids: Tensor,
    self_index: Tensor,
    positives: Positives,
    temperature: float,
    row_loss: RowLoss,
) -> tuple[Tensor, Tensor]:
    """Per-anchor losses of ``anchors [m, D]`` against ``contrast [n, D]`` by plain autograd over the
    whole ``[m, n]`` block (supports double backward; the chunked path is faster and lighter).

    ``self_index[a]`` is the position of anchor ``a`` in the contrast set (never its own positive or
    negative), or -1 if it is not there. Returns ``(losses [m], has_positive [m])``; anchors without
    a positive get a loss of exactly 0 and no gradient.
    """
    # Scaling the [m, D] anchors instead of the [m, n] product saves a full pass over the logits.
    logits = (anchors * (1.0 / temperature)) @ contrast.T
    pairs = exclude_self_and_pair(logits, positives, anchor_ids, contrast_ids, self_index)
    has_pos = pairs.has_pos
    if bool(has_pos.all()):
        return row_loss(logits, pairs), has_pos
    # Anchors without positives are dropped before any log-sum-exp: an all -inf set would make the
    # backward pass produce NaN even where the forward value is masked out.
    keep = has_pos.nonzero().squeeze(1)
    renumber = torch.cumsum(has_pos, 0) - 1
    kept_pairs = Pairs(
        rows=renumber[pairs.rows], cols=pairs.cols, counts=pairs.counts[keep], size=keep.numel()
    )
    kept = row_loss(logits[keep], kept_pairs)
    losses = logits.new_zeros(anchors.shape[0]).index_put((keep,), kept)
    return losses, has_pos


def reduce(losses: Tensor, has_pos: Tensor, reduction: str) -> Tensor:
    """``mean`` over anchors with a positive (0 if none has one), ``sum``, or ``none``."""
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    return total / has_pos.sum().clamp_min(1)


def compute(
    features: Tensor,
    labels: Tensor | None,
    mask: Tensor | None,
    *,
    temperature: float,
    normalize: bool,
    reduction: str,
    row_loss: RowLoss,
    kernel: RowKernel,
    chunk_size: int | None = None,
    check_inputs_finite: bool = True,
) -> Tensor:
    """Validate the call, build rows and positives, and return the reduced loss (fp32 or fp64)."""
    batch = prepare(features, labels, mask, check_inputs_finite=check_inputs_finite)
    rows = batch.rows
    # Under an enclosing autocast the matmul would silently run in bf16/fp16 again: switch it off.
    with torch.autocast(device_type=rows.device.type, enabled=False):
        z = F.normalize(rows, dim=1) if normalize else rows
        index = torch.arange(z.shape[0], device=z.device)
        ids = batch.positives.ids
        args = (z, z, ids, ids, index, batch.positives, temperature)
        if chunk_size == 0:
            losses, has_pos = per_anchor_dense(*args, row_loss)
        else:
            losses, has_pos = per_anchor_chunked(*args, kernel, chunk_size=chunk_size)
        return reduce(losses, has_pos, reduction)
