"""The generic contrastive loss: what every family shares, its functional twin, and the loss registry.

A loss family is one file (``tcl.py``, ``supcon.py``, ``ntxent.py``, or your own): a subclass of
:class:`ContrastiveLoss` whose ``__init__`` declares the family's hyperparameters (typed, each with its one
default), plus its row loss (dense autograd path), its row kernel (chunked path, forward and backward) and
``@register_loss("name")``. Everything else is here, once: the shared options and their validation, the
call, the functional twin (``tcl_loss = TCLLoss.functional``), ``create_loss`` and ``list_losses``.
See docs/extending.md for a worked example.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypedDict, TypeVar

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_bool, check_choice, check_int, check_real
from tunedcl.losses import engine
from tunedcl.losses.chunked import RowKernel
from tunedcl.losses.pairs import Pairs
from tunedcl.losses.queue import MemoryQueue
from tunedcl.registry import Registry, named_parameters

LOSSES: Registry[type[nn.Module]] = Registry("loss", "losses")
REDUCTIONS = ("mean", "sum", "none")
SIMILARITY_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LossOptions(TypedDict, total=False):
    """The options every family takes besides its hyperparameters (see :class:`ContrastiveLoss`)."""

    normalize: bool
    reduction: str
    chunk_size: int | None
    similarity_dtype: torch.dtype | str | None
    gather_distributed: bool
    queue_size: int


def check_chunk_size(value: object) -> int | None:
    """None (automatic), 0 (dense autograd path) or a positive number of anchor rows per chunk."""
    allowed = "None (automatic), 0 (dense autograd path) or an integer >= 1 (anchor rows per chunk)"
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise bad_argument("chunk_size", value, allowed)
    return value


def check_similarity_dtype(value: object) -> torch.dtype | None:
    """None (the compute dtype), or torch.bfloat16 / torch.float16 / torch.float32 (or their names)."""
    if value is None:
        return None
    if isinstance(value, str) and value in SIMILARITY_DTYPES:
        return SIMILARITY_DTYPES[value]
    if isinstance(value, torch.dtype) and value in SIMILARITY_DTYPES.values():
        return value
    raise bad_argument(
        "similarity_dtype", value, "None, torch.bfloat16, torch.float16 or torch.float32 (or their names)"
    )


def check_queue(queue: object) -> MemoryQueue | None:
    if queue is not None and not isinstance(queue, MemoryQueue):
        # The type alone: a list of tensors printed whole would bury the message.
        raise ValueError(f"queue must be a tunedcl.losses.MemoryQueue or None; got {type(queue).__name__}")
    return queue


class ContrastiveLoss(nn.Module):
    r"""Base of every loss family: the shared options, validated in one place, and the call.

    Called as ``loss(features, labels=None, mask=None)``:
        features: ``[N, D]`` or ``[B, V, D]`` (V views per sample, flattened sample-major: row b*V+v).
        labels: ``[N]`` or ``[B]`` integer class labels; rows with equal labels are positives.
        mask: ``[N, N]`` or ``[B, B]`` boolean positive relation (multi-label or custom positives);
            with ``[B, V, D]`` features the other views of a sample are always its positives.
        With neither labels nor mask, positives are the other views of the same sample (self-supervised).

    Options every family takes (keyword arguments, after the family's own hyperparameters):
        normalize: L2-normalise features inside the loss (default True). Set False only if they already are.
        reduction: ``"mean"`` over anchors that have at least one positive (0 if none has), ``"sum"``,
            or ``"none"`` for per-anchor losses ``[N]`` (0 where an anchor has no positive).
        chunk_size: ``None`` (default) picks the memory-efficient exact path with a cache-sized chunk on
            CPU and one chunk up to 2^26 logits on accelerators; an integer k >= 1 forces k anchor rows
            per chunk (memory O(k N)); 0 uses the plain-autograd dense path (materialises N x N,
            supports double backward). All give the same values and gradients.
        similarity_dtype: ``None`` computes similarities in fp32; ``torch.bfloat16`` computes the
            similarity products (and the backward's) in bf16 with every exp/log in fp32: faster on
            hardware with bf16 matrix units, at a measured cost in accuracy (docs/performance.md).
        gather_distributed: under torch.distributed, contrast the local anchors against the embeddings
            (and labels) of every rank, gathered with gradients in rank order. Every rank must hold the
            same number of rows. The value returned is the global loss; gradients assume
            DistributedDataParallel's averaging over processes.
        queue_size: if > 0, keep a FIFO memory queue of the last ``queue_size`` embeddings (and labels)
            as extra contrast rows (never anchors). The batch is enqueued after the loss is computed,
            in training mode only (``loss.eval()`` freezes it). Self-supervised entries are negatives
            only.

    A family (subclass) declares its hyperparameters in ``__init__`` and passes them on with
    ``super().__init__(temperature=..., hyperparameters={...}, **options)``; it implements
    :meth:`check_hyperparameters`, :meth:`row_loss` and :meth:`kernel`, and, where its gradient has the TCL
    form of tcl.md §2, :meth:`gradient_terms`. Every value is checked at construction and again at each call
    (attributes may be changed in between), once per call.
    """

    name: ClassVar[str] = ""  # set by @register_loss
    functional: ClassVar[Callable[..., Tensor]]  # the functional twin, set by @register_loss

    def __init__(
        self,
        *,
        temperature: float,
        hyperparameters: dict[str, Any] | None = None,
        normalize: bool = True,
        reduction: str = "mean",
        chunk_size: int | None = None,
        similarity_dtype: torch.dtype | str | None = None,
        gather_distributed: bool = False,
        queue_size: int = 0,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.hyperparameter_names = tuple(hyperparameters or {})
        for key, value in (hyperparameters or {}).items():
            setattr(self, key, value)
        self.normalize = normalize
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.similarity_dtype = check_similarity_dtype(similarity_dtype)
        self.gather_distributed = gather_distributed
        queue_size = check_int("queue_size", queue_size, low=0)
        self.queue = MemoryQueue(queue_size) if queue_size else None
        self.check()

    # --- what a family supplies -------------------------------------------------------------------------
    def check_hyperparameters(self) -> None:
        """Raise ValueError (naming the argument, value and what is allowed) for a bad hyperparameter."""

    def row_loss(self, logits: Tensor, pairs: Pairs) -> Tensor:
        """Per-anchor loss from ``logits = s / tau`` rows (own column -inf; every row has a positive)."""
        raise NotImplementedError

    def kernel(self) -> RowKernel:
        """The chunked path's per-row forward and backward (:mod:`tunedcl.losses.chunked`)."""
        raise NotImplementedError

    def gradient_terms(self) -> dict[str, Any] | None:
        """This loss as TCL terms ``temperature, k1, k2, k1_uses_temperature`` for the gradient analysis of
        tcl.md §2 (:mod:`tunedcl.analysis`), or None where its gradient does not have that form."""
        return None

    # --- shared ----------------------------------------------------------------------------------------
    # A non-finite input row is a clear error (one host sync per call). A caller that checks its embeddings
    # itself, as the training loop does every train.check_finite_every steps, turns this off so a GPU step
    # needs no sync of its own.
    check_inputs_finite: bool = True

    def check(self) -> None:
        """Validate every option and hyperparameter as currently set."""
        self.temperature = check_real("temperature", self.temperature, low=0.0, low_inclusive=False)
        check_bool("normalize", self.normalize)
        check_choice("reduction", self.reduction, REDUCTIONS)
        check_chunk_size(self.chunk_size)
        self.similarity_dtype = check_similarity_dtype(self.similarity_dtype)
        check_bool("gather_distributed", self.gather_distributed)
        self.check_hyperparameters()

    def forward(self, features: Tensor, labels: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        self.check()
        return self.compute(features, labels, mask, queue=self.queue, update_queue=self.training)

    def compute(
        self,
        features: Tensor,
        labels: Tensor | None,
        mask: Tensor | None,
        *,
        queue: MemoryQueue | None,
        update_queue: bool,
    ) -> Tensor:
        """The loss with already-checked options (``forward`` and the functional twin call this)."""
        return engine.compute(
            features,
            labels,
            mask,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            row_loss=self.row_loss,
            kernel=self.kernel(),
            options=engine.PathOptions(self.chunk_size, self.similarity_dtype, self.gather_distributed),
            queue=queue,
            update_queue=update_queue,
            check_inputs_finite=self.check_inputs_finite,
        )

    def extra_repr(self) -> str:
        text = ", ".join(f"{key}={getattr(self, key)!r}" for key in self.hyperparameter_names)
        text += f"{', ' if text else ''}temperature={self.temperature}, normalize={self.normalize}, "
        text += f"reduction={self.reduction!r}"
        if self.chunk_size is not None:
            text += f", chunk_size={self.chunk_size}"
        if self.similarity_dtype is not None:
            text += f", similarity_dtype={self.similarity_dtype}"
        if self.gather_distributed:
            text += ", gather_distributed=True"
        if self.queue is not None:
            text += f", queue_size={self.queue.size}"
        return text

    @classmethod
    def argument_names(cls) -> list[str]:
        """Every keyword the constructor takes: the family's own, then the shared options."""
        return [*family_parameters(cls), *LossOptions.__annotations__]


def family_parameters(cls: type[ContrastiveLoss]) -> dict[str, inspect.Parameter]:
    """The family's own constructor parameters (temperature and its hyperparameters), in order."""
    return named_parameters(cls.__init__)


def _common_parameters() -> list[inspect.Parameter]:
    shared = inspect.signature(ContrastiveLoss.__init__).parameters
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [shared[name].replace(kind=keyword) for name in LossOptions.__annotations__ if name != "queue_size"]


def functional_twin(cls: type[ContrastiveLoss]) -> Callable[..., Tensor]:
    """``twin(features, labels=None, mask=None, *, <cls's arguments>, queue=None, update_queue=True)``:
    the same loss as ``cls(...)(features, labels, mask)``, checked once per call; ``queue`` is a
    :class:`MemoryQueue` used as extra contrast rows and, if ``update_queue``, fed this batch."""

    def twin(
        features: Tensor,
        labels: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        queue: MemoryQueue | None = None,
        update_queue: bool = True,
        **arguments: Any,
    ) -> Tensor:
        unknown = sorted(set(arguments) - set(cls.argument_names()) | ({"queue_size"} & set(arguments)))
        if unknown:
            raise TypeError(f"{twin.__name__}() got unexpected keyword argument(s) {', '.join(unknown)}")
        loss = cls(**arguments)
        return loss.compute(features, labels, mask, queue=check_queue(queue), update_queue=update_queue)

    keyword = inspect.Parameter.KEYWORD_ONLY
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("features", positional, annotation="Tensor"),
        inspect.Parameter("labels", positional, default=None, annotation="Tensor | None"),
        inspect.Parameter("mask", positional, default=None, annotation="Tensor | None"),
        *(p.replace(kind=keyword) for p in family_parameters(cls).values()),
        *_common_parameters(),
        inspect.Parameter("queue", keyword, default=None, annotation="MemoryQueue | None"),
        inspect.Parameter("update_queue", keyword, default=True, annotation="bool"),
    ]
    twin.__signature__ = inspect.Signature(parameters, return_annotation="Tensor")  # type: ignore[attr-defined]
    twin.__name__ = twin.__qualname__ = f"{cls.name.replace('-', '_')}_loss"
    twin.__module__ = cls.__module__
    twin.__doc__ = (
        f"Functional form of :class:`{cls.__name__}`: ``{twin.__name__}(features, labels, mask, **arguments)`` "
        f"equals ``{cls.__name__}(**arguments)(features, labels, mask)``. ``queue`` is a "
        ":class:`MemoryQueue` used as extra contrast rows and, if ``update_queue``, fed this batch.\n\n"
        f"{inspect.cleandoc(cls.__doc__ or '')}"
    )
    return twin


L = TypeVar("L", bound=type[nn.Module])


def register_loss(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[L], L]:
    """Class decorator: register a loss under ``name`` (for :func:`create_loss`, ``tunedcl list losses`` and
    the methods). A :class:`ContrastiveLoss` family also gets its functional twin, ``cls.functional``; other
    losses (BYOL's regression, Barlow Twins, ...) are plain modules with their own call signature."""

    def decorator(cls: L) -> L:
        cls.name = name
        if issubclass(cls, ContrastiveLoss):
            cls.functional = functional_twin(cls)
        return LOSSES.add(name, cls, aliases=aliases)

    return decorator


def argument_names(cls: type[nn.Module]) -> list[str]:
    """The keyword arguments a registered loss's constructor takes."""
    if issubclass(cls, ContrastiveLoss):
        return cls.argument_names()
    return list(named_parameters(cls.__init__))


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss` (aliases excluded)."""
    return LOSSES.names()


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name: ``create_loss("tcl", k1=5000.0)``.

    Names: ``list_losses()`` (``tcl``, ``supcon``, ``ntxent`` with alias ``simclr``, and any registered
    loss). Unknown names and unknown keyword arguments raise ``ValueError`` saying what is allowed.
    """
    cls = LOSSES.get(name)
    allowed = argument_names(cls)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"{cls.name} loss got unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    return cls(**kwargs)
