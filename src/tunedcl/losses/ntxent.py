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

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl.losses import engine
from tunedcl.losses.base import COMMON_ARGS_DOC, ContrastiveLossModule, check_queue, path_options
from tunedcl.losses.kernels import NTXentKernel
from tunedcl.losses.pairs import Pairs
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.validation import REDUCTIONS, check_bool, check_choice, check_real


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


def ntxent_loss(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
    reduction: str = "mean",
    chunk_size: int | None = None,
    similarity_dtype: torch.dtype | None = None,
    gather_distributed: bool = False,
    queue: MemoryQueue | None = None,
    update_queue: bool = True,
) -> Tensor:
    """Functional form of :class:`NTXentLoss`; the arguments mean the same (``queue`` as in
    :func:`tunedcl.losses.functional.tcl_loss`)."""
    return engine.compute(
        features,
        labels,
        mask,
        temperature=check_real("temperature", temperature, low=0.0, low_inclusive=False),
        normalize=check_bool("normalize", normalize),
        reduction=check_choice("reduction", reduction, REDUCTIONS),
        row_loss=ntxent_row_loss,
        kernel=NTXentKernel(),
        options=path_options(chunk_size, similarity_dtype, gather_distributed),
        queue=check_queue(queue),
        update_queue=update_queue,
    )


class NTXentLoss(ContrastiveLossModule):
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
        temperature: tau > 0 (0.5 in SimCLR's CIFAR-10 setting; 0.1 to 0.2 common for larger batches).{common}
    Example:
        >>> import torch
        >>> from tunedcl import NTXentLoss
        >>> views = torch.randn(32, 2, 128)  # 32 images, 2 augmented views each
        >>> value = NTXentLoss(temperature=0.5)(views)
        >>> bool(value > 0)
        True
    """

    def __init__(
        self,
        temperature: float = 0.5,
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

    def forward(
        self, features: Tensor, labels: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        return ntxent_loss(features, labels, mask, **self.common_kwargs())

    def extra_repr(self) -> str:
        return self.common_repr()


NTXentLoss.__doc__ = NTXentLoss.__doc__.replace("{common}", COMMON_ARGS_DOC.rstrip() + "\n")
