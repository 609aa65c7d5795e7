r"""SimSiam's symmetric negative cosine similarity (Chen & He, CVPR 2021), with its stop-gradient:

    D(p, z) = - <p, sg(z)> / (||p|| ||z||),        L = 1/2 D(p1, z2) + 1/2 D(p2, z1)       (SimSiam eq. 1-2)

p is the predictor's output for one view, z the projector's output for the other view, treated as a constant
(``sg``: no gradient flows through it; without it SimSiam collapses). With ``[B, V, D]`` inputs the loss is
the mean of D over the ordered pairs (v, w), v != w, which is eq. 2 for V = 2 views.
"""

from __future__ import annotations

from torch import Tensor, nn

from tunedcl._checks import check_choice
from tunedcl.losses.byol import REDUCTIONS, check_pair, pair_cosines, reduce_samples
from tunedcl.losses.family import register_loss


@register_loss("simsiam")
class SimSiamLoss(nn.Module):
    r"""SimSiam's loss: the negative cosine of a prediction and the stop-gradient projection of another view.

        L_b = - (1 / (V (V - 1))) sum_{v != w} <p_bv, sg(z_bw)> / (||p_bv|| ||z_bw||),     loss = mean_b L_b

    Called as ``loss(predictions, targets)``:
        predictions: the predictor's outputs ``p``, ``[B, V, D]`` (V >= 2 views of each of B images), or
            ``[N, D]`` (row i is compared with row i of ``targets``: one pair per row).
        targets: the projector's outputs ``z``, the same shape; treated as constants (stop-gradient): the
            loss's gradient with respect to them is zero.

    The value lies in [-1, 1] (-1: every prediction points along its targets). Both vectors are normalised
    safely (:func:`tunedcl.losses.inputs.unit_vectors`), so the loss is finite for every finite input.
    Half-precision inputs are computed in float32 (the result is float32); float64 stays float64.

    Args:
        reduction: ``"mean"`` over images (rows for ``[N, D]``), ``"sum"``, or ``"none"`` for ``[B]`` (``[N]``).

    Example:
        >>> import torch
        >>> loss = SimSiamLoss()
        >>> projections = torch.randn(8, 2, 2048, requires_grad=True)   # z: [B, V, D]
        >>> predictions = torch.randn(8, 2, 2048, requires_grad=True)   # p = h(z)
        >>> value = loss(predictions, projections)
        >>> value.backward()
        >>> bool(-1.0 <= value <= 1.0), projections.grad is None         # the stop-gradient branch
        (True, True)
        >>> round(loss(projections.flip(1), projections).item(), 6)     # each view predicts the other exactly
        -1.0
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_choice("reduction", reduction, REDUCTIONS, owner="SimSiamLoss")

    def forward(self, predictions: Tensor, targets: Tensor) -> Tensor:
        check_choice("reduction", self.reduction, REDUCTIONS, owner="SimSiamLoss")
        check_pair(predictions, targets, "SimSiamLoss")
        per_sample = -pair_cosines(predictions, targets).mean(dim=1)
        return reduce_samples(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
