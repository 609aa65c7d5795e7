"""What the loss modules share: the path options, distributed gathering and an owned memory queue."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tunedcl.losses.engine import PathOptions
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.validation import (
    REDUCTIONS,
    check_bool,
    check_choice,
    check_chunk_size,
    check_real,
    check_similarity_dtype,
)

COMMON_ARGS_DOC = """
        normalize: L2-normalise features inside the loss (default). Set False only if they already are.
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
"""


def check_queue_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"queue_size must be an integer >= 0; got {value!r}")
    return value


class ContrastiveLossModule(nn.Module):
    """Base of the loss modules: validates and stores the options common to every family."""

    def __init__(
        self,
        *,
        temperature: float,
        normalize: bool,
        reduction: str,
        chunk_size: int | None,
        similarity_dtype: torch.dtype | None,
        gather_distributed: bool,
        queue_size: int,
    ) -> None:
        super().__init__()
        self.temperature = check_real("temperature", temperature, low=0.0, low_inclusive=False)
        self.normalize = check_bool("normalize", normalize)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.chunk_size = check_chunk_size(chunk_size)
        self.similarity_dtype = check_similarity_dtype(similarity_dtype)
        self.gather_distributed = check_bool("gather_distributed", gather_distributed)
        self.queue = MemoryQueue(check_queue_size(queue_size)) if queue_size else None

    def common_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the functional twin for the shared options."""
        return dict(
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
            similarity_dtype=self.similarity_dtype,
            gather_distributed=self.gather_distributed,
            queue=self.queue,
            update_queue=self.training,
        )

    def common_repr(self) -> str:
        text = f"temperature={self.temperature}, normalize={self.normalize}, reduction={self.reduction!r}"
        if self.chunk_size is not None:
            text += f", chunk_size={self.chunk_size}"
        if self.similarity_dtype is not None:
            text += f", similarity_dtype={self.similarity_dtype}"
        if self.gather_distributed:
            text += ", gather_distributed=True"
        if self.queue is not None:
            text += f", queue_size={self.queue.size}"
        return text


def path_options(chunk_size: object, similarity_dtype: object, gather_distributed: object) -> PathOptions:
    """Validated :class:`PathOptions` from functional keyword arguments."""
    return PathOptions(
        chunk_size=check_chunk_size(chunk_size),
        similarity_dtype=check_similarity_dtype(similarity_dtype),
        gather_distributed=check_bool("gather_distributed", gather_distributed),
    )


def check_queue(queue: object) -> MemoryQueue | None:
    if queue is not None and not isinstance(queue, MemoryQueue):
        raise ValueError(f"queue must be a tunedcl.losses.MemoryQueue or None; got {type(queue).__name__}")
    return queue
