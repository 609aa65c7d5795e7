r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), both placements of the positive average.

With A(i) all rows but i, P(i) the positives of i and logits s_ij / tau:

    L_out_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip/tau) / sum_{a in A(i)} exp(s_ia/tau) )
            = logsumexp_{a in A(i)} s_ia/tau  -  mean_{p in P(i)} s_ip/tau

    L_in_i  = -log( (1/|P(i)|) sum_{p in P(i)} exp(s_ip/tau) / sum_{a in A(i)} exp(s_ia/tau) )
            = logsumexp_{a in A(i)} s_ia/tau  -  logsumexp_{p in P(i)} s_ip/tau  +  log |P(i)|

The SupCon paper recommends L_out (it trains better); L_out equals TCL with k1 = 0, k2 = 1.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from tunedcl.losses import engine
from tunedcl.losses.base import COMMON_ARGS_DOC, ContrastiveLossModule, check_queue, path_options
from tunedcl.losses.kernels import SupConInKernel, TCLKernel
from tunedcl.losses.pairs import Pairs
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.tcl import tcl_row_loss
from tunedcl.losses.validation import REDUCTIONS, check_bool, check_choice, check_real

VARIANTS = ("out", "in")


def supcon_in_row_loss(logits: Tensor, pairs: Pairs) -> Tensor:
    """Per-anchor SupCon L_in from ``logits = s / tau`` rows (every row has at least one positive)."""
    log_all = torch.logsumexp(logits, dim=1)
    log_positive = pairs.logsumexp(logits[pairs.rows, pairs.cols])
    return log_all - log_positive + pairs.counts.log()


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    temperature: float = 0.1,
    variant: str = "out",
    normalize: bool = True,
    reduction: str = "mean",
    chunk_size: int | None = None,
    similarity_dtype: torch.dtype | None = None,
    gather_distributed: bool = False,
    queue: MemoryQueue | None = None,
    update_queue: bool = True,
) -> Tensor:
    """Functional form of :class:`SupConLoss`; the arguments mean the same (``queue`` as in
    :func:`tunedcl.losses.functional.tcl_loss`)."""
    temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
    variant = check_choice("variant", variant, VARIANTS)
    if variant == "out":
        row_loss = partial(
            tcl_row_loss, temperature=temperature, k1=0.0, k2=1.0, k1_uses_temperature=False
        )
        kernel = TCLKernel(temperature, 0.0, 1.0, False)
    else:
        row_loss, kernel = supcon_in_row_loss, SupConInKernel()
    return engine.compute(
        features,
        labels,
        mask,
        temperature=temperature,
        normalize=check_bool("normalize", normalize),
        reduction=check_choice("reduction", reduction, REDUCTIONS),
        row_loss=row_loss,
        kernel=kernel,
        options=path_options(chunk_size, similarity_dtype, gather_distributed),
        queue=check_queue(queue),
        update_queue=update_queue,
    )


class SupConLoss(ContrastiveLossModule):
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
            (log of the average probability).{common}
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

    def __init__(
        self,
        temperature: float = 0.1,
        variant: str = "out",
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
        similarity_dtype: torch.dtype | None = None,
        gather_distributed: bool = False,
        queue_size: int = 0,
    ) -> None:
        super().__init__(
            temperature=temperature,
            normalize=normalize,
            reduction=reduction,
            chunk_size=chunk_size,
            similarity_dtype=similarity_dtype,
            gather_distributed=gather_distributed,
            queue_size=queue_size,
        )
        self.variant = check_choice("variant", variant, VARIANTS)

    def forward(
        self, features: Tensor, labels: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        return supcon_loss(features, labels, mask, variant=self.variant, **self.common_kwargs())

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, " + self.common_repr()


SupConLoss.__doc__ = SupConLoss.__doc__.replace("{common}", COMMON_ARGS_DOC.rstrip() + "\n")
