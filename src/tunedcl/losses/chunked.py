r"""The memory-efficient exact path: per-anchor losses computed in row chunks by a custom autograd function.

Logits ``L = (anchors / tau) @ contrast.T`` are produced ``chunk_size`` anchor rows at a time and never
held whole (unless they fit ``save_logits_bytes``, in which case the backward reuses them instead of
recomputing). Each family (TCL, SupCon L_in, NT-Xent) supplies a :class:`RowKernel`
(in each family file, e.g. :class:`tunedcl.losses.tcl.TCLKernel`):

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
from torch.autograd.function import once_differentiable

from tunedcl.losses.inputs import Positives
from tunedcl.losses.pairs import GroupIndex, Pairs, exclude_self_and_pair


@dataclass
class Chunk:
    """One block of anchor rows: logits (own column -inf), its positive pairs, and work space.

    In a backward that reuses the forward's exponentials, ``logits`` is None, ``scratch`` holds
    ``exp(L - top)`` as the forward left it (positive columns possibly zeroed; never modified again, so
    repeated backward passes are identical) and ``out`` receives the gradient.
    """

    logits: Tensor | None  # [m, n]
    pairs: Pairs
    pair_logits: Tensor  # [p] logits[pairs.rows, pairs.cols] (a copy: safe when logits are overwritten)
    scratch: Tensor  # [m, n]: row_logsumexp leaves exp(L - top) here
    top: Tensor | None = None  # [m] the row shift of scratch
    out: Tensor | None = None  # [m, n] where exp_minus writes when logits is None

    def row_logsumexp(self, exclude_positives: bool) -> Tensor:
        """Row logsumexp of the logits over all columns, or over the non-positive ones (-inf if none).

        Leaves ``exp(L - top)`` in ``scratch`` (0 in excluded positive columns): the backward reuses it.
        With ``exclude_positives`` the positive columns of ``logits`` are set to -inf first (their values
        live on in ``pair_logits``), so that the shift ``top`` is the largest *remaining* logit: a
        dominant positive must not push every other term into underflow. Forward kernels call it once.
        """
        if exclude_positives:
            self.logits[self.pairs.rows, self.pairs.cols] = float("-inf")
        top = self.logits.amax(dim=1)
        top = torch.where(torch.isfinite(top), top, 0.0)
        self.top = top
        shifted = torch.sub(self.logits, top[:, None], out=self.scratch).exp_()
        return shifted.sum(dim=1).log() + top

    def exp_minus(self, shift: Tensor) -> Tensor:
        """``exp(L - shift[:, None])`` over the whole block, in place (rows with a non-finite shift give
        0). Positive columns are left to the caller to overwrite.

        From the forward's exponentials this is one row scaling, ``exp(L - top) * exp(top - shift)``;
        entries that underflowed there are below ~1e-38 of the row's largest term here too.
        """
        shift = torch.where(torch.isfinite(shift), shift, float("inf"))
        if self.logits is None:
            return torch.mul(self.scratch, torch.exp(self.top - shift)[:, None], out=self.out)
        return self.logits.sub_(shift[:, None]).exp_()


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


def _product(a: Tensor, b: Tensor, plan: ChunkPlan, out: Tensor | None = None) -> Tensor:
    """``a @ b`` in the plan's similarity dtype, in ``a``'s dtype (written into ``out`` if given)."""
    low = plan.similarity_dtype
    if low is None or low == a.dtype:
        return torch.mm(a, b, out=out)
    product = a.to(low) @ b.to(low)
    return product.to(a.dtype) if out is None else out.copy_(product)


@dataclass
class _Buffers:
    """Storage reused across chunks: fresh [m, n] tensors per chunk would each cost page faults."""

    logits: Tensor  # [chunk, n]
    scratch: Tensor  # [M, n] when the forward's exponentials are kept for the backward, else [chunk, n]
    mask: Tensor | None  # [chunk, n] bool (explicit masks only)
    groups: GroupIndex | None  # label positives: pairs without a mask

    @staticmethod
    def allocate(anchors: Tensor, contrast_ids: Tensor, positives: Positives, plan: ChunkPlan) -> _Buffers:
        n = contrast_ids.shape[0]
        rows = min(plan.chunk_size, anchors.shape[0])
        kept = anchors.shape[0] if plan.save_logits else rows
        by_label = positives.group_mask is None
        return _Buffers(
            logits=anchors.new_empty(rows, n),
            scratch=anchors.new_empty(kept, n),
            mask=None if by_label else torch.empty(rows, n, dtype=torch.bool, device=anchors.device),
            groups=GroupIndex.build(contrast_ids) if by_label else None,
        )

    def scratch_for(self, start: int, stop: int, plan: ChunkPlan) -> Tensor:
        return self.scratch[start:stop] if plan.save_logits else self.scratch[: stop - start]


def _chunk(
    scaled: Tensor, contrast: Tensor, ids: tuple[Tensor, Tensor, Tensor], positives: Positives,
    start: int, plan: ChunkPlan, buffers: _Buffers,
) -> Chunk:
    anchor_ids, contrast_ids, self_index = ids
    stop = min(start + plan.chunk_size, scaled.shape[0])
    logits = _product(scaled[start:stop], contrast.T, plan, out=buffers.logits[: stop - start])
    pairs = exclude_self_and_pair(
        logits, positives, anchor_ids[start:stop], contrast_ids, self_index[start:stop], buffers.mask,
        buffers.groups,
    )
    return Chunk(logits=logits, pairs=pairs, pair_logits=logits[pairs.rows, pairs.cols],
                 scratch=buffers.scratch_for(start, stop, plan))


class _ChunkedLoss(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, anchors: Tensor, contrast: Tensor, anchor_ids: Tensor, contrast_ids: Tensor,
        self_index: Tensor, positives: Positives, temperature: float, kernel: RowKernel,
        plan: ChunkPlan,
    ) -> tuple[Tensor, Tensor]:
        scaled = anchors * (1.0 / temperature)
        ids = (anchor_ids, contrast_ids, self_index)
        buffers = _Buffers.allocate(anchors, contrast_ids, positives, plan)
        losses, has_pos, stats, kept = [], [], [], []
        for start in range(0, anchors.shape[0], plan.chunk_size):
            chunk = _chunk(scaled, contrast, ids, positives, start, plan, buffers)
            loss, row_stats = kernel.forward(chunk)
            losses.append(torch.where(chunk.pairs.has_pos, loss, 0.0))
            has_pos.append(chunk.pairs.has_pos)
            stats.append(row_stats)
            if plan.save_logits:
                kept.append((chunk.pairs, chunk.pair_logits, chunk.top))
        ctx.save_for_backward(anchors, contrast, anchor_ids, contrast_ids, self_index)
        ctx.buffers, ctx.kept = buffers, kept
        ctx.stats, ctx.positives, ctx.temperature, ctx.kernel, ctx.plan = stats, positives, temperature, kernel, plan
        has_pos_all = torch.cat(has_pos)
        ctx.mark_non_differentiable(has_pos_all)
        return torch.cat(losses), has_pos_all

    @staticmethod
    @once_differentiable  # the backward is hand-written: no double backward through it
    def backward(ctx, grad_losses: Tensor, _unused: Tensor | None):  # type: ignore[override]
        # .backward() called inside an autocast region would otherwise run these products in bf16/fp16,
        # whatever the forward used (custom_bwd needs a device type; this works on every device).
        with torch.autocast(device_type=grad_losses.device.type, enabled=False):
            return _ChunkedLoss._backward(ctx, grad_losses)

    @staticmethod
    def _backward(ctx, grad_losses: Tensor) -> tuple:
        anchors, contrast, anchor_ids, contrast_ids, self_index = ctx.saved_tensors
        plan: ChunkPlan = ctx.plan
        inv_tau = 1.0 / ctx.temperature
        scaled = anchors * inv_tau
        ids = (anchor_ids, contrast_ids, self_index)
        kept = ctx.kept
        grad_anchors = torch.zeros_like(anchors) if ctx.needs_input_grad[0] else None
        grad_contrast = torch.zeros_like(contrast) if ctx.needs_input_grad[1] else None
        for index, start in enumerate(range(0, anchors.shape[0], plan.chunk_size)):
            stop = min(start + plan.chunk_size, anchors.shape[0])
            if kept:
                pairs, pair_logits, top = kept[index]
                chunk = Chunk(logits=None, pairs=pairs, pair_logits=pair_logits, top=top,
                              scratch=ctx.buffers.scratch_for(start, stop, plan),
                              out=ctx.buffers.logits[: stop - start])
            else:
                chunk = _chunk(scaled, contrast, ids, ctx.positives, start, plan, ctx.buffers)
            g = torch.where(chunk.pairs.has_pos, grad_losses[start:stop], 0.0)[:, None] * inv_tau
            grad_logits = ctx.kernel.backward(chunk, ctx.stats[index])
            if grad_anchors is not None:
                grad_anchors[start:stop] = _product(grad_logits, contrast, plan) * g
            if grad_contrast is not None:
                if plan.similarity_dtype is None:
                    grad_contrast.addmm_(grad_logits.T, anchors[start:stop] * g)
                else:
                    grad_contrast += _product(grad_logits.T, anchors[start:stop] * g, plan)
        return grad_anchors, grad_contrast, None, None, None, None, None, None, None


def default_chunk_size(n_contrast: int, device: torch.device) -> int:
    """Rows per chunk. CPU: 256 (measured best from N = 4096 to 65536 on 2 cores: enough rows per pass
    over the contrast matrix, buffers small enough to stay warm). Accelerators: ~2^26 logits per chunk,
    i.e. one chunk up to N = 8192."""
    if device.type == "cpu":
        return 256
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
    needs_grad = torch.is_grad_enabled() and (anchors.requires_grad or contrast.requires_grad)
    plan = ChunkPlan(size, needs_grad and logits_bytes <= save_logits_bytes, similarity_dtype)
    return _ChunkedLoss.apply(
        anchors, contrast, anchor_ids, contrast_ids, self_index, positives, temperature, kernel, plan
    )
