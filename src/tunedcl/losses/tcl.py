r"""Tuned Contrastive Learning (TCL) loss (Animesh & Chandraker, WACV 2025).

For anchor i with positives P(i) and negatives N(i) (everything else but i itself), s_ij = z_i . z_j:

    L_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip / tau) / D_i )

    D_i = sum_{p' in P(i)} exp(s_ip'/tau) + k1 sum_{p' in P(i)} exp(-s_ip') + k2 sum_{n in N(i)} exp(s_in/tau)

computed in log space as

    log D_i = logsumexp( {s_ip/tau} U {-s_ip + log k1} U {s_in/tau + log k2} )
    L_i     = log D_i - mean_p s_ip/tau

k1 adds a positive-only term to the denominator (its extra pull is largest on far positives, but raising k1
also shrinks every positive's softmax weight: tcl.md §2); k2 scales the push from negatives. The k1 term has
no temperature in the paper's reference code (the default); ``k1_uses_temperature=True`` uses exp(-s/tau).

The chunked path's row kernel, for one anchor row with L_j = s_j / tau (self excluded), P the positive
columns, N the others and a = tau (or 1 if tempered):

    log D = logsumexp( {L_p} U {-a L_p + log k1} U {L_n + log k2} ),   loss = log D - mean_p L_p
    dL_n  = k2 e^{L_n} / D,        dL_p = e^{L_p} / D  -  a k1 e^{-a L_p} / D  -  1/|P|
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from tunedcl._checks import check_bool, check_real
from tunedcl.losses.chunked import Chunk
from tunedcl.losses.family import ContrastiveLoss, register_loss
from tunedcl.losses.pairs import Pairs

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from tunedcl.losses.family import LossOptions


def tcl_row_loss(
    logits: Tensor,
    pairs: Pairs,
    *,
    temperature: float,
    k1: float,
    k2: float,
    k1_uses_temperature: bool,
) -> Tensor:
    """Per-anchor TCL loss from ``logits = s / tau`` rows (every row has at least one positive): the dense
    autograd path's row loss."""
    pair_logits = logits[pairs.rows, pairs.cols]
    main = logits
    if k2 != 1.0:  # negatives carry log k2; positives are put back unweighted
        main = logits + math.log(k2)
        main.index_put_((pairs.rows, pairs.cols), pair_logits)
    log_denominator = torch.logsumexp(main, dim=1)
    if k1 > 0.0:
        # exp(-s) = exp(-tau * logits), or exp(-s/tau) = exp(-logits) in the tempered form.
        scale = 1.0 if k1_uses_temperature else temperature
        pull = pairs.logsumexp(pair_logits * -scale + math.log(k1))
        log_denominator = torch.logaddexp(log_denominator, pull)
    return log_denominator - pairs.sum(pair_logits) / pairs.counts


@dataclass(frozen=True)
class TCLKernel:
    """The chunked path's TCL row kernel (the equations in the module docstring)."""

    temperature: float
    k1: float
    k2: float
    k1_uses_temperature: bool

    @property
    def pull_scale(self) -> float:
        """a in exp(-a L_p): exp(-s) = exp(-tau L); the tempered form exp(-s/tau) = exp(-L)."""
        return 1.0 if self.k1_uses_temperature else self.temperature

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        pairs = chunk.pair_logits
        terms = [
            chunk.row_logsumexp(exclude_positives=True) + math.log(self.k2),
            chunk.pairs.logsumexp(pairs),
        ]
        if self.k1 > 0:
            terms.append(chunk.pairs.logsumexp(pairs * -self.pull_scale + math.log(self.k1)))
        log_d = torch.logsumexp(torch.stack(terms, dim=1), dim=1)
        mean_positive = chunk.pairs.sum(pairs) / chunk.pairs.counts.clamp_min(1)
        return log_d - mean_positive, log_d[:, None]

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_d = stats[:, 0]
        rows, pairs = chunk.pairs.rows, chunk.pair_logits
        pair_log_d = log_d[rows]
        pair_grad = torch.exp(pairs - pair_log_d) - (1.0 / chunk.pairs.counts)[rows]
        if self.k1 > 0:
            a = self.pull_scale
            pair_grad -= a * torch.exp(pairs * -a + (math.log(self.k1) - pair_log_d))
        grad = chunk.exp_minus(log_d - math.log(self.k2))
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad



@register_loss("tcl")
class TCLLoss(ContrastiveLoss):
    r"""Tuned Contrastive Learning loss: SupCon with a positive-only term in the denominator (k1) and a
    tunable push from negatives (k2).

    For anchor i with positives P(i) (same label, or the other views of the same sample), negatives
    N(i) (all other rows) and s_ij = z_i . z_j of L2-normalised embeddings:

        L_i = log D_i - (1/|P(i)|) sum_{p in P(i)} s_ip / tau
        D_i = sum_{p in P(i)} exp(s_ip/tau) + k1 sum_{p in P(i)} exp(-s_ip) + k2 sum_{n in N(i)} exp(s_in/tau)

    evaluated with log-sum-exp in fp32 (fp64 for fp64 inputs), so it is finite for every finite input.

    Degenerate cases: ``k1=0, k2=1`` is SupCon's L_out exactly; with instance labels (``labels=None``),
    2 views, ``k1=0, k2=1`` it is SimCLR's NT-Xent.

    Args:
        temperature: tau > 0. Lower values sharpen the softmax over similarities.
        k1: >= 0, weight of the hard-positive term exp(-s_ip) (5000 in the paper's code; 0 disables it).
        k2: > 0, weight of the negatives in the denominator (1 in the paper's code).
        k1_uses_temperature: if True the k1 term is exp(-s_ip / tau). The paper's code has no tau there;
            with tau = 0.1 the tempered term reaches k1 * e^10 and needs a much smaller k1.
        **options: ``normalize``, ``reduction``, ``chunk_size``, ``similarity_dtype``,
            ``gather_distributed``, ``queue_size``: see :class:`~tunedcl.losses.family.ContrastiveLoss`.

    Call ``loss(features, labels=None, mask=None)`` with ``[N, D]`` features and ``[N]`` labels or
    ``[B, V, D]`` views and ``[B]`` labels; without labels or mask the other views of a sample are its
    positives (self-supervised). See :class:`~tunedcl.losses.family.ContrastiveLoss`.

    Example:
        >>> import torch
        >>> from tunedcl import TCLLoss
        >>> loss_fn = TCLLoss(temperature=0.1, k1=5000.0, k2=1.0)
        >>> features = torch.randn(8, 2, 128, requires_grad=True)  # 8 images, 2 views each
        >>> labels = torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
        >>> loss = loss_fn(features, labels)
        >>> loss.backward()
        >>> bool(torch.isfinite(loss))
        True
    """

    def __init__(
        self,
        temperature: float = 0.1,
        k1: float = 5000.0,
        k2: float = 1.0,
        k1_uses_temperature: bool = False,
        **options: Unpack[LossOptions],
    ) -> None:
        hyperparameters = dict(k1=k1, k2=k2, k1_uses_temperature=k1_uses_temperature)
        super().__init__(temperature=temperature, hyperparameters=hyperparameters, **options)

    def check_hyperparameters(self) -> None:
        self.k1 = check_real("k1", self.k1, low=0.0)
        self.k2 = check_real("k2", self.k2, low=0.0, low_inclusive=False)
        check_bool("k1_uses_temperature", self.k1_uses_temperature)

    def row_loss(self, logits: Tensor, pairs: Pairs) -> Tensor:
        return tcl_row_loss(
            logits, pairs, temperature=self.temperature, k1=self.k1, k2=self.k2,
            k1_uses_temperature=self.k1_uses_temperature,
        )

    def kernel(self) -> TCLKernel:
        return TCLKernel(self.temperature, self.k1, self.k2, self.k1_uses_temperature)

    def gradient_terms(self) -> dict[str, Any]:
        return dict(
            temperature=self.temperature, k1=self.k1, k2=self.k2, k1_uses_temperature=self.k1_uses_temperature
        )


tcl_loss = TCLLoss.functional
