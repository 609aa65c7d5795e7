"""``simsiam``: SimSiam, Exploring Simple Siamese Representation Learning (Chen & He, CVPR 2021).

One network, encoder -> projector -> predictor, sees every view; each view's prediction p is pulled towards
the projection z of every other view of the image, and z is a constant (stop-gradient). Loss:
:class:`tunedcl.losses.simsiam.SimSiamLoss` (the symmetric negative cosine, 1/2 D(p1, z2) + 1/2 D(p2, z1)).
No negatives, no momentum target: the stop-gradient (and the predictor) keep it from collapsing.

Parts and defaults (each with its source):

- projector: ``Linear - BN - ReLU - Linear - BN - ReLU - Linear - BN`` (two hidden layers, BatchNorm without
  affine parameters on the output, no biases before a BatchNorm: the paper's sec. 4 and solo-learn's
  simsiam.py); its sizes come from ``model.projection_hidden`` / ``model.projection_dim`` (2048 / 2048 in
  solo-learn scripts/pretrain/cifar/simsiam.yaml and the paper).
- predictor: ``Linear - BN - ReLU - Linear`` with a bottleneck of ``loss.predictor_hidden`` units (512: the
  paper and solo-learn scripts/pretrain/cifar/simsiam.yaml); its output is the projection size.
- the predictor's learning rate is not decayed (``fixed_predictor_lr``, True: the paper's sec. 4.2 / Table 1
  and solo-learn's ``static_lr``); the rest follows the warm-up + cosine schedule.
- optimiser (set in the presets, not here): SGD with momentum 0.9, lr 0.5, weight decay 1e-5, batch 256,
  10 warm-up epochs, cosine to 0, 1000 epochs (solo-learn scripts/pretrain/cifar/simsiam.yaml; the paper's
  CIFAR run uses lr 0.03 x batch / 256 and weight decay 5e-4 for 800 epochs).

DDP: not batch-decomposable. The loss is a mean of per-image terms, but every BatchNorm (encoder, projector,
predictor) normalises with the statistics of each process's local batch, so 2 processes of B/2 images differ
from one process of B (solo-learn uses SyncBatchNorm; tunedcl does not convert). What holds instead: each
rank's loss is the mean over its own images, and DDP averages the gradients, which equals the single-process
gradient of a batch whose BatchNorm statistics are taken per half ("ghost" BatchNorm).

At laptop scale (the Fashion-MNIST preset) the heads are narrower (1024 / 1024, predictor 256: the paper's
1/4 bottleneck) and the run short (15 epochs with 1 warm-up epoch); the views come from ``simaug`` in every
preset (solo-learn's CIFAR recipe adds Gaussian blur, which tunedcl does not have).
"""

from __future__ import annotations

import torch
from torch import nn

from tunedcl._checks import check_bool, check_int
from tunedcl.losses.simsiam import SimSiamLoss
from tunedcl.methods.base import Batch, Method, StepOutput, register_method
from tunedcl.methods.byol import PredictorModel
from tunedcl.models import ProjectionHead


@register_method("simsiam")
class SimSiam(Method):
    """SimSiam: predict the stop-gradient projections of the other views (no negatives, no target network).

    Args:
        predictor_hidden: hidden units of the predictor's bottleneck.
        fixed_predictor_lr: keep the predictor's learning rate at its peak (the paper's choice) instead of
            following the schedule.
    """

    uses_labels = False
    min_views = 2

    def __init__(self, predictor_hidden: int = 512, fixed_predictor_lr: bool = True) -> None:
        super().__init__(predictor_hidden=predictor_hidden, fixed_predictor_lr=fixed_predictor_lr)
        self.predictor_hidden = check_int("predictor_hidden", predictor_hidden, low=1, owner="simsiam")
        self.fixed_predictor_lr = check_bool("fixed_predictor_lr", fixed_predictor_lr, owner="simsiam")
        self.loss = SimSiamLoss()

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        projector = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim, batch_norm=True,
                                   hidden_layers=2, output_batch_norm=True)
        predictor = ProjectionHead(projection_dim, self.predictor_hidden, projection_dim, batch_norm=True)
        self.model = PredictorModel(encoder, projector, predictor)
        return self.model

    def training_step(self, batch: Batch) -> StepOutput:
        out = batch.forward(batch.views)
        projections, predictions = out.projections.float(), out.predictions.float()
        batch.check_finite("the projections and predictions", torch.stack([projections.detach(), predictions.detach()]))
        return StepOutput(self.loss(predictions, projections), embeddings=projections.detach())

    def fixed_lr_modules(self) -> list[nn.Module]:
        return [self.model.predictor] if self.fixed_predictor_lr else []
