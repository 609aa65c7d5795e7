r"""``barlow``: the Barlow Twins loss (Zbontar et al., ICML 2021), redundancy reduction on the cross-correlation
matrix of two views' projections.

Each projection feature (a column of the ``[B, D]`` batch) is standardised over the batch, per view, and the
cross-correlation matrix of the two views is pushed to the identity:

    zhat_bi = (z_bi - mean_b z_bi) / sqrt(var_b z_bi + eps)         (biased variance over the B rows)
    C_ij    = (1/B) sum_b zhat^A_bi zhat^B_bj
    L       = scale * [ sum_i (1 - C_ii)^2  +  lambda sum_i sum_{j != i} C_ij^2 ]

With ``eps = 0`` this C is the paper's eq. (2), ``sum_b a_bi b_bj / (sqrt(sum_b a_bi^2) sqrt(sum_b b_bj^2))`` of the
centred projections a, b. The eps is the authors' code's, which standardises with ``BatchNorm1d(affine=False)``
in training mode (eps 1e-5); it keeps a constant column finite (its zhat is 0, so it contributes 1 to the loss).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_real
from tunedcl.losses.family import register_loss


def projection_views(projections: Tensor, other: Tensor | None, owner: str) -> list[Tensor]:
    """The views of a batch-statistics loss (Barlow Twins, VICReg) as V >= 2 tensors ``[B, D]`` with B >= 2, in
    float32 (or float64 if given): ``projections [B, V, D]`` alone, or ``projections`` and ``other``, ``[B, D]``
    each. Raises a ValueError naming the argument, the shape given and what is allowed."""
    if other is None:
        if not isinstance(projections, Tensor) or projections.dim() != 3 or projections.shape[1] < 2:
            allowed = "a [B, V, D] tensor with V >= 2 views, or the first of two [B, D] tensors"
            raise bad_argument("projections", projections, allowed, owner)
        views = list(projections.unbind(dim=1))
    else:
        if not isinstance(projections, Tensor) or projections.dim() != 2:
            raise bad_argument("projections", projections, "a [B, D] tensor when other is given", owner)
        if not isinstance(other, Tensor) or other.shape != projections.shape:
            raise bad_argument("other", other, f"a tensor of the shape of projections, {tuple(projections.shape)}",
                               owner)
        views = [projections, other]
    if views[0].shape[0] < 2:
        allowed = "a batch of B >= 2 rows (every feature is standardised over the batch)"
        raise bad_argument("projections", projections, allowed, owner)
    if not all(view.is_floating_point() for view in views):
        raise bad_argument("projections", projections, "a floating-point tensor", owner)
    dtype = torch.promote_types(views[0].dtype, torch.float32)  # half and bf16 are computed in float32
    return [view.to(dtype) for view in views]


def view_pairs(count: int) -> list[tuple[int, int]]:
    """The unordered pairs of ``count`` views, ``(a, b)`` with ``a < b``."""
    return list(itertools.combinations(range(count), 2))


def standardise(z: Tensor, eps: float) -> Tensor:
    """``[B, D]`` with every column centred and divided by ``sqrt(biased variance + eps)`` (BatchNorm1d in
    training mode, without affine parameters)."""
    # Standardising is scale-free but for eps: each column is divided by its largest magnitude (when above 1)
    # and eps by its square, so that no square overflows for any finite input. The scale is held constant
    # (detached): the value is the same for every scale, so the gradient is too.
    scale = z.detach().abs().amax(dim=0).clamp_min(1.0)
    unit = z / scale
    centred = unit - unit.mean(dim=0)
    variance = centred.square().mean(dim=0) + eps / scale.square()
    return centred * torch.rsqrt(variance.clamp_min(torch.finfo(z.dtype).tiny))


@register_loss("barlow")
class BarlowTwinsLoss(nn.Module):
    r"""Barlow Twins: push the cross-correlation matrix of two views' standardised projections to the identity.

        C_ij = (1/B) sum_b zhat^A_bi zhat^B_bj,    zhat: each column standardised over the batch (eps)
        L    = scale * [ sum_i (1 - C_ii)^2  +  lambda sum_{i != j} C_ij^2 ]

    Called as ``loss(projections, other=None)``: the two views' projections ``[B, D]`` each, or one
    ``[B, V, D]`` tensor (what :class:`tunedcl.models.ContrastiveModel` returns for ``[B, V, C, H, W]`` views).
    Each view is standardised over its own batch of B >= 2 rows (B = 1 is a ValueError). The loss is symmetric
    in the two views (C becomes its transpose); with V > 2 views it is the mean over the V (V - 1) / 2 pairs
    of views. It is computed in float32 (float64 inputs in float64), outside any autocast, and is finite for
    every finite input: every |C_ij| <= 1, and a constant column standardises to 0 instead of 0 / 0.

    Not decomposable over the batch: the standardisation and C are statistics of the whole batch, so the loss
    of a batch split over processes is not the mean of the parts' losses. Under DDP, gather the projections
    of every rank first (:func:`tunedcl.distributed.gather_with_grad`, as the ``barlow`` method does with
    ``gather_distributed``): the loss of the gathered batch is then the one-process loss of that batch.

    Args:
        off_diagonal_weight: lambda, the weight of the redundancy (off-diagonal) term: 0.0051, the paper's
            value (solo-learn's ``lamb``, same default).
        loss_scale: a factor on the whole loss: 1.0, the paper's equation. solo-learn's ``scale_loss`` is 0.1 in
            its CIFAR recipe (scripts/pretrain/cifar/barlow.yaml) and 0.024 by default (solo/methods/barlow_twins.py);
            it matters with LARS, whose biases and norms take plain SGD steps of the loss's size.
        eps: added to each column's (biased) batch variance before the square root: 1e-5, BatchNorm1d's, as
            the authors' code; must be > 0.

    Example:
        >>> import torch
        >>> loss = BarlowTwinsLoss()
        >>> z = torch.randn(8, 2, 16)           # [B, V, D] projections of two views
        >>> value = loss(z)                     # the same as loss(z[:, 0], z[:, 1])
        >>> bool(torch.isclose(value, loss(z[:, 0], z[:, 1])))
        True
        >>> terms = loss.terms(z[:, 0], z[:, 0])  # identical views: C_ii = var / (var + eps), almost 1
        >>> bool(terms["on_diagonal"] < 1e-3), bool(terms["off_diagonal"] > 0)
        (True, True)
    """

    def __init__(self, off_diagonal_weight: float = 0.0051, loss_scale: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__()
        owner = "BarlowTwinsLoss"
        self.off_diagonal_weight = check_real("off_diagonal_weight", off_diagonal_weight, low=0.0, owner=owner)
        self.loss_scale = check_real("loss_scale", loss_scale, low=0.0, low_inclusive=False, owner=owner)
        self.eps = check_real("eps", eps, low=0.0, low_inclusive=False, owner=owner,
                              hint="it keeps a constant column finite")

    def terms(self, projections: Tensor, other: Tensor | None = None) -> dict[str, Tensor]:
        """The unweighted terms, each the mean over pairs of views: ``on_diagonal`` = sum_i (1 - C_ii)^2 and
        ``off_diagonal`` = sum_{i != j} C_ij^2."""
        views = projection_views(projections, other, "BarlowTwinsLoss")
        batch, dim = views[0].shape
        with torch.autocast(device_type=views[0].device.type, enabled=False):
            standardised = [standardise(view, self.eps) for view in views]
            off = ~torch.eye(dim, dtype=torch.bool, device=views[0].device)
            on_diagonal, off_diagonal = [], []
            for a, b in view_pairs(len(views)):
                correlation = standardised[a].T @ standardised[b] / batch
                on_diagonal.append((1.0 - correlation.diagonal()).square().sum())
                off_diagonal.append(correlation.square().masked_fill(~off, 0.0).sum())
        return {"on_diagonal": torch.stack(on_diagonal).mean(), "off_diagonal": torch.stack(off_diagonal).mean()}

    def forward(self, projections: Tensor, other: Tensor | None = None) -> Tensor:
        """The loss (a scalar) of ``[B, V, D]`` projections, or of two views' ``[B, D]`` projections."""
        terms = self.terms(projections, other)
        return self.loss_scale * (terms["on_diagonal"] + self.off_diagonal_weight * terms["off_diagonal"])

    def extra_repr(self) -> str:
        return f"off_diagonal_weight={self.off_diagonal_weight}, loss_scale={self.loss_scale}, eps={self.eps}"


__all__ = ["BarlowTwinsLoss", "projection_views", "standardise", "view_pairs"]
