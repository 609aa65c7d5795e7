r"""LARS: SGD with a layer-wise trust ratio (You, Gitman & Ginsburg 2017), as the SimCLR / BYOL / Barlow Twins /
VICReg / SwAV recipes use it.

For each parameter tensor w with gradient g (weight decay wd folded into the gradient first, g <- g + wd w):

    ratio = eta ||w|| / ||g||                  (1 where ||w|| or ||g|| is 0)
    ratio = min(ratio / lr, 1)                 with ``clip`` (solo-learn's clip_lr: never above the global lr)
    v <- momentum v + ratio g,    w <- w - lr v

Parameter groups with ``lars=False`` (biases and normalisation weights, the usual exclusion) take plain SGD
steps: ratio 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from tunedcl._checks import check_bool, check_real


class LARS(Optimizer):
    """SGD with momentum and LARS's layer-wise trust ratio (see the module docstring).

    Args:
        params: parameters or parameter groups; a group with ``lars=False`` is stepped as plain SGD.
        lr: the global learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        eta: the trust coefficient (0.02 in solo-learn's CIFAR recipes, 0.001 in the LARS paper).
        clip: cap the layer's effective rate at the global one (``ratio <- min(ratio / lr, 1)``).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, clip: bool = True) -> None:
        defaults = dict(
            lr=check_real("lr", lr, low=0.0, low_inclusive=False),
            momentum=check_real("momentum", momentum, low=0.0, high=1.0, high_inclusive=False),
            weight_decay=check_real("weight_decay", weight_decay, low=0.0),
            eta=check_real("eta", eta, low=0.0, low_inclusive=False),
            clip=check_bool("clip", clip),
            lars=True,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    self._update(parameter, group)
        return loss

    def _update(self, parameter: torch.Tensor, group: dict[str, Any]) -> None:
        gradient = parameter.grad
        if group["weight_decay"]:
            gradient = gradient.add(parameter, alpha=group["weight_decay"])
        if group["lars"]:
            weight_norm, gradient_norm = torch.linalg.vector_norm(parameter), torch.linalg.vector_norm(gradient)
            ratio = group["eta"] * weight_norm / gradient_norm
            ratio = torch.where((weight_norm > 0) & (gradient_norm > 0), ratio, torch.ones_like(ratio))
            if group["clip"]:
                ratio = torch.clamp(ratio / group["lr"], max=1.0)
            gradient = gradient * ratio
        state = self.state[parameter]
        if group["momentum"]:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = gradient.detach().clone()
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(gradient)
            gradient = state["momentum_buffer"]
        parameter.add_(gradient, alpha=-group["lr"])
