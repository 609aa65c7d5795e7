"""``vicreg``: VICReg (Bardes, Ponce & LeCun, ICLR 2022).

An encoder and a projector (``Linear - BN - ReLU`` blocks, then a ``Linear``) map two views of each image to
projections that are pulled together (mean squared error) while each view's features are held at a standard
deviation of at least gamma over the batch and decorrelated (:class:`tunedcl.losses.vicreg.VICRegLoss`): no
negatives, no target network, no predictor.

Defaults and their sources:
    invariance_weight 25, variance_weight 25, covariance_weight 1 (lambda, mu, nu): the paper, and solo-learn's
        ``sim_loss_weight`` / ``var_loss_weight`` / ``cov_loss_weight`` in scripts/pretrain/cifar/vicreg.yaml.
    variance_target (gamma) 1 and eps 1e-4: the paper (and its code).
    projector_hidden_layers 2: solo-learn's solo/methods/vicreg.py (Linear-BN-ReLU twice, then Linear; the paper's
        ImageNet expander is the same shape at 8192 units). Its sizes are the config's
        ``model.projection_hidden`` / ``model.projection_dim``: 2048 / 2048 in solo-learn's CIFAR recipe.
    The optimiser is the config's: solo-learn's CIFAR recipe (scripts/pretrain/cifar/vicreg.yaml) is LARS
        (eta 0.02, clipped, biases and norms excluded from LARS and weight decay), lr 0.3, weight decay 1e-4,
        batch 256, 10 warm-up epochs of 1000, cosine to 0: the vicreg-cifar10/100-resnet18 presets.

At laptop scale (vicreg-fashion-mnist) the recipe is the same but for the small CNN, a 1024 / 1024 projector
and 15 epochs with 1 of warm-up. Every preset's views are ``simaug`` (crop scale 0.2-1, flip, colour jitter,
greyscale); solo-learn's CIFAR views also solarise with p 0.1.
"""

from __future__ import annotations

from tunedcl.losses.vicreg import VICRegLoss
from tunedcl.methods.base import BatchLossMethod, register_method


@register_method("vicreg")
class VICReg(BatchLossMethod):
    """VICReg: invariance between the views, a variance floor and decorrelation per view (no negatives, no target).

    Not batch-decomposable: the variance and covariance terms are statistics over the batch, and the
    projector's (and a ResNet's) BatchNorm layers use batch statistics. A 2-process DDP run therefore does not
    equal one process on the concatenated batch. With ``gather_distributed`` (``train.gather_distributed``, on
    by default) each rank gathers every rank's projections with gradients before the loss, as the authors' code
    and solo-learn do (for the variance and covariance terms; the invariance term, a mean over rows, is the
    same either way), so the loss is that of the global batch's projections, the same on every rank, and its
    gradient the global loss's; the BatchNorm layers still normalise per rank (the loop does not use
    SyncBatchNorm, which solo-learn's recipe does). Without a process group the projections are used as they
    are (the only path tested here).
    """

    def __init__(self, invariance_weight: float = 25.0, variance_weight: float = 25.0, covariance_weight: float = 1.0,
                 variance_target: float = 1.0, eps: float = 1e-4, projector_hidden_layers: int = 2) -> None:
        weights = dict(invariance_weight=invariance_weight, variance_weight=variance_weight,
                       covariance_weight=covariance_weight, variance_target=variance_target, eps=eps)
        super().__init__(loss=VICRegLoss(**weights), projector_hidden_layers=projector_hidden_layers, **weights)
