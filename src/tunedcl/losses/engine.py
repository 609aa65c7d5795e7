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
from dataclasses import dataclass

import torch
from torch import Tensor

from tunedcl import distributed as dist_utils
from tunedcl.hardware import similarity_dtype_for
from tunedcl.losses.chunked import RowKernel, per_anchor_chunked
from tunedcl.losses.inputs import Positives, prepare, unit_vectors
from tunedcl.losses.pairs import Pairs, exclude_self_and_pair
from tunedcl.losses.queue import MemoryQueue

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
    similarity_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-anchor losses of ``anchors [m, D]`` against ``contrast [n, D]`` by plain autograd over the
    whole ``[m, n]`` block (supports double backward; the chunked path is faster and lighter).

    ``self_index[a]`` is the position of anchor ``a`` in the contrast set (never its own positive or
    negative), or -1 if it is not there. Returns ``(losses [m], has_positive [m])``; anchors without
    a positive get a loss of exactly 0 and no gradient.
    """
    # Scaling the [m, D] anchors instead of the [m, n] product saves a full pass over the logits.
    logits = _similarity(anchors * (1.0 / temperature), contrast, similarity_dtype)
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


def reduce(losses: Tensor, has_pos: Tensor, reduction: str, distributed: bool = False) -> Tensor:
    """``mean`` over anchors with a positive (0 if none has one), ``sum``, or ``none``.

    Distributed: the returned value is the global mean (or sum) over all ranks' anchors on every rank,
    while its gradient is W times this rank's share, so that DistributedDataParallel's averaging over W
    processes yields exactly the gradient of the global loss, even when ranks hold different numbers of
    anchors with positives.
    """
    if reduction == "none":
        return losses
    total = losses.sum()
    if not distributed or dist_utils.world_size() == 1:
        return total if reduction == "sum" else total / has_pos.sum().clamp_min(1)
    world = dist_utils.world_size()
    counts = torch.stack([total.detach(), has_pos.sum().to(total.dtype)])
    global_total, global_count = dist_utils.all_reduce_sum(counts)
    if reduction == "sum":
        value, scaled = global_total, total * world
    else:
        value, scaled = global_total / global_count.clamp_min(1), total * world / global_count.clamp_min(1)
    return scaled + (value - scaled).detach()


@dataclass(frozen=True)
class PathOptions:
    """How the loss is computed; none of these change its value beyond rounding."""

    chunk_size: int | None = None  # None: automatic; 0: dense autograd path; k: k anchor rows per chunk
    similarity_dtype: torch.dtype | None = None  # torch.bfloat16: similarity products in bf16
    gather_distributed: bool = False  # contrast against the embeddings of every rank


def check_row_range(rows: Tensor, temperature: float) -> Tensor:
    """``rows`` as they are (``normalize=False``), if every similarity s_ij / tau is finite in their dtype;
    otherwise a ValueError naming the largest row norm and what is allowed (one host sync)."""
    largest = float(rows.detach().double().norm(dim=1).max())
    limit = (torch.finfo(rows.dtype).max * temperature) ** 0.5 / 2  # |s_ij| <= |z_i| |z_j|, with a margin of 4
    if largest > limit:
        raise ValueError(
            f"features with normalize=False must have row norms below {limit:.3g} at temperature {temperature:g} "
            f"(their dot products over tau must stay finite in {rows.dtype}); the largest is {largest:.3g}. "
            "Pass normalize=True, or scale the features down"
        )
    return rows


def _similarity(anchors: Tensor, contrast: Tensor, dtype: torch.dtype | None) -> Tensor:
    if dtype is None or dtype == anchors.dtype:
        return anchors @ contrast.T
    return (anchors.to(dtype) @ contrast.to(dtype).T).to(anchors.dtype)


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
    options: PathOptions = PathOptions(),
    queue: MemoryQueue | None = None,
    update_queue: bool = True,
    check_inputs_finite: bool = True,
) -> Tensor:
    """Validate the call, build anchors, contrast set and positives, and return the reduced loss.

    Anchors are this process's rows. The contrast set is, in order: every rank's rows (gathered in
    rank order when ``gather_distributed``; just the local rows otherwise), then the queue's rows.
    """
    batch = prepare(features, labels, mask, check_inputs_finite=check_inputs_finite)
    rows, positives = batch.rows, batch.positives
    if queue is not None:
        if mask is not None:
            raise ValueError("mask cannot be combined with a memory queue (queue rows carry labels, "
                             "not mask entries); pass labels instead")
        queue.check_kind(labels is not None)
    # Under an enclosing autocast the matmul would silently run in bf16/fp16 again: switch it off.
    with torch.autocast(device_type=rows.device.type, enabled=False):
        z = unit_vectors(rows) if normalize else check_row_range(rows, temperature)
        anchor_ids = positives.ids
        contrast, contrast_ids, offset = z, anchor_ids, 0
        if options.gather_distributed and dist_utils.require_process_group("gather_distributed") > 1:
            if mask is not None:
                raise ValueError("mask cannot be combined with gather_distributed=True (it only relates "
                                 "local rows); pass labels instead")
            dist_utils.check_equal_sizes(z.shape[0], "gather_distributed", z.device)
            if labels is None:  # instance ids must not collide across ranks
                anchor_ids = anchor_ids + dist_utils.rank() * (int(anchor_ids.max()) + 1)
            contrast = dist_utils.gather_with_grad(z)
            contrast_ids = dist_utils.gather(anchor_ids)
            offset = dist_utils.rank() * z.shape[0]
        batch_contrast, batch_ids = contrast, contrast_ids
        if queue is not None and len(queue) > 0:
            contrast = torch.cat([contrast, queue.features.to(contrast.dtype)])
            contrast_ids = torch.cat([contrast_ids, queue.ids.to(contrast_ids.device)])
        self_index = offset + torch.arange(z.shape[0], device=z.device)
        args = (z, contrast, anchor_ids, contrast_ids, self_index, positives, temperature)
        similarity_dtype = similarity_dtype_for(options.similarity_dtype, z.device)  # fp32 where bf16 is emulated
        if options.chunk_size == 0:
            losses, has_pos = per_anchor_dense(*args, row_loss, similarity_dtype=similarity_dtype)
        else:
            losses, has_pos = per_anchor_chunked(
                *args, kernel, chunk_size=options.chunk_size, similarity_dtype=similarity_dtype
            )
        if queue is not None and update_queue:
            queue.enqueue(batch_contrast, batch_ids if labels is not None else None)
        return reduce(losses, has_pos, reduction, distributed=options.gather_distributed)
