"""``byol``: BYOL, Bootstrap Your Own Latent (Grill et al., NeurIPS 2020).

An online network (encoder -> projector -> predictor) predicts, for each view of an image, the projection
of every other view by a target network (encoder -> projector) whose weights are an exponential moving
average of the online ones, t <- tau t + (1 - tau) o, with tau rising on a cosine from ``base_momentum`` to
``final_momentum`` over training. Loss: :class:`tunedcl.losses.byol.BYOLLoss` (``2 - 2 cos``, summed over
the ordered pairs of views: the paper's symmetrised ``L + L~``). No negatives; the predictor, the
stop-gradient and the slowly moving target keep it from collapsing.

Parts and defaults (each with its source):

- projector and predictor: ``Linear - BatchNorm - ReLU - Linear`` (the paper, sec. 3.3); the projector's
  sizes come from ``model.projection_hidden`` / ``model.projection_dim`` (solo-learn
  scripts/pretrain/cifar/byol.yaml: 4096 / 256, the paper's ImageNet sizes too), the predictor's hidden
  size from ``loss.predictor_hidden`` (4096, the same file and the paper); its output is the projection size.
- momentum: ``base_momentum`` 0.99 (solo-learn scripts/pretrain/cifar/byol.yaml; the paper uses 0.996 on
  ImageNet), ``final_momentum`` 1.0 (the paper and solo-learn); the update after the k-th optimiser step
  (k = 1..K) uses tau((k - 1) / K) of :func:`tunedcl.models.cosine_momentum`, so the first update uses
  ``base_momentum`` (the paper's tau at step 0; solo-learn's order: update, then advance tau).
- optimiser (set in the presets, not here): LARS, lr 1.0, weight decay 1e-5, eta 0.02, biases and norms
  excluded from the adaptation, batch 256, 10 warm-up epochs, cosine to 0, 1000 epochs (solo-learn
  scripts/pretrain/cifar/byol.yaml).

The target runs in training mode (its BatchNorm uses the batch's statistics, as in the paper and solo-learn)
under ``torch.no_grad()`` and never holds gradients; its parameters follow by EMA, its BatchNorm buffers
come from its own forward passes. It lives on the method and is checkpointed with it (``state_dict``).

DDP: not batch-decomposable. The loss is a mean of per-image terms, but BatchNorm in the encoder, projector
and predictor (online and target) normalises with the statistics of each process's local batch, so 2
processes of B/2 images differ from one process of B (solo-learn uses SyncBatchNorm; tunedcl does not
convert). What holds instead: the targets stay identical on every rank (the same EMA of the same, DDP-
synchronised online weights), and each rank's loss is its own local mean, averaged by DDP's gradient mean.

At laptop scale (the Fashion-MNIST preset) the heads are narrower (1024 hidden) and the run short (15 epochs
with 1 warm-up epoch); BYOL's image augmentations (blur, solarisation) are replaced by ``simaug`` in every
preset, as tunedcl has no blur or solarisation (solo-learn's CIFAR recipe has no blur either).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_int, check_real
from tunedcl.losses.byol import BYOLLoss
from tunedcl.methods.base import Batch, Method, StepOutput, register_method
from tunedcl.models import ContrastiveModel, ProjectionHead, cosine_momentum, ema_update, frozen_copy


class PredictorOutput(NamedTuple):
    """What :class:`PredictorModel` returns, both ``[B, V, D]`` (or ``[N, D]`` for ``[N, C, H, W]`` images)."""

    projections: Tensor  # z = projector(encoder(x))
    predictions: Tensor  # p = predictor(z)


class PredictorModel(nn.Module):
    """Encoder -> projector -> predictor: the trained network of BYOL and SimSiam (``.encoder`` is evaluated).

    Accepts ``[N, C, H, W]`` images or ``[B, V, C, H, W]`` views (encoded as one batch, so BatchNorm sees all
    ``B * V`` of them, as in :class:`tunedcl.models.ContrastiveModel`).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projector, self.predictor = encoder, projector, predictor

    def forward(self, images: Tensor) -> PredictorOutput:
        if images.dim() not in (4, 5):
            raise bad_argument("images", images, "images [N, C, H, W] or views [B, V, C, H, W]", owner="PredictorModel")
        leading = images.shape[:-3]
        projections = self.projector(self.encoder(images.reshape(-1, *images.shape[-3:])))
        predictions = self.predictor(projections)
        return PredictorOutput(projections.reshape(*leading, -1), predictions.reshape(*leading, -1))


def batch_norm_heads(encoder: nn.Module, projection_dim: int, projection_hidden: int | None,
                     predictor_hidden: int) -> tuple[ProjectionHead, ProjectionHead]:
    """BYOL's projector and predictor, both ``Linear - BatchNorm - ReLU - Linear``."""
    projector = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim, batch_norm=True)
    predictor = ProjectionHead(projection_dim, predictor_hidden, projection_dim, batch_norm=True)
    return projector, predictor


@register_method("byol")
class BYOL(Method):
    """BYOL: predict an EMA target network's projections of the other views (no negatives).

    Args:
        base_momentum: the target's EMA momentum tau at the start of training, in [0, 1].
        final_momentum: tau at the end (cosine schedule in between), in [base_momentum, 1].
        predictor_hidden: hidden units of the predictor.
    """

    uses_labels = False
    min_views = 2

    def __init__(self, base_momentum: float = 0.99, final_momentum: float = 1.0, predictor_hidden: int = 4096) -> None:
        super().__init__(base_momentum=base_momentum, final_momentum=final_momentum, predictor_hidden=predictor_hidden)
        self.base_momentum = check_real("base_momentum", base_momentum, low=0.0, high=1.0, owner="byol")
        self.final_momentum = check_real(
            "final_momentum", final_momentum, low=self.base_momentum, high=1.0, owner="byol",
            hint="the momentum rises from base_momentum",
        )
        self.predictor_hidden = check_int("predictor_hidden", predictor_hidden, low=1, owner="byol")
        self.loss = BYOLLoss()
        self.target: ContrastiveModel | None = None
        self._online: ContrastiveModel | None = None  # the online encoder + projector in the target's layout
        self._target_format: torch.memory_format | None = None

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        projector, predictor = batch_norm_heads(encoder, projection_dim, projection_hidden, self.predictor_hidden)
        self.model = PredictorModel(encoder, projector, predictor)
        # The target starts as a copy of the online encoder + projector (the paper's initialisation).
        self._online = ContrastiveModel(encoder, projector)  # shares the model's modules (a view, not a copy)
        self.target = frozen_copy(self._online).train()
        return self.model

    def momentum(self, step: int, total_steps: int) -> float:
        """tau of the EMA update after optimiser step ``step`` (1-based) of ``total_steps``."""
        return cosine_momentum(step - 1, total_steps, self.base_momentum, self.final_momentum)

    def training_step(self, batch: Batch) -> StepOutput:
        online = batch.forward(batch.views)
        predictions = online.predictions.float()
        if self._target_format is not batch.memory_format:  # the loop converts the model, not the target
            self.target.to(memory_format=batch.memory_format)
            self._target_format = batch.memory_format
        with torch.no_grad():
            targets = self.target(batch.views).projections.float()
        batch.check_finite("the predictions and target projections", torch.stack([predictions.detach(), targets]))
        return StepOutput(self.loss(predictions, targets), embeddings=online.projections.detach().float())

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.target, self._online, self.momentum(step, total_steps))

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])

    def to(self, device: torch.device) -> BYOL:
        self.target.to(device)
        return self
