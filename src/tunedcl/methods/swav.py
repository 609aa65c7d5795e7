"""``swav``: SwAV, Swapping Assignments between Views (Caron et al., "Unsupervised Learning of Visual Features
by Contrasting Cluster Assignments", NeurIPS 2020).

Encoder -> projector -> L2-normalised projection z -> scores ``z C^T`` against K prototypes (the rows of a
bias-free Linear, L2-normalised). Each view's codes come from Sinkhorn-Knopp over the batch (equipartition of
the batch among the prototypes), and each view predicts the codes of the others from its own scores
(:class:`tunedcl.losses.swav.SwAVLoss`, where the equations are). No negatives and no momentum target.

The parts and their defaults (the paper, and solo-learn scripts/pretrain/cifar/swav.yaml for CIFAR):
- projector ``Linear(d, 2048) - BN - ReLU - Linear(2048, 128)`` (solo-learn; the paper's ImageNet head is
  the same with 8000 hidden units): ``model.projection_hidden`` / ``model.projection_dim`` of the config.
- ``num_prototypes`` 3000 (the paper's ImageNet value, kept by solo-learn for CIFAR).
- ``temperature`` 0.1, ``sinkhorn_iterations`` 3, ``sinkhorn_epsilon`` 0.05 (the paper and solo-learn).
- ``freeze_prototypes_epochs`` 2 (solo-learn CIFAR; the paper freezes them for its first epoch's iterations):
  the prototypes get no gradient in those epochs, so the optimiser leaves them as initialised.
- ``queue_size`` 3840 from ``epoch_queue_starts`` 50 (solo-learn CIFAR; the paper's 3840 from epoch 15 on
  ImageNet at batch 256): a FIFO of past projections whose scores join each view's Sinkhorn-Knopp problem
  (0 disables it). As in solo-learn, it is filled from the first step, so it is full when first used.
- LARS, lr 0.6, weight decay 1e-6, biases and norms excluded (solo-learn CIFAR; the presets set it).

The prototypes are normalised in place, without gradient, at construction and after every optimiser step
that changed them, so every forward sees unit rows (the paper's code normalises them before each iteration;
solo-learn's weight normalisation with g = 1 does the same inside the forward). They are part of the trained
model (``model.prototypes``), so DDP averages their gradients; the queue lives on the method and is in its
checkpointed state.

Differences from the paper: no multi-crop (every view is a full-size view, all of them get codes and predict
each other's), and the swapped loss is averaged over the V (V - 1) ordered pairs of views (solo-learn) rather
than summed. Under DDP with ``train.gather_distributed`` (the default) the codes are computed over the
gathered global batch and the queue holds the gathered projections (identical on every rank); see
tests/test_method_swav.py for what that makes equal to one process.

DDP: while the prototypes are frozen they do not take part in the backward pass, so the training loop wraps the
model with ``find_unused_parameters=True`` (:attr:`SwAV.has_unused_parameters`); a hand-made wrapper without it
gets a ValueError at the first frozen step (DDP itself would fail with a less clear message at the next one).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from tunedcl import distributed
from tunedcl._checks import check_int
from tunedcl.losses import MemoryQueue, create_loss
from tunedcl.methods.base import Batch, Method, StepOutput, register_method
from tunedcl.models import ProjectionHead


class SwAVOutput(NamedTuple):
    """What :class:`SwAVNetwork` returns, each with the input's leading dimensions (``[B, V, .]`` for views)."""

    features: Tensor  # pooled encoder features
    projections: Tensor  # L2-normalised projections z
    scores: Tensor  # z C^T against the L2-normalised prototypes C


class SwAVNetwork(nn.Module):
    """Encoder + projector + prototypes: the trained model (``.encoder`` is what evaluation reads).

    ``prototypes_frozen`` (set by the method each step) makes the forward use the prototypes' weights
    detached, so that no gradient reaches them (their ``.grad`` stays None and the optimiser skips them).
    """

    def __init__(self, encoder: nn.Module, projector: nn.Module, prototypes: nn.Linear) -> None:
        super().__init__()
        self.encoder, self.projector, self.prototypes = encoder, projector, prototypes
        self.prototypes_frozen = False
        self.normalize_prototypes()

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise the prototypes' rows in place (without gradient)."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def forward(self, images: Tensor) -> SwAVOutput:
        leading = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:])
        features = self.encoder(flat)
        projections = F.normalize(self.projector(features), dim=-1)
        weight = self.prototypes.weight.detach() if self.prototypes_frozen else self.prototypes.weight
        scores = F.linear(projections, weight)
        return SwAVOutput(*(t.reshape(*leading, t.shape[-1]) for t in (features, projections, scores)))


@register_method("swav")
class SwAV(Method):
    """SwAV: each view predicts the Sinkhorn-Knopp cluster codes of the other views (swapped prediction).

    Hyperparameters (the config's ``loss.<name>``; defaults from solo-learn scripts/pretrain/cifar/swav.yaml and
    the paper, see the module docstring):
        temperature: the prediction softmax's temperature.
        num_prototypes: K, the number of prototypes (clusters).
        sinkhorn_iterations: Sinkhorn-Knopp rounds.
        sinkhorn_epsilon: the codes' entropy weight.
        queue_size: past projections kept in a FIFO queue whose scores join the Sinkhorn-Knopp problem (0: none).
        epoch_queue_starts: the first epoch (0-based) whose codes use the queue.
        freeze_prototypes_epochs: epochs (from the first) during which the prototypes get no gradient.

    Attributes:
        has_unused_parameters: True: in the freeze epochs the prototypes get no gradient, so under torchrun the
            model must be wrapped with ``DistributedDataParallel(..., find_unused_parameters=True)`` (a
            parameter unused on every rank then keeps ``.grad = None``, as in one process).
    """

    uses_labels = False
    min_views = 2
    has_unused_parameters: ClassVar[bool] = True

    def __init__(
        self,
        temperature: float = 0.1,
        num_prototypes: int = 3000,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        queue_size: int = 3840,
        epoch_queue_starts: int = 50,
        freeze_prototypes_epochs: int = 2,
    ) -> None:
        super().__init__(
            temperature=temperature, num_prototypes=num_prototypes, sinkhorn_iterations=sinkhorn_iterations,
            sinkhorn_epsilon=sinkhorn_epsilon, queue_size=queue_size, epoch_queue_starts=epoch_queue_starts,
            freeze_prototypes_epochs=freeze_prototypes_epochs,
        )
        self.loss = create_loss("swav", temperature=temperature, sinkhorn_iterations=sinkhorn_iterations,
                                sinkhorn_epsilon=sinkhorn_epsilon)  # validates them
        self.num_prototypes = check_int("num_prototypes", num_prototypes, low=1)
        self.queue_size = check_int("queue_size", queue_size, low=0, hint="0: no queue")
        self.epoch_queue_starts = check_int("epoch_queue_starts", epoch_queue_starts, low=0)
        self.freeze_prototypes_epochs = check_int("freeze_prototypes_epochs", freeze_prototypes_epochs, low=0)
        self.queue: MemoryQueue | None = None
        self.gather_distributed = False
        self.prototypes_frozen = False  # in the current step

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        self.gather_distributed = gather_distributed
        self.loss = create_loss("swav", temperature=self.loss.temperature,
                                sinkhorn_iterations=self.loss.sinkhorn_iterations,
                                sinkhorn_epsilon=self.loss.sinkhorn_epsilon, gather_distributed=gather_distributed)
        projector = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim, batch_norm=True)
        prototypes = nn.Linear(projection_dim, self.num_prototypes, bias=False)
        self.model = SwAVNetwork(encoder, projector, prototypes)
        self.queue = MemoryQueue(self.queue_size) if self.queue_size else None
        return self.model

    def uses_queue(self, epoch: int) -> bool:
        """Whether the codes of a step in ``epoch`` (0-based) use the queue (once it holds anything)."""
        return self.queue is not None and epoch >= self.epoch_queue_starts and len(self.queue) > 0

    def queued_projections(self) -> Tensor:
        """The queue's projections ``[Q, V, D]``, oldest first (``[0, 0]`` before the first enqueue)."""
        rows = self.queue.features
        return rows.reshape(rows.shape[0], -1, self.model.prototypes.in_features) if rows.numel() else rows

    def training_step(self, batch: Batch) -> StepOutput:
        self.prototypes_frozen = batch.epoch < self.freeze_prototypes_epochs
        if self.prototypes_frozen and isinstance(batch.forward, DistributedDataParallel) and not getattr(
            batch.forward, "find_unused_parameters", True
        ):  # DDP would fail at the next step with a message about unused parameters; say what to do instead
            raise ValueError(
                f"swav: freeze_prototypes_epochs={self.freeze_prototypes_epochs} needs DistributedDataParallel("
                "..., find_unused_parameters=True) under torchrun (frozen prototypes get no gradient); set "
                "loss.freeze_prototypes_epochs=0 or train in one process"
            )
        self.model.prototypes_frozen = self.prototypes_frozen
        out = batch.forward(batch.views)
        scores, projections = out.scores.float(), out.projections.float()
        batch.check_finite("the prototype scores", scores)
        queued_scores = None
        if self.uses_queue(batch.epoch):
            with torch.no_grad():
                weight = self.model.prototypes.weight.float()
                queued_scores = F.linear(self.queued_projections().to(weight), weight)
        loss = self.loss(scores, queued_scores)
        if self.queue is not None:
            rows = projections.detach()
            if self.gather_distributed:
                rows = distributed.gather(rows)  # every rank's queue holds the same (global) rows
            self.queue.enqueue(rows.reshape(rows.shape[0], -1), None)
        return StepOutput(loss, projections)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        if not self.prototypes_frozen:  # a frozen step left them as they were: keep them bit for bit
            self.model.normalize_prototypes()

    def state_dict(self) -> dict[str, Any]:
        return {"queue": self.queue.state_dict()} if self.queue is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.queue is not None:
            self.queue.load_state_dict(state["queue"])
            # The queue's rows are allocated like the saved ones (on the CPU when restored there): follow the model.
            self.queue.to(self.model.prototypes.weight.device)

    def to(self, device: torch.device) -> SwAV:
        if self.queue is not None:
            self.queue.to(device)
        return self
