"""``barlow``: Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021).

An encoder and a projector (``Linear - BN - ReLU`` blocks, then a ``Linear``) map two views of each image to
projections whose cross-correlation matrix over the batch is pushed to the identity
(:class:`tunedcl.losses.barlow.BarlowTwinsLoss`): no negatives, no target network, no predictor.

Defaults and their sources:
    off_diagonal_weight (lambda) 0.0051: the paper (solo-learn's ``lamb``, the same).
    loss_scale 1.0: the paper's equation. solo-learn scales the loss by ``scale_loss`` = 0.1 in
        scripts/pretrain/cifar/barlow.yaml (0.024 by default in solo/methods/barlow_twins.py): every barlow-*
        preset uses 0.1.
    eps 1e-5: the authors' code (BatchNorm1d(affine=False) standardises the projections).
    projector_hidden_layers 2: solo-learn's solo/methods/barlow_twins.py (Linear-BN-ReLU twice, then Linear; the
        paper's ImageNet projector is the same shape at 8192 units). Its sizes are the config's
        ``model.projection_hidden`` / ``model.projection_dim``: 2048 / 2048 in solo-learn's CIFAR recipe.
    The optimiser is the config's: solo-learn's CIFAR recipe (scripts/pretrain/cifar/barlow.yaml) is LARS
        (eta 0.02, clipped, biases and norms excluded from LARS and weight decay), lr 0.3, weight decay 1e-4,
        batch 256, 10 warm-up epochs of 1000, cosine to 0: the barlow-cifar10/100-resnet18 presets.

At laptop scale (barlow-fashion-mnist) the recipe is the same but for the small CNN, a 1024 / 1024 projector
and 15 epochs with 1 of warm-up. Every preset's views are ``simaug`` (crop scale 0.2-1, flip, colour jitter,
greyscale); solo-learn's CIFAR views are asymmetric (crop scale 0.08-1, solarisation with p 0.2 on the second).
"""

from __future__ import annotations

from tunedcl.losses.barlow import BarlowTwinsLoss
from tunedcl.methods.base import BatchLossMethod, register_method


@register_method("barlow")
class BarlowTwins(BatchLossMethod):
    """Barlow Twins: the two views' cross-correlation matrix pushed to the identity (no negatives, no target).

    Not batch-decomposable: the loss standardises every projection feature over the batch and correlates the
    views over the batch, and the projector's (and a ResNet's) BatchNorm layers use batch statistics. A
    2-process DDP run therefore does not equal one process on the concatenated batch. With
    ``gather_distributed`` (``train.gather_distributed``, on by default) each rank gathers every rank's
    projections with gradients before the loss, as solo-learn does (it all-reduces the correlation matrix), so
    the loss is that of the global batch's projections, the same on every rank, and its gradient the global
    loss's; the BatchNorm layers still normalise per rank (the loop does not use SyncBatchNorm, which
    solo-learn's recipe does). Without a process group the projections are used as they are (the only path
    tested here).
    """

    def __init__(self, off_diagonal_weight: float = 0.0051, loss_scale: float = 1.0, eps: float = 1e-5,
                 projector_hidden_layers: int = 2) -> None:
        loss = BarlowTwinsLoss(off_diagonal_weight=off_diagonal_weight, loss_scale=loss_scale, eps=eps)
        super().__init__(loss=loss, projector_hidden_layers=projector_hidden_layers,
                         off_diagonal_weight=off_diagonal_weight, loss_scale=loss_scale, eps=eps)
