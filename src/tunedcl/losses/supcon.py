r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), both placements of the positive average.

With A(i) all rows but i, P(i) the positives of i and logits s_ij / tau:

    L_out_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip/tau) / sum_{a in A(i)} exp(s_ia/tau) )
            = logsumexp_{a in A(i)} s_ia/tau  -  mean_{p in P(i)} s_ip/tau

    L_in_i  = -log( (1/|P(i)|) sum_{p in P(i)} exp(s_ip/tau) / sum_{a in A(i)} exp(s_ia/tau) )
            = logsumexp_{a in A(i)} s_ia/tau  -  logsumexp_{p in P(i)} s_ip/tau  +  log |P(i)|

The SupCon paper recommends L_out (it trains better); L_out equals TCL with k1 = 0, k2 = 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tunedcl._checks import check_choice
from tunedcl.losses.chunked import Chunk, RowKernel
from tunedcl.losses.family import ContrastiveLoss, register_loss
from tunedcl.losses.pairs import Pairs
from tunedcl.losses.tcl import TCLKernel, tcl_row_loss

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from tunedcl.losses.family import LossOptions

VARIANTS = ("out", "in")


def supcon_in_row_loss(logits: Tensor, pairs: Pairs) -> Tensor:
    """Per-anchor SupCon L_in from ``logits = s / tau`` rows (every row has at least one positive)."""
    log_all = torch.logsumexp(logits, dim=1)
    log_positive = pairs.logsumexp(logits[pairs.rows, pairs.cols])
    return log_all - log_positive + pairs.counts.log()


@dataclass(frozen=True)
class SupConInKernel:
    """The chunked path's L_in row kernel: loss = lse_all - lse_P + log|P|,
    dL_j = e^{L_j - lse_all} - [j in P] e^{L_j - lse_P}."""

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        log_all = chunk.row_logsumexp(exclude_positives=False)
        log_pos = chunk.pairs.logsumexp(chunk.pair_logits)
        loss = log_all - log_pos + chunk.pairs.counts.clamp_min(1).log()
        return loss, torch.stack([log_all, log_pos], dim=1)

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_all, log_pos = stats[:, 0], stats[:, 1]
        rows, pairs = chunk.pairs.rows, chunk.pair_logits
        pair_grad = torch.exp(pairs - log_all[rows]) - torch.exp(pairs - log_pos[rows])
        grad = chunk.exp_minus(log_all)
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad



@register_loss("supcon")
class SupConLoss(ContrastiveLoss):
    r"""Supervised contrastive loss, L_out (default) or L_in.

    With A(i) all rows but i, P(i) the positives of anchor i and s_ij = z_i . z_j:

        L_out_i = logsumexp_{a in A(i)} s_ia/tau - (1/|P(i)|) sum_{p in P(i)} s_ip/tau
        L_in_i  = logsumexp_{a in A(i)} s_ia/tau - logsumexp_{p in P(i)} s_ip/tau + log |P(i)|

    Degenerate cases: L_out is :class:`TCLLoss` with ``k1=0, k2=1``. With one positive per anchor
    (instance labels, 2 views) both variants equal SimCLR's NT-Xent. Collapsed embeddings give
    ``ln(N - 1)`` for both.

    Args:
        temperature: tau > 0 (0.1 in the SupCon and TCL papers).
        variant: ``"out"`` (average of log-probabilities; the paper's recommendation) or ``"in"``
            (log of the average probability).
        **options: ``normalize``, ``reduction``, ``chunk_size``, ``similarity_dtype``,
            ``gather_distributed``, ``queue_size``: see :class:`~tunedcl.losses.family.ContrastiveLoss`.

    Call ``loss(features, labels=None, mask=None)`` exactly as :class:`TCLLoss`.

    Example:
        >>> import torch
        >>> from tunedcl import SupConLoss
        >>> features = torch.randn(16, 2, 64)
        >>> labels = torch.randint(0, 4, (16,))
        >>> value = SupConLoss(temperature=0.1)(features, labels)
        >>> value.shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.1, variant: str = "out", **options: Unpack[LossOptions]) -> None:
        super().__init__(temperature=temperature, hyperparameters=dict(variant=variant), **options)

    def check_hyperparameters(self) -> None:
        check_choice("variant", self.variant, VARIANTS)

    def row_loss(self, logits: Tensor, pairs: Pairs) -> Tensor:
        if self.variant == "in":
            return supcon_in_row_loss(logits, pairs)
        # L_out is TCL with k1 = 0, k2 = 1: the same code, so the two cannot drift apart.
        return tcl_row_loss(logits, pairs, temperature=self.temperature, k1=0.0, k2=1.0, k1_uses_temperature=False)

    def kernel(self) -> RowKernel:
        return SupConInKernel() if self.variant == "in" else TCLKernel(self.temperature, 0.0, 1.0, False)

    def gradient_terms(self) -> dict[str, Any] | None:
        """L_out's gradient is TCL's with k1 = 0, k2 = 1; L_in's does not have that form (None)."""
        if self.variant == "in":
            return None
        return dict(temperature=self.temperature, k1=0.0, k2=1.0, k1_uses_temperature=False)


supcon_loss = SupConLoss.functional
