"""What a training method is: the parts it builds, its loss, its step, its hook after the optimiser step and
the state it checkpoints. ``tunedcl.train`` runs any registered method and knows none by name.

A method is one file in this package: a subclass of :class:`Method` (or of :class:`ContrastiveMethod` when
it is an encoder + projection head trained with one registered loss), registered with
``@register_method("name")``. Its hyperparameters are its ``__init__`` keyword arguments (typed, each with
its one default), and a contrastive method's are its loss family's as well; they are the keys of a config's
``loss`` section (``loss.method`` names the method). See docs/extending.md for a worked example.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from tunedcl import distributed
from tunedcl._checks import check_int
from tunedcl.losses import LOSSES, ContrastiveLoss, create_loss
from tunedcl.losses.family import family_parameters
from tunedcl.models import ContrastiveModel, ProjectionHead
from tunedcl.registry import Registry, named_parameters

METHODS: Registry[type[Method]] = Registry("method")

# The shared loss options a contrastive method exposes as hyperparameters (reduction, normalize and
# gather_distributed are the training loop's business).
LOSS_OPTIONS = ("chunk_size", "similarity_dtype", "queue_size")


@dataclass
class Batch:
    """One training step's input, as the loop hands it to :meth:`Method.training_step`."""

    views: Tensor  # [B, V, C, H, W] normalised augmented views (contiguous)
    labels: Tensor  # [B] class labels (a method that does not use labels ignores them)
    forward: Callable[[Tensor], Any]  # the trained model, DDP-wrapped under torchrun: call it, not .model
    memory_format: torch.memory_format  # of image batches the method feeds to ``forward`` itself
    check_finite: Callable[[str, Tensor], None]  # raises (on every rank together) if a tensor is not finite
    step: int = 0  # optimiser steps done before this one
    epoch: int = 0  # the epoch this step belongs to (0-based)


@dataclass
class StepOutput:
    """What a step returns: the loss to minimise, and what the loop logs."""

    loss: Tensor  # scalar
    embeddings: Tensor | None = None  # [B, V, D] what the loss saw (for train.log_gradients); None: nothing
    labels: Tensor | None = None  # the positives' labels the loss used (None: instance positives)
    is_global: bool = False  # the value is already the mean over every rank (a gathered loss)


def init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The named keyword arguments of ``cls.__init__`` (``**kwargs`` left out), in order."""
    return named_parameters(cls.__init__)


class Method:
    """A training method (base class). Subclasses set the class attributes and override what differs.

    Attributes:
        uses_labels: trains with class labels (supervised) or without (self-supervised).
        fixed_views: a fixed number of views per image (cross-entropy: 1), or None for ``data.n_views``.
        min_views: the fewest views per image it can train with (self-supervised contrastive: 2).
        has_classifier: the trained model outputs class logits; evaluation scores them too.
        has_unused_parameters: some model parameters get no gradient in some steps (frozen prototypes):
            DDP then searches for them every step.
    """

    name: ClassVar[str] = ""  # set by @register_method
    uses_labels: ClassVar[bool] = True
    fixed_views: ClassVar[int | None] = None
    min_views: ClassVar[int] = 1
    has_classifier: ClassVar[bool] = False
    has_unused_parameters: ClassVar[bool] = False

    def __init__(self, **hyperparameters: Any) -> None:
        self.hyperparameters = hyperparameters
        self.model: nn.Module | None = None

    @classmethod
    def hyperparameter_specs(cls) -> dict[str, inspect.Parameter]:
        """Every hyperparameter (name -> its parameter: annotation and the one default), in order."""
        return init_parameters(cls)

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        """Build and return the trained model (its ``state_dict`` is the checkpoint's ``model``) and any
        other part (loss, target network); keep them on ``self``."""
        raise NotImplementedError

    def training_step(self, batch: Batch) -> StepOutput:
        """Views and labels in, loss (and what to log) out."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after every optimiser step, with the steps done so far (``step``, 1-based) of ``total_steps``
        (an EMA update of a target network, and its momentum schedule, go here)."""

    def fixed_lr_modules(self) -> list[nn.Module]:
        """Parts of the model whose learning rate stays at its peak instead of following the schedule
        (SimSiam's predictor)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        """State besides the model's weights that the run must checkpoint (queues, targets), per rank."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def to(self, device: torch.device) -> Method:
        """Move every part that holds tensors to ``device`` (the model is moved by the loop)."""
        return self

    def evaluated_encoder(self, model: nn.Module) -> nn.Module:
        """The network whose pooled features the linear probe and kNN evaluate."""
        return model.encoder

    def gradient_terms(self) -> dict[str, Any] | None:
        """TCL terms for the gradient analysis of train.log_gradients (tcl.md §2), or None (not logged)."""
        return None


class ContrastiveMethod(Method):
    """Encoder + projection head trained with one registered loss on the views' projections.

    Subclasses name the loss (``loss_name``) and say whether labels give the positives; the loss family's
    hyperparameters (and its defaults) are the method's, plus ``chunk_size``, ``similarity_dtype`` and
    ``queue_size``.
    """

    loss_name: ClassVar[str] = ""

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        self.loss: ContrastiveLoss = create_loss(self.loss_name, **self.loss_arguments())  # validates them

    def loss_arguments(self) -> dict[str, Any]:
        """The hyperparameters that are the loss's (a subclass may add its own to ``__init__``)."""
        accepted = self.loss_specs()
        return {key: value for key, value in self.hyperparameters.items() if key in accepted}

    @classmethod
    def loss_specs(cls) -> dict[str, inspect.Parameter]:
        family = LOSSES.get(cls.loss_name)
        shared = inspect.signature(ContrastiveLoss.__init__).parameters
        specs = dict(family_parameters(family))
        specs.update({name: shared[name] for name in LOSS_OPTIONS})
        return specs

    @classmethod
    def hyperparameter_specs(cls) -> dict[str, inspect.Parameter]:
        """The subclass's own ``__init__`` arguments (if it declares any), then its loss's."""
        return {**init_parameters(cls), **cls.loss_specs()}

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        self.loss = create_loss(self.loss_name, **self.loss_arguments(), gather_distributed=gather_distributed)
        self.loss.check_inputs_finite = False  # the loop checks the embeddings (batch.check_finite)
        head = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim)
        self.model = ContrastiveModel(encoder, head)
        return self.model

    def training_step(self, batch: Batch) -> StepOutput:
        projections = batch.forward(batch.views).projections.float()
        batch.check_finite("the embeddings", projections)
        labels = batch.labels if self.uses_labels else None
        loss = self.loss(projections, labels)
        return StepOutput(loss, projections, labels, is_global=self.loss.gather_distributed)

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.load_state_dict(state["loss"])

    def to(self, device: torch.device) -> ContrastiveMethod:
        self.loss = self.loss.to(device)
        return self

    def gradient_terms(self) -> dict[str, Any] | None:
        return self.loss.gradient_terms()


class BatchLossMethod(Method):
    """Encoder + a BatchNorm projector trained with a loss of the whole batch's projections ``[B, V, D]``
    (Barlow Twins' cross-correlation, VICReg's variance and covariance). Under DDP with ``gather_distributed``
    the projections of every rank are gathered with their gradients first, so the loss sees the global batch
    (the value is then global, and DDP's averaging gives its exact gradient); BatchNorm stays per rank.

    Subclasses pass their loss and ``projector_hidden_layers`` (with the rest of their hyperparameters) to
    ``__init__``.
    """

    uses_labels = False
    min_views = 2

    def __init__(self, *, loss: nn.Module, projector_hidden_layers: int, **hyperparameters: Any) -> None:
        super().__init__(projector_hidden_layers=projector_hidden_layers, **hyperparameters)
        self.loss = loss
        self.projector_hidden_layers = check_int("projector_hidden_layers", projector_hidden_layers, low=1,
                                                 owner=self.name or type(self).__name__)
        self.gather = False

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        projector = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim, batch_norm=True,
                                   hidden_layers=self.projector_hidden_layers)
        self.model = ContrastiveModel(encoder, projector)
        self.gather = gather_distributed
        return self.model

    def training_step(self, batch: Batch) -> StepOutput:
        projections = batch.forward(batch.views).projections.float()  # [B, V, D]
        batch.check_finite("the embeddings", projections)
        gathered = self.gather and distributed.is_initialized()
        seen = distributed.gather_with_grad(projections) if gathered else projections
        return StepOutput(self.loss(seen), embeddings=projections.detach(), is_global=gathered)


M = TypeVar("M", bound=type[Method])


def register_method(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[M], M]:
    """Class decorator: register a method under ``name`` (the value of ``loss.method`` in configs)."""

    def decorator(cls: M) -> M:
        cls.name = name
        return METHODS.add(name, cls, aliases=aliases)

    return decorator


def create_method(name: str, **hyperparameters: Any) -> Method:
    """Build a method by name with its hyperparameters (unknown ones are a ValueError saying what is allowed)."""
    cls = METHODS.get(name)
    allowed = list(cls.hyperparameter_specs())
    unknown = sorted(set(hyperparameters) - set(allowed))
    if unknown:
        raise ValueError(
            f"method {cls.name} got unknown hyperparameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    return cls(**hyperparameters)
