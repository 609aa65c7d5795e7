"""A labelled memory queue (cross-batch memory): a FIFO of detached past embeddings with their labels.

Queue rows join the contrast set of every anchor; they are never anchors themselves. Positives come
from the queue by label, queue negatives get the k2 weight like any negative. In self-supervised use
(no labels) the entries are stored with the id -1, which never equals an instance id (>= 0): they are
negatives only. A queue holds one kind of entry: mixing labelled and self-supervised batches is an error.

Under DDP the loss enqueues the *gathered* batch in rank order, so the queues of all ranks stay equal.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

UNSET, LABELLED, INSTANCE = 0, 1, 2
_KIND_NAMES = {LABELLED: "labelled (called with labels)", INSTANCE: "self-supervised (labels=None)"}


class MemoryQueue(nn.Module):
    """FIFO of the last ``size`` embeddings (rows) and their labels, stored as buffers.

    ``features`` and ``ids`` return the stored rows oldest first. Buffers are allocated at the first
    :meth:`enqueue`, when the embedding dimension is known, and are part of ``state_dict`` (a resumed
    run gets its queue back).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"queue size must be an integer >= 1; got {size!r}")
        self.size = size
        self.register_buffer("_rows", None)
        self.register_buffer("_ids", None)
        self.register_buffer("_state", torch.zeros(3, dtype=torch.long))  # [next slot, filled, kind]

    def __len__(self) -> int:
        return int(self._state[1])

    @property
    def kind(self) -> int:
        return int(self._state[2])

    def _order(self) -> Tensor:
        filled, start = len(self), int(self._state[0])
        if filled < self.size:
            return torch.arange(filled, device=self._state.device)
        return (torch.arange(self.size, device=self._state.device) + start) % self.size

    @property
    def features(self) -> Tensor:
        """Stored rows ``[len, D]``, oldest first (empty ``[0, 0]`` before the first enqueue)."""
        if self._rows is None:
            return torch.zeros(0, 0)
        return self._rows[self._order()]

    @property
    def ids(self) -> Tensor:
        """Labels of the stored rows (-1 for self-supervised entries), oldest first."""
        if self._ids is None:
            return torch.zeros(0, dtype=torch.long)
        return self._ids[self._order()]

    def check_kind(self, labelled: bool) -> None:
        """Raise if this call's kind (labels or not) differs from what the queue holds."""
        wanted = LABELLED if labelled else INSTANCE
        if self.kind not in (UNSET, wanted):
            raise ValueError(
                f"the memory queue holds {_KIND_NAMES[self.kind]} entries but this call is "
                f"{_KIND_NAMES[wanted]}; use one queue per kind of call, or reset() it"
            )

    @torch.no_grad()
    def enqueue(self, rows: Tensor, labels: Tensor | None) -> None:
        """Append ``rows [n, D]`` (detached) with their labels (None: self-supervised), dropping the
        oldest entries when full."""
        self.check_kind(labels is not None)
        rows = rows.detach()
        if self._rows is None or self._rows.shape[1] != rows.shape[1]:
            if self._rows is not None and len(self) > 0:
                raise ValueError(
                    f"the memory queue holds {self._rows.shape[1]}-dimensional rows; got "
                    f"{rows.shape[1]}-dimensional ones"
                )
            self._rows = torch.zeros(self.size, rows.shape[1], dtype=rows.dtype, device=rows.device)
            self._ids = torch.full((self.size,), -1, dtype=torch.long, device=rows.device)
            self._state = self._state.to(rows.device)
        ids = labels.to(torch.long) if labels is not None else torch.full(
            (rows.shape[0],), -1, dtype=torch.long, device=rows.device
        )
        if rows.shape[0] > self.size:  # only the newest `size` rows survive anyway
            rows, ids = rows[-self.size :], ids[-self.size :]
        n = rows.shape[0]
        slots = (torch.arange(n, device=self._rows.device) + int(self._state[0])) % self.size
        self._rows[slots] = rows.to(self._rows.dtype)
        self._ids[slots] = ids.to(self._ids.device)
        self._state[0] = (int(self._state[0]) + n) % self.size
        self._state[1] = min(self.size, len(self) + n)
        self._state[2] = LABELLED if labels is not None else INSTANCE

    def reset(self) -> None:
        """Empty the queue (keeps the allocation)."""
        self._state.zero_()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Buffers are allocated lazily: take the saved shapes before the default loader compares them, on the
        # queue's own device (a checkpoint is loaded onto the CPU; the queue may live on a GPU).
        for name in ("_rows", "_ids"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=self._state.device))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"size={self.size}, filled={len(self)}"
