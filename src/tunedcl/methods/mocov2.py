"""``mocov2``: MoCo v2+, momentum contrast with a queue of negatives, symmetric over the views.

MoCo (He et al., CVPR 2020) with MoCo v2's changes (Chen, Fan, Girshick, He, arXiv 2003.04297: an MLP
projector, temperature 0.2, stronger augmentation) and solo-learn's "v2+" ones (a loss symmetric over the two
views, a cosine momentum schedule). The trained model is an encoder + projector (``Linear - ReLU - Linear``,
no BatchNorm: solo-learn's mocov2plus projector); a momentum copy of both gives the keys; each view has a
FIFO queue of the momentum keys of past batches, which are the negatives
(:class:`tunedcl.losses.moco.MoCoInfoNCELoss`, k1 = 0, k2 = 1):

    loss = mean over ordered view pairs (v, w), v != w, of InfoNCE(q_v, k_w, queue_w)

For 2 views that is solo-learn's ``(L(q1, k2, queue2) + L(q2, k1, queue1)) / 2``; more views (``data.n_views``)
give every ordered pair. After the loss, each view's keys join its queue. After every optimiser step the momentum
network follows the online one, ``t <- m t + (1 - m) o``, the k-th update (1-based) using
``m = cosine_momentum(k - 1, total_steps, base_momentum, final_momentum)`` (base at the first update, as solo-learn
updates with the tau set one step earlier).

Defaults and their source:
    temperature 0.2, projector 2048 hidden / 256 out (``model.projection_hidden`` / ``model.projection_dim``
        in the presets), base_momentum 0.99, final_momentum 0.999, queue_size 32768 per view in the CIFAR
        presets: solo-learn scripts/pretrain/cifar/mocov2plus.yaml (SGD lr 0.3 x batch/256, weight decay 1e-4,
        batch 256, 10 warm-up epochs, cosine to 0, 1000 epochs).
    queue_size 65536 (the method's default): the MoCo / MoCo v2 papers' K and solo-learn's default.

Choices where this library differs (and why):
    - The queues start empty and fill with real keys (MoCo and solo-learn start from random unit vectors,
      which are uninformative negatives at similarity ~0): the first step has no negatives.
    - Each network runs on both views as one batch (B * V images, as every method here), so BatchNorm
      statistics are over both views; solo-learn normalises each view's batch separately.
    - Augmentation: the presets use ``simaug`` (crop scale 0.2-1, no blur); solo-learn's symmetric_weak has
      crop scale 0.08-1 and a Gaussian blur with p = 0.5 (no such preset here).
    - The laptop preset (mocov2-fashion-mnist) uses a queue of 4096: 16 batches of 256, 7% of an epoch of
      Fashion-MNIST's 60,000 images (MoCo's 65536 is 5% of ImageNet's), so no image meets a key of its own
      from an earlier epoch, and the oldest key is 16 steps old.

Distributed (DDP): the momentum keys are all-gathered (in rank order) before they are enqueued when
``train.gather_distributed`` is true (the default, and what MoCo and solo-learn do), so every rank holds the
same queues; with it false each rank keeps a queue of its own keys. The loss itself is per query (its own key
and the queue), and each rank's local mean averaged by DDP is the global mean. The networks' BatchNorm uses
per-rank batch statistics (no shuffle-BN as in MoCo, no SyncBN as in solo-learn's recipe), so 2 processes do
not equal 1 process exactly; a key's BatchNorm batch holds the keys of the same images as the queries'
batch, the information leak MoCo's shuffle-BN removes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunedcl import distributed
from tunedcl._checks import check_int, check_real
from tunedcl.losses import MemoryQueue, create_loss
from tunedcl.losses.inputs import unit_vectors
from tunedcl.losses.moco import MoCoInfoNCELoss
from tunedcl.methods.base import Batch, Method, StepOutput, register_method
from tunedcl.models import ContrastiveModel, ProjectionHead
from tunedcl.models.momentum import cosine_momentum, ema_update, frozen_copy


@register_method("mocov2")
class MoCoV2(Method):
    """MoCo v2+: InfoNCE of online queries against momentum keys and per-view queues of past keys."""

    uses_labels = False
    min_views = 2

    def __init__(
        self,
        temperature: float = 0.2,
        queue_size: int = 65536,
        base_momentum: float = 0.99,
        final_momentum: float = 0.999,
    ) -> None:
        self._setup(dict(temperature=temperature, queue_size=queue_size, base_momentum=base_momentum,
                         final_momentum=final_momentum), {})

    def _setup(self, hyperparameters: dict[str, Any], loss_weights: dict[str, Any]) -> None:
        """What every MoCo-shaped method shares; ``loss_weights`` are the loss's k1 / k2 arguments."""
        Method.__init__(self, **hyperparameters)
        self.queue_size = check_int("queue_size", hyperparameters["queue_size"], low=1)
        self.base_momentum = check_real("base_momentum", hyperparameters["base_momentum"], low=0.0, high=1.0)
        self.final_momentum = check_real("final_momentum", hyperparameters["final_momentum"], low=0.0, high=1.0)
        self.loss: MoCoInfoNCELoss = create_loss(
            "moco-infonce", temperature=hyperparameters["temperature"], **loss_weights
        )
        self.target: nn.Module | None = None
        self.queues = nn.ModuleList()  # one MemoryQueue per view, made at the first step (V is known then)
        self.gather_keys = False
        self.device = torch.device("cpu")
        self._target_format: torch.memory_format | None = None

    # --- parts ----------------------------------------------------------------------------------------------
    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        head = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim)
        self.model = ContrastiveModel(encoder, head)
        self.target = frozen_copy(self.model)  # starts equal to the online network, never gets gradients
        self.gather_keys = gather_distributed
        return self.model

    def momentum(self, step: int, total_steps: int) -> float:
        """The EMA momentum of the ``step``-th update (1-based): the cosine schedule one step earlier."""
        return cosine_momentum(step - 1, total_steps, self.base_momentum, self.final_momentum)

    def _queues(self, views: int) -> list[MemoryQueue]:
        if not self.queues:
            self.queues.extend(MemoryQueue(self.queue_size) for _ in range(views))
            self.queues.to(self.device)
        if len(self.queues) != views:
            raise ValueError(f"{self.name}: the queues were made for {len(self.queues)} views; this batch has {views}")
        return list(self.queues)

    # --- the step -------------------------------------------------------------------------------------------
    def training_step(self, batch: Batch) -> StepOutput:
        views = batch.views.shape[1]
        queries = batch.forward(batch.views).projections.float()  # [B, V, D]
        batch.check_finite("the embeddings", queries)
        with torch.no_grad():
            if self._target_format != batch.memory_format:  # the online model's format, for the same kernels
                self.target.to(memory_format=batch.memory_format)
                self._target_format = batch.memory_format
            self.target.train()
            keys = self.target(batch.views).projections.float()
        batch.check_finite("the momentum keys", keys)
        queues = self._queues(views)
        negatives = [queue.features if len(queue) else keys.new_zeros(0, keys.shape[-1]) for queue in queues]
        terms = [
            self.loss(queries[:, v], keys[:, w], negatives[w])
            for v in range(views)
            for w in range(views)
            if v != w
        ]
        loss = torch.stack(terms).mean()
        for w, queue in enumerate(queues):
            rows = unit_vectors(keys[:, w])
            queue.enqueue(distributed.gather(rows) if self.gather_keys else rows, None)
        return StepOutput(loss, queries)  # the queries: the loop's collapse check measures their spread

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        ema_update(self.target, self.model, self.momentum(step, total_steps))

    # --- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "queues": [queue.state_dict() for queue in self.queues]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        queues = nn.ModuleList(MemoryQueue(self.queue_size) for _ in state["queues"])
        for queue, saved in zip(queues, state["queues"], strict=True):
            rows = saved.get("_rows")
            if rows is not None and rows.shape[0] != self.queue_size:
                raise ValueError(
                    f"{self.name}: the checkpoint's queues hold {rows.shape[0]} keys; queue_size is {self.queue_size}"
                )
            queue.load_state_dict(saved)
        self.queues = queues.to(self.device)

    def to(self, device: torch.device) -> MoCoV2:
        self.device = torch.device(device)
        if self.target is not None:
            self.target.to(device)
        self.queues.to(device)
        return self
