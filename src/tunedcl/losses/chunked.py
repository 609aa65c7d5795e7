r"""The memory-efficient exact path: per-anchor losses computed in row chunks by a custom autograd function.

Logits ``L = (anchors / tau) @ contrast.T`` are produced ``chunk_size`` anchor rows at a time and never
held whole (unless they fit ``save_logits_bytes``, in which case the backward reuses them instead of
recomputing). Each family (TCL, SupCon L_in, NT-Xent) supplies a :class:`RowKernel`
(:mod:`tunedcl.losses.kernels`):

* ``forward(chunk) -> (loss [m], stats [m, k])``: the per-anchor loss and a few per-row numbers
  (log-denominators) that make the backward exact without a second reduction;
* ``backward(chunk, stats) -> G [m, n]``: ``dloss_i / dL_ij`` for the chunk, written over its logits.

The only full-row work per chunk is one exp pass in the forward and one in the backward, plus the
matrix products (positives are handled as a compact pair list, :mod:`tunedcl.losses.pairs`):

    forward:  L = A C^T / tau            backward:  dA = diag(g) G C / tau,   dC += G^T diag(g) A / tau

with ``g`` the incoming per-anchor gradient, applied to the thin ``[m, D]`` side rather than to ``G``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from tunedcl.losses.inputs import Positives
from tunedcl.losses.pairs import Pairs, exclude_self_and_pair


@dataclass
class Chunk:
    """One block of anchor rows: logits (own column -inf) and its positive pairs."""

    logits: Tensor  # [m, n]
    pairs: Pairs
    pair_logits: Tensor  # [p] logits[pairs.rows, pairs.cols] (a copy: safe when logits are overwritten)

    def row_logsumexp(self, exclude_positives: bool) -> Tensor:
        """Row logsumexp of the logits over all columns, or over the non-positive ones (-inf if none)."""
        top = self.logits.amax(dim=1)
        top = torch.where(torch.isfinite(top), top, 0.0)
        shifted = torch.exp(self.logits - top[:, None])
        if exclude_positives:
            shifted[self.pairs.rows, self.pairs.cols] = 0.0
        return shifted.sum(dim=1).log() + top


class RowKernel(Protocol):
    """The per-family math of the chunked path (see the module docstring)."""

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]: ...

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class ChunkPlan:
    """How to split the work: rows per chunk, whether logits are kept, the product's dtype."""

    chunk_size: int
    save_logits: bool
    similarity_dtype: torch.dtype | None  # None: the compute dtype; torch.bfloat16 for bf16 products


def _product(a: Tensor, b: Tensor, plan: ChunkPlan) -> Tensor:
    """``a @ b`` in the plan's similarity dtype, returned in ``a``'s dtype."""
    low = plan.similarity_dtype
    if low is None or low == a.dtype:
        return a @ b
    return (a.to(low) @ b.to(low)).to(a.dtype)


def _chunk(
    scaled: Tensor, contrast: Tensor, ids: tuple[Tensor, Tensor, Tensor], positives: Positives,
    start: int, plan: ChunkPlan, logits: Tensor | None = None,
) -> Chunk:
    anchor_ids, contrast_ids, self_index = ids
    stop = start + plan.chunk_size
    if logits is None:
        logits = _product(scaled[start:stop], contrast.T, plan)
    pairs = exclude_self_and_pair(
        logits, positives, anchor_ids[start:stop], contrast_ids, self_index[start:stop]
    )
    return Chunk(logits=logits, pairs=pairs, pair_logits=logits[pairs.rows, pairs.cols])


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, anchors: Tensor, contrast: Tensor, anchor_ids: Tensor, contrast_ids: Tensor,
        self_index: Tensor, positives: Positives, temperature: float, kernel: RowKernel,
        plan: ChunkPlan,
    ) -> tuple[Tensor, Tensor]:
        scaled = anchors * (1.0 / temperature)
        ids = (anchor_ids, contrast_ids, self_index)
        losses, has_pos, stats, saved = [], [], [], []
        for start in range(0, anchors.shape[0], plan.chunk_size):
            chunk = _chunk(scaled, contrast, ids, positives, start, plan)
            if plan.save_logits:
                saved.append(chunk.logits)  # forward kernels leave it intact; the backward consumes it
            loss, row_stats = kernel.forward(chunk)
            losses.append(torch.where(chunk.pairs.has_pos, loss, 0.0))
            has_pos.append(chunk.pairs.has_pos)
            stats.append(row_stats)
        ctx.save_for_backward(anchors, contrast, anchor_ids, contrast_ids, self_index)
        ctx.stats, ctx.saved_logits = stats, saved
        ctx.positives, ctx.temperature, ctx.kernel, ctx.plan = positives, temperature, kernel, plan
        has_pos_all = torch.cat(has_pos)
        ctx.mark_non_differentiable(has_pos_all)
        return torch.cat(losses), has_pos_all

    @staticmethod
    def backward(ctx, grad_losses: Tensor, _unused: Tensor | None):  # type: ignore[override]
        anchors, contrast, anchor_ids, contrast_ids, self_index = ctx.saved_tensors
        plan: ChunkPlan = ctx.plan
        inv_tau = 1.0 / ctx.temperature
        scaled = anchors * inv_tau
        ids = (anchor_ids, contrast_ids, self_index)
        grad_anchors = torch.zeros_like(anchors) if ctx.needs_input_grad[0] else None
        grad_contrast = torch.zeros_like(contrast) if ctx.needs_input_grad[1] else None
        for index, start in enumerate(range(0, anchors.shape[0], plan.chunk_size)):
            stop = start + plan.chunk_size
            saved = ctx.saved_logits[index] if ctx.saved_logits else None
            if saved is not None:  # used once: the backward kernel overwrites it
                ctx.saved_logits[index] = None
            chunk = _chunk(scaled, contrast, ids, ctx.positives, start, plan, logits=saved)
            g = torch.where(chunk.pairs.has_pos, grad_losses[start:stop], 0.0)[:, None] * inv_tau
            grad_logits = ctx.kernel.backward(chunk, ctx.stats[index])
            if grad_anchors is not None:
                grad_anchors[start:stop] = _product(grad_logits, contrast, plan) * g
            if grad_contrast is not None:
                grad_contrast += _product(grad_logits.T, anchors[start:stop] * g, plan)
        return grad_anchors, grad_contrast, None, None, None, None, None, None, None


def default_chunk_size(n_contrast: int, device: torch.device) -> int:
    """Rows per chunk: ~1 MiB of fp32 logits on CPU (stays in cache) but at least 64 rows, so that each
    pass over the contrast matrix serves enough anchors; ~256 MiB of logits on accelerators."""
    if device.type == "cpu":
        return max(64, 2**18 // max(n_contrast, 1))
    return max(1, 2**26 // max(n_contrast, 1))


def per_anchor_chunked(
    anchors: Tensor, contrast: Tensor, anchor_ids: Tensor, contrast_ids: Tensor,
    self_index: Tensor, positives: Positives, temperature: float, kernel: RowKernel,
    *, chunk_size: int | None = None, save_logits_bytes: int = 2**28,
    similarity_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-anchor losses and has-positive flags, exactly as the dense path, in O(chunk x n) memory.

    The logits are kept for the backward when all of them take at most ``save_logits_bytes``
    (saving one recomputed product), and recomputed chunk by chunk otherwise.
    """
    size = chunk_size or default_chunk_size(contrast.shape[0], contrast.device)
    logits_bytes = anchors.shape[0] * contrast.shape[0] * anchors.element_size()
    plan = ChunkPlan(size, logits_bytes <= save_logits_bytes, similarity_dtype)
    return _ChunkedLoss.apply(
        anchors, contrast, anchor_ids, contrast_ids, self_index, positives, temperature, kernel, plan
    )
