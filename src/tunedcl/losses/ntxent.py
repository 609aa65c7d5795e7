r"""NT-Xent, SimCLR's normalised temperature-scaled cross-entropy (Chen et al., ICML 2020).

Each positive pair (i, p) is its own softmax against the negatives of i only, and the pairs of an anchor
are averaged:

    L_i = (1/|P(i)|) sum_{p in P(i)} -log( exp(s_ip/tau) / (exp(s_ip/tau) + sum_{n in N(i)} exp(s_in/tau)) )
        = (1/|P(i)|) sum_{p in P(i)} softplus( logsumexp_{n in N(i)} s_in/tau  -  s_ip/tau )

With 2 views and instance positives (SimCLR's setting) each anchor has one positive and this is exactly
SimCLR's loss, and equals SupCon L_out and TCL(k1=0, k2=1). With more positives per anchor (V > 2 views,
or labels) the other positives are left out of each pair's denominator, as in pytorch-metric-learning's
NTXentLoss; that is where it differs from SupCon L_out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl.losses.chunked import Chunk
from tunedcl.losses.family import ContrastiveLoss, register_loss
from tunedcl.losses.pairs import Pairs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from tunedcl.losses.family import LossOptions


def ntxent_row_loss(logits: Tensor, pairs: Pairs) -> Tensor:
    """Per-anchor NT-Xent from ``logits = s / tau`` rows (every row has at least one positive).

    An anchor without negatives has a loss of 0 (every pair's softmax is over the positive alone).
    """
    pair_logits = logits[pairs.rows, pairs.cols]
    minus_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    negatives = logits.index_put((pairs.rows, pairs.cols), minus_inf)
    log_negatives = torch.logsumexp(negatives, dim=1)
    no_negatives = torch.isneginf(log_negatives)
    if bool(no_negatives.any()):
        # logsumexp's backward over an all -inf row is NaN: give those rows finite dummies.
        negatives = torch.where(no_negatives[:, None], 0.0, negatives)
        log_negatives = torch.logsumexp(negatives, dim=1).masked_fill(no_negatives, float("-inf"))
    pair_losses = F.softplus(log_negatives[pairs.rows] - pair_logits)
    return pairs.sum(pair_losses) / pairs.counts


@dataclass(frozen=True)
class NTXentKernel:
    """The chunked path's NT-Xent row kernel: loss = (1/|P|) sum_p softplus(lse_N - L_p),
    dL_p = -sigmoid(lse_N - L_p) / |P|, dL_n = w e^{L_n - lse_N} with w = (1/|P|) sum_p sigmoid(lse_N - L_p)."""

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        log_neg = chunk.row_logsumexp(exclude_positives=True)
        margin = log_neg[chunk.pairs.rows] - chunk.pair_logits
        counts = chunk.pairs.counts.clamp_min(1)
        loss = chunk.pairs.sum(F.softplus(margin)) / counts
        weight = chunk.pairs.sum(torch.sigmoid(margin)) / counts
        return loss, torch.stack([log_neg, weight], dim=1)

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_neg, weight = stats[:, 0], stats[:, 1]
        rows = chunk.pairs.rows
        pair_grad = -torch.sigmoid(log_neg[rows] - chunk.pair_logits) / chunk.pairs.counts[rows]
        grad = chunk.exp_minus(log_neg - weight.log())
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad


@register_loss("ntxent", aliases=("simclr", "nt-xent"))
class NTXentLoss(ContrastiveLoss):
    r"""SimCLR's NT-Xent loss: each positive pair against the anchor's negatives.

        L_i = (1/|P(i)|) sum_{p in P(i)} -log( e^{s_ip/tau} / (e^{s_ip/tau} + sum_{n in N(i)} e^{s_in/tau}) )

    Positives are instance positives: call it with ``[B, V, D]`` features and no labels, so the other
    views of a sample are its positives (as in SimCLR). ``labels`` or ``mask`` may define the positives
    instead (e.g. pytorch-metric-learning's convention of ``[N, D]`` features with ``[N]`` instance ids).
    With a memory queue, labels are treated as class labels that persist across batches.

    Degenerate cases: with 2 views each anchor has one positive and 2B - 2 negatives, and this is SimCLR's
    loss, equal to :class:`SupConLoss` L_out and :class:`TCLLoss` with ``k1=0, k2=1``. Collapsed
    embeddings with 2 views give ``ln(2B - 1)``.

    Args:
        temperature: tau > 0 (0.5 in SimCLR's CIFAR-10 setting; 0.1 to 0.2 common for larger batches).
        **options: ``normalize``, ``reduction``, ``chunk_size``, ``similarity_dtype``,
            ``gather_distributed``, ``queue_size``: see :class:`~tunedcl.losses.family.ContrastiveLoss`.

    Example:
        >>> import torch
        >>> from tunedcl import NTXentLoss
        >>> views = torch.randn(32, 2, 128)  # 32 images, 2 augmented views each
        >>> value = NTXentLoss(temperature=0.5)(views)
        >>> bool(value > 0)
        True
    """

    def __init__(self, temperature: float = 0.5, **options: Unpack[LossOptions]) -> None:
        super().__init__(temperature=temperature, **options)

    def row_loss(self, logits: Tensor, pairs: Pairs) -> Tensor:
        return ntxent_row_loss(logits, pairs)

    def kernel(self) -> NTXentKernel:
        return NTXentKernel()

    def gradient_terms(self) -> dict[str, Any]:
        """TCL with k1 = 0, k2 = 1: exact with one positive per anchor (SimCLR's 2 views), an approximation
        with more (each pair's own denominator then leaves the other positives out)."""
        return dict(temperature=self.temperature, k1=0.0, k2=1.0, k1_uses_temperature=False)


ntxent_loss = NTXentLoss.functional
