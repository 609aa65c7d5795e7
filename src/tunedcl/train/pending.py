"""The losses and finiteness flags of the steps since the last host read, kept on the training device, so a
step needs no host sync of its own (train.check_finite_every)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tunedcl import distributed


@dataclass
class PendingRead:
    """What one read of :class:`PendingLosses` found (global over ranks)."""

    loss_sum: float  # the summed (global mean) losses of the steps read
    last_loss: float  # the last of them
    non_finite: str  # what was non-finite, e.g. "the loss (nan)"; "" when all was finite


class PendingLosses:
    """Losses and finiteness flags of the steps since the last read, kept on the training device.

    Summed in float64, the sum a Python float accumulating ``float(loss)`` each step would give (float32
    losses convert exactly), so a read every step reproduces the per-step numbers bit for bit. A local loss
    (``is_global`` false) is averaged over ranks at the read; the average of the sums is the sum of the
    averages. MPS has no float64; it sums in float32.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.clear()

    def clear(self) -> None:
        self.losses: torch.Tensor | None = None  # [2]: sum of the losses, the last loss
        self.flags: dict[str, torch.Tensor] = {}  # what -> True if it was non-finite at some step
        self.steps = 0  # how many steps the losses hold
        self.last_step = 0  # the (1-based) number of the last of them
        self.is_global = True

    def add(self, loss: torch.Tensor, is_global: bool, step: int) -> None:
        value = loss.to(self.dtype).reshape(1)
        self.losses = torch.cat([value, value]) if self.losses is None else torch.cat([self.losses[:1] + value, value])
        self.is_global = is_global
        self.steps += 1
        self.last_step = step

    def flag(self, what: str, tensor: torch.Tensor) -> None:
        bad = ~torch.isfinite(tensor).all()
        self.flags[what] = bad if what not in self.flags else self.flags[what] | bad

    def read(self) -> PendingRead:
        """One host sync (``tolist``), after one all_reduce under DDP (every rank reads at the same steps, and
        the methods flag the same names in the same order, so the reduced tensors match)."""
        assert self.losses is not None
        mine = torch.cat([self.losses, *(flag.to(self.dtype).reshape(1) for flag in self.flags.values())])
        world, n = distributed.world_size(), mine.numel()
        if world > 1:
            reduced = distributed.all_reduce_sum(mine.to(distributed.collective_device(self.device)))
            both = torch.cat([mine.to(reduced.device), reduced]).tolist()
            values, total = both[:n], both[n:]
        else:
            values = total = mine.tolist()
        loss_sum, last = (values[0], values[1]) if self.is_global else (total[0] / world, total[1] / world)
        bad = [what for what, count in zip(self.flags, total[2:], strict=True) if count > 0]
        if not math.isfinite(total[0]):  # a non-finite loss on any rank makes the sum over ranks non-finite
            bad.append(f"the loss ({last})")
        return PendingRead(loss_sum, last, " and ".join(bad))
