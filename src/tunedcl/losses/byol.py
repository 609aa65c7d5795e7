r"""BYOL's regression loss (Grill et al., NeurIPS 2020): a prediction of one view regresses the target
network's projection of another view of the same image, both L2-normalised (BYOL eq. 2):

    l(p, z') = || p / ||p||  -  z' / ||z'|| ||^2  =  2 - 2 <p, z'> / (||p|| ||z'||)

z' is a constant (stop-gradient, ``sg`` in the paper): no gradient reaches it. With ``[B, V, D]`` inputs
every view's prediction regresses the target of every other view of its image, summed over the ordered pairs
(v, w), v != w: for V = 2 views that is BYOL's symmetrised loss L + L~ (and solo-learn's sum over pairs).

The cosine helpers here are shared with SimSiam's loss (:mod:`tunedcl.losses.simsiam`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_choice
from tunedcl.losses.family import register_loss
from tunedcl.losses.inputs import unit_vectors

REDUCTIONS = ("mean", "sum", "none")


def check_pair(predictions: object, targets: object, owner: str) -> None:
    """Both floating-point tensors of one shape, ``[N, D]`` (row i regresses row i) or ``[B, V >= 2, D]``."""
    allowed = "a non-empty floating-point tensor [N, D] or [B, V, D] with V >= 2"
    if (
        not isinstance(predictions, Tensor)
        or not predictions.is_floating_point()
        or predictions.ndim not in (2, 3)
        or predictions.numel() == 0
        or (predictions.ndim == 3 and predictions.shape[1] < 2)
    ):
        raise bad_argument("predictions", predictions, allowed, owner)
    if not isinstance(targets, Tensor) or not targets.is_floating_point() or targets.shape != predictions.shape:
        shape = tuple(predictions.shape)
        raise bad_argument("targets", targets, f"a floating-point tensor of the predictions' shape {shape}", owner)


def pair_cosines(predictions: Tensor, targets: Tensor) -> Tensor:
    """``cos(p, sg(z))`` of every pair the loss sums: ``[N, 1]`` for ``[N, D]`` inputs (row with row), and
    ``[B, V (V - 1)]`` for ``[B, V, D]`` inputs (view v's prediction with view w's target, w != v, v-major).

    Computed in float32 (float64 stays float64) with autocast off; no gradient reaches ``targets``.
    """
    dtype = torch.float64 if predictions.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=predictions.device.type, enabled=False):
        p = unit_vectors(predictions.to(dtype))
        z = unit_vectors(targets.detach().to(dtype))
        if p.ndim == 2:
            return (p * z).sum(dim=-1, keepdim=True)
        cosines = torch.einsum("bvd,bwd->bvw", p, z)  # [B, V, V]: prediction of v against target of w
        views = p.shape[1]
        other = ~torch.eye(views, dtype=torch.bool, device=p.device)
        return cosines[:, other]


def reduce_samples(per_sample: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


@register_loss("byol")
class BYOLLoss(nn.Module):
    r"""BYOL's regression loss ``2 - 2 cos(p, sg(z'))``, summed over the ordered pairs of distinct views.

        L_b = sum_{v != w} ( 2 - 2 <p_bv, z'_bw> / (||p_bv|| ||z'_bw||) ),     loss = mean_b L_b

    Called as ``loss(predictions, targets)``:
        predictions: the online network's predictions, ``[B, V, D]`` (V >= 2 views of each of B images), or
            ``[N, D]`` (row i regresses row i of ``targets``: one pair per row).
        targets: the target network's projections, the same shape; treated as constants (stop-gradient).

    Each pair's term lies in [0, 4]; with V = 2 views ``L_b`` is the paper's ``L + L~`` and lies in [0, 8].
    Both vectors are normalised safely (:func:`unit_vectors`), so the loss is finite for every finite input.
    Half-precision inputs are computed in float32 (the result is float32); float64 stays float64.

    Args:
        reduction: ``"mean"`` over images (rows for ``[N, D]``), ``"sum"``, or ``"none"`` for ``[B]`` (``[N]``).

    Example:
        >>> import torch
        >>> loss = BYOLLoss()
        >>> targets = torch.randn(8, 2, 256)                          # [B, V, D]
        >>> predictions = torch.randn(8, 2, 256, requires_grad=True)
        >>> value = loss(predictions, targets)
        >>> value.backward()
        >>> bool(0.0 <= value <= 8.0), predictions.grad.shape
        (True, torch.Size([8, 2, 256]))
        >>> bool(loss(targets.flip(1), targets).abs() < 1e-6)          # each view predicts the other exactly
        True
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, REDUCTIONS, owner="BYOLLoss")

    def forward(self, predictions: Tensor, targets: Tensor) -> Tensor:
        check_choice("reduction", self.reduction, REDUCTIONS, owner="BYOLLoss")
        check_pair(predictions, targets, "BYOLLoss")
        per_sample = (2.0 - 2.0 * pair_cosines(predictions, targets)).sum(dim=1)
        return reduce_samples(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
