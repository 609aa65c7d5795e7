"""Positive pairs in compact form, and per-row (segment) reductions over them.

A block of anchors has few positives per row next to many negatives. Listing the positive pairs once as
``(row, col)`` makes everything positive-specific (the positive mean, the k1 pull term, NT-Xent's
pairwise terms) cost O(#pairs) instead of a masked pass over the whole ``[m, n]`` block.

All reductions here are autograd-safe (no in-place writes to tensors autograd saves), so the dense
autograd path and the chunked path's hand-written kernels share them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tunedcl.losses.inputs import Positives

MINUS_INF = float("-inf")


@dataclass(frozen=True)
class Pairs:
    """The positive pairs of an ``[m, n]`` block: ``rows[k], cols[k]`` is the k-th pair."""

    rows: Tensor  # [p] int64
    cols: Tensor  # [p] int64
    counts: Tensor  # [m] positives per row, in the compute dtype
    size: int  # m

    @property
    def has_pos(self) -> Tensor:
        return self.counts > 0

    def sum(self, values: Tensor) -> Tensor:
        """Per-row sum of ``values [p]``; 0 for rows without pairs."""
        out = torch.zeros(self.size, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.rows, values)

    def max(self, values: Tensor) -> Tensor:
        """Per-row max of ``values [p]`` (no gradient: only used as a shift); -inf without pairs."""
        out = torch.full((self.size,), MINUS_INF, dtype=values.dtype, device=values.device)
        return out.scatter_reduce(0, self.rows, values.detach(), reduce="amax", include_self=True)

    def logsumexp(self, values: Tensor) -> Tensor:
        """Per-row logsumexp of ``values [p]``; -inf for rows without pairs (never differentiate
        those: callers drop rows without positives first)."""
        top = self.max(values)
        top = torch.where(torch.isfinite(top), top, 0.0)
        return self.sum(torch.exp(values - top[self.rows])).log() + top


def find_pairs(pos: Tensor, dtype: torch.dtype) -> Pairs:
    """Compact form of a boolean ``[m, n]`` positive block (self pairs already removed)."""
    rows, cols = pos.nonzero(as_tuple=True)
    counts = torch.bincount(rows, minlength=pos.shape[0]).to(dtype)
    return Pairs(rows=rows, cols=cols, counts=counts, size=pos.shape[0])


def exclude_self_and_pair(
    logits: Tensor,
    positives: Positives,
    anchor_ids: Tensor,
    contrast_ids: Tensor,
    self_index: Tensor,
    mask_buffer: Tensor | None = None,
    group_index: GroupIndex | None = None,
) -> Pairs:
    """Set each anchor's own column of ``logits`` to -inf (in place) and list its positive pairs.

    ``self_index[a]`` is anchor a's position in the contrast set, or -1 if it is not in it.
    ``mask_buffer``: an optional reusable bool buffer of at least ``logits``' shape. ``group_index``
    (label positives only) lists the pairs without building a mask.
    """
    local = torch.arange(logits.shape[0], device=logits.device)
    in_contrast = self_index >= 0
    self_rows, self_cols = local[in_contrast], self_index[in_contrast]
    logits[self_rows, self_cols] = MINUS_INF
    if group_index is not None and positives.group_mask is None:
        return group_index.pairs(anchor_ids, self_index, logits.dtype)
    out = None if mask_buffer is None else mask_buffer[: logits.shape[0]]
    pos = positives.block(anchor_ids, contrast_ids, out=out)
    pos[self_rows, self_cols] = False
    return find_pairs(pos, logits.dtype)


@dataclass(frozen=True)
class GroupIndex:
    """The contrast rows grouped by id (sorted once per loss call), so that the positive pairs of a block
    of anchors come out in O(#pairs), without an ``[m, n]`` boolean mask and a scan over it.

    Only for label positives (``Positives.group_mask is None``): positives are exactly the other members
    of the anchor's group.
    """

    order: Tensor  # contrast rows sorted by id (stable)
    keys: Tensor  # the distinct ids, ascending
    starts: Tensor  # where each key's run starts in ``order``
    counts: Tensor  # each key's run length

    @staticmethod
    def build(contrast_ids: Tensor) -> GroupIndex:
        sorted_ids, order = torch.sort(contrast_ids, stable=True)
        keys, counts = torch.unique_consecutive(sorted_ids, return_counts=True)
        return GroupIndex(order=order, keys=keys, starts=torch.cumsum(counts, 0) - counts, counts=counts)

    def pairs(self, anchor_ids: Tensor, self_index: Tensor, dtype: torch.dtype) -> Pairs:
        """Positive pairs of anchors with ``anchor_ids`` (own column ``self_index`` excluded)."""
        m = anchor_ids.shape[0]
        slot = torch.searchsorted(self.keys, anchor_ids).clamp(max=self.keys.shape[0] - 1)
        members = torch.where(self.keys[slot] == anchor_ids, self.counts[slot], 0)
        rows = torch.repeat_interleave(torch.arange(m, device=anchor_ids.device), members)
        first = torch.cumsum(members, 0) - members
        offsets = torch.arange(rows.shape[0], device=anchor_ids.device) - first[rows]
        cols = self.order[self.starts[slot][rows] + offsets]
        keep = cols != self_index[rows]
        rows, cols = rows[keep], cols[keep]
        counts = torch.bincount(rows, minlength=m).to(dtype)
        return Pairs(rows=rows, cols=cols, counts=counts, size=m)
