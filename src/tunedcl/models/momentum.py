r"""Momentum (EMA) targets: a frozen copy of a network that follows the online one,
t <- tau t + (1 - tau) o, with tau rising from ``base`` to ``final`` on a cosine over training (BYOL):

    tau(k) = final - (final - base) (cos(pi k / K) + 1) / 2       (k steps done of K)

Only parameters follow; a target's BatchNorm statistics come from its own forward passes, as in BYOL and
MoCo. The target never receives gradients.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from tunedcl._checks import check_real


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters never require gradients (a momentum target)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


def cosine_momentum(step: int, total_steps: int, base: float, final: float) -> float:
    """tau after ``step`` of ``total_steps`` steps: ``base`` at the start, ``final`` at the end."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``t <- momentum t + (1 - momentum) o`` for every parameter pair (same architecture)."""
    momentum = check_real("momentum", momentum, low=0.0, high=1.0)
    targets, onlines = list(target.parameters()), list(online.parameters())
    if len(targets) != len(onlines):
        raise ValueError(f"ema_update: the target has {len(targets)} parameters, the online network {len(onlines)}")
    torch._foreach_mul_(targets, momentum)
    torch._foreach_add_(targets, [o.detach() for o in onlines], alpha=1.0 - momentum)
