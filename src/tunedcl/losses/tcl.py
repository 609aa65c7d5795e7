r"""Tuned Contrastive Learning (TCL) loss (Animesh & Chandraker, WACV 2025).

For anchor i with positives P(i) and negatives N(i) (everything else but i itself), s_ij = z_i . z_j:

    L_i = -(1/|P(i)|) sum_{p in P(i)} log( exp(s_ip / tau) / D_i )

    D_i = sum_{p' in P(i)} exp(s_ip'/tau) + k1 sum_{p' in P(i)} exp(-s_ip') + k2 sum_{n in N(i)} exp(s_in/tau)

computed in log space as

    log D_i = logsumexp( {s_ip/tau} U {-s_ip + log k1} U {s_in/tau + log k2} )
    L_i     = log D_i - mean_p s_ip/tau

k1 strengthens the pull from hard (far) positives; k2 scales the push from negatives. The k1 term has no
temperature in the paper's reference code (the default); ``k1_uses_temperature=True`` uses exp(-s/tau).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from tunedcl.losses import engine
from tunedcl.losses.base import COMMON_ARGS_DOC, ContrastiveLossModule, check_queue, path_options
from tunedcl.losses.kernels import TCLKernel
from tunedcl.losses.pairs import Pairs
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.validation import REDUCTIONS, check_bool, check_choice, check_real


def tcl_row_loss(
    logits: Tensor,
    pairs: Pairs,
    *,
    temperature: float,
    k1: float,
    k2: float,
    k1_uses_temperature: bool,
) -> Tensor:
    """Per-anchor TCL loss from ``logits = s / tau`` rows (every row has at least one positive)."""
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


def tcl_loss(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    temperature: float = 0.1,
    k1: float = 5000.0,
    k2: float = 1.0,
    k1_uses_temperature: bool = False,
    normalize: bool = True,
    reduction: str = "mean",
    chunk_size: int | None = None,
    similarity_dtype: torch.dtype | None = None,
    gather_distributed: bool = False,
    queue: MemoryQueue | None = None,
    update_queue: bool = True,
) -> Tensor:
    """Functional form of :class:`TCLLoss`; the arguments mean the same. ``queue`` is a
    :class:`MemoryQueue` used as extra contrast rows and, if ``update_queue``, fed this batch."""
    temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
    k1 = check_real("k1", k1, low=0.0, low_inclusive=True)
    k2 = check_real("k2", k2, low=0.0, low_inclusive=False)
    k1_uses_temperature = check_bool("k1_uses_temperature", k1_uses_temperature)
    row_loss = partial(
        tcl_row_loss,
        temperature=temperature,
        k1=k1,
        k2=k2,
        k1_uses_temperature=k1_uses_temperature,
    )
    return engine.compute(
        features,
        labels,
        mask,
        temperature=temperature,
        normalize=check_bool("normalize", normalize),
        reduction=check_choice("reduction", reduction, REDUCTIONS),
        row_loss=row_loss,
        kernel=TCLKernel(temperature, k1, k2, k1_uses_temperature),
        options=path_options(chunk_size, similarity_dtype, gather_distributed),
        queue=check_queue(queue),
        update_queue=update_queue,
    )


class TCLLoss(ContrastiveLossModule):
    r"""Tuned Contrastive Learning loss: SupCon with a tunable pull from hard positives (k1) and push
    from negatives (k2).

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
            with tau = 0.1 the tempered term reaches k1 * e^10 and needs a much smaller k1.{common}
    Call ``loss(features, labels=None, mask=None)``:
        features: ``[N, D]`` or ``[B, V, D]`` (V views per sample, flattened sample-major: row b*V+v).
        labels: ``[N]`` or ``[B]`` integer class labels; rows with equal labels are positives.
        mask: ``[N, N]`` or ``[B, B]`` boolean positive relation (multi-label or custom positives);
            with ``[B, V, D]`` features the other views of a sample are always its positives.
        With neither labels nor mask, positives are the other views of the same sample (self-supervised).

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
        self.k1 = check_real("k1", k1, low=0.0, low_inclusive=True)
        self.k2 = check_real("k2", k2, low=0.0, low_inclusive=False)
        self.k1_uses_temperature = check_bool("k1_uses_temperature", k1_uses_temperature)

    def forward(
        self, features: Tensor, labels: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        return tcl_loss(
            features,
            labels,
            mask,
            k1=self.k1,
            k2=self.k2,
            k1_uses_temperature=self.k1_uses_temperature,
            **self.common_kwargs(),
        )

    def extra_repr(self) -> str:
        return (
            f"k1={self.k1}, k2={self.k2}, k1_uses_temperature={self.k1_uses_temperature}, "
            + self.common_repr()
        )


TCLLoss.__doc__ = TCLLoss.__doc__.replace("{common}", COMMON_ARGS_DOC.rstrip() + "\n")
