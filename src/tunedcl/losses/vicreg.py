r"""``vicreg``: the VICReg loss (Bardes, Ponce & LeCun, ICLR 2022): variance-invariance-covariance regularisation
of two views' projections.

For the ``[B, D]`` projections Z and Z' of two views of the same B images:

    L    = lambda s(Z, Z')  +  mu [v(Z) + v(Z')]  +  nu [c(Z) + c(Z')]
    s    = (1 / (B D)) sum_b ||z_b - z'_b||^2                             invariance (mean squared error)
    v(Z) = (1 / D) sum_j max(0, gamma - sqrt(Var(z^j) + eps))             variance: a hinge on each feature's std
    c(Z) = (1 / D) sum_{i != j} Cov(Z)_ij^2                               covariance: decorrelated features
    Cov(Z) = (1 / (B - 1)) sum_b (z_b - zbar)(z_b - zbar)^T,   Var(z^j) = Cov(Z)_jj   (unbiased)

The paper's eq. (5) writes s as ``(1 / B) sum_b ||z_b - z'_b||^2``; its code (and solo-learn) average over the
D features too (``F.mse_loss``), and the weights lambda = mu = 25, nu = 1 were tuned with that: s here is the
code's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tunedcl._checks import check_real
from tunedcl.losses.barlow import projection_views, view_pairs
from tunedcl.losses.family import register_loss


def _magnitude(*tensors: Tensor) -> Tensor:
    """The largest magnitude of the tensors' entries, at least 1, held constant (detached)."""
    return torch.stack([t.detach().abs().amax() for t in tensors]).amax().clamp_min(1.0)


# Every term is computed on projections divided by a scale s >= 1 and multiplied back by s^2 (s^4), one factor
# of s at a time: no intermediate overflows (or becomes inf - inf = NaN) for any finite input, and the value is
# inf only where the loss itself exceeds the dtype's range (its terms grow as |z|^2 and |z|^4). The scale is
# held constant (detached): the value is the same for every s, so the gradient is too. s = 1 when |z| <= 1.
def invariance(a: Tensor, b: Tensor) -> Tensor:
    """s(Z, Z') = mean over the B x D entries of (z - z')^2."""
    scale = _magnitude(a, b)
    return F.mse_loss(a / scale, b / scale) * scale * scale


def variance(z: Tensor, gamma: float, eps: float) -> Tensor:
    """v(Z) = (1 / D) sum_j max(0, gamma - sqrt(Var(z^j) + eps)), the unbiased variance over the batch."""
    scale = z.detach().abs().amax(dim=0).clamp_min(1.0)  # per feature, so that small features keep their digits
    unit = z / scale
    inner = unit.var(dim=0) + eps / scale.square()
    std = scale * torch.sqrt(inner.clamp_min(torch.finfo(z.dtype).tiny))
    return F.relu(gamma - std).mean()


def covariance(z: Tensor) -> Tensor:
    """c(Z) = (1 / D) sum_{i != j} Cov(Z)_ij^2, the unbiased covariance over the batch."""
    batch, dim = z.shape
    scale = _magnitude(z)
    unit = z / scale
    centred = unit - unit.mean(dim=0)
    cov = centred.T @ centred / (batch - 1)
    off = torch.eye(dim, dtype=torch.bool, device=z.device)
    value = cov.square().masked_fill(off, 0.0).sum() / dim
    return value * scale * scale * scale * scale


@register_loss("vicreg")
class VICRegLoss(nn.Module):
    r"""VICReg: invariance between views, a hinge on each feature's std and decorrelated features, per view.

        L = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]
        s: mean squared error;  v: (1/D) sum_j max(0, gamma - sqrt(Var(z^j) + eps));  c: (1/D) sum_{i != j} Cov_ij^2

    Called as ``loss(projections, other=None)``: the two views' projections ``[B, D]`` each, or one
    ``[B, V, D]`` tensor (what :class:`tunedcl.models.ContrastiveModel` returns for ``[B, V, C, H, W]`` views).
    Variances and covariances are unbiased statistics over the B >= 2 rows of each view (B = 1 is a
    ValueError). The loss is symmetric in the two views; with V > 2 views it is the mean over the V (V - 1) / 2
    pairs of views, i.e. ``lambda mean_pairs s + (2 / V) sum_v (mu v(Z_v) + nu c(Z_v))`` (each view's
    regularisers once, with the weight they have in the two-view loss). It is computed in float32 (float64
    inputs in float64), outside any autocast; a constant feature has std sqrt(eps), never 0 / 0. It never
    gives NaN for finite inputs, and is infinite only where its value exceeds the dtype's range (s grows as
    |z|^2 and c as |z|^4: beyond |z| ~ 1e9 in float32).

    Not decomposable over the batch: the variances and covariances are statistics of the whole batch. The
    authors' code (and solo-learn) gather the projections of every rank before the variance and covariance
    terms; the ``vicreg`` method with ``gather_distributed`` gathers them for all three terms
    (:func:`tunedcl.distributed.gather_with_grad`), which gives the same invariance term (a mean over rows).

    Args:
        invariance_weight: lambda, 25.0 (the paper; solo-learn's ``sim_loss_weight``, same).
        variance_weight: mu, 25.0 (the paper; solo-learn's ``var_loss_weight``, same).
        covariance_weight: nu, 1.0 (the paper; solo-learn's ``cov_loss_weight``, same).
        variance_target: gamma, the std each feature is held at or above: 1.0 (the paper).
        eps: added to each feature's variance before the square root: 1e-4 (the paper's code); must be > 0.

    Example:
        >>> import torch
        >>> loss = VICRegLoss()
        >>> z = torch.randn(8, 2, 16)           # [B, V, D] projections of two views
        >>> bool(torch.isclose(loss(z), loss(z[:, 0], z[:, 1])))
        True
        >>> float(loss.terms(z[:, 0], z[:, 0])["invariance"])   # identical views
        0.0
    """

    def __init__(self, invariance_weight: float = 25.0, variance_weight: float = 25.0, covariance_weight: float = 1.0,
                 variance_target: float = 1.0, eps: float = 1e-4) -> None:
        super().__init__()
        owner = "VICRegLoss"
        self.invariance_weight = check_real("invariance_weight", invariance_weight, low=0.0, owner=owner)
        self.variance_weight = check_real("variance_weight", variance_weight, low=0.0, owner=owner)
        self.covariance_weight = check_real("covariance_weight", covariance_weight, low=0.0, owner=owner)
        self.variance_target = check_real("variance_target", variance_target, low=0.0, owner=owner)
        self.eps = check_real("eps", eps, low=0.0, low_inclusive=False, owner=owner,
                              hint="it keeps a constant feature finite")

    def terms(self, projections: Tensor, other: Tensor | None = None) -> dict[str, Tensor]:
        """The unweighted terms as the loss averages them over pairs of views: ``invariance`` (mean of s over
        pairs), ``variance`` and ``covariance`` ((2 / V) sum_v, i.e. v(Z) + v(Z') with two views)."""
        views = projection_views(projections, other, "VICRegLoss")
        share = 2.0 / len(views)
        with torch.autocast(device_type=views[0].device.type, enabled=False):
            pairs = [invariance(views[a], views[b]) for a, b in view_pairs(len(views))]
            return {
                "invariance": torch.stack(pairs).mean(),
                "variance": share * torch.stack([variance(v, self.variance_target, self.eps) for v in views]).sum(),
                "covariance": share * torch.stack([covariance(v) for v in views]).sum(),
            }

    def forward(self, projections: Tensor, other: Tensor | None = None) -> Tensor:
        """The loss (a scalar) of ``[B, V, D]`` projections, or of two views' ``[B, D]`` projections."""
        terms = self.terms(projections, other)
        return (self.invariance_weight * terms["invariance"] + self.variance_weight * terms["variance"]
                + self.covariance_weight * terms["covariance"])

    def extra_repr(self) -> str:
        return (f"invariance_weight={self.invariance_weight}, variance_weight={self.variance_weight}, "
                f"covariance_weight={self.covariance_weight}, variance_target={self.variance_target}, eps={self.eps}")


__all__ = ["VICRegLoss", "covariance", "invariance", "variance"]
