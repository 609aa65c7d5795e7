"""From a Config to what a run trains with: the encoder, the optimiser, the learning-rate schedule (the method
builds the rest: :func:`tunedcl.train.assemble.build_method`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from tunedcl.models import create_model
from tunedcl.train.config import Config, ConfigError
from tunedcl.train.lars import LARS


def build_encoder(config: Config, in_channels: int) -> nn.Module:
    """The encoder ``model.encoder`` with its ``model.options``."""
    try:
        return create_model(config.model.encoder, in_channels=in_channels, **config.model.options)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from error


def _parameter_groups(
    model: nn.Module, weight_decay: float, decay_bias_and_norm: bool, fixed_lr: list[nn.Module] = ()
) -> list[dict]:
    """Weight decay on every parameter (the paper's recipe), or not on biases and normalisation
    parameters (1-d tensors) when ``decay_bias_and_norm`` is False. Parameters of the ``fixed_lr`` modules
    (SimSiam's predictor) go in groups of their own that the schedule leaves at the peak lr. Every group
    says whether LARS adapts it (``lars``: not for 1-d tensors, the usual exclusion)."""
    fixed = {id(p) for module in fixed_lr for p in module.parameters()}
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            one_d = parameter.ndim <= 1
            decayed = not (one_d and not decay_bias_and_norm)
            groups.setdefault((id(parameter) in fixed, decayed, not one_d), []).append(parameter)
    ordered = []
    for (is_fixed, decayed, adapted), params in groups.items():
        ordered.append({"params": params, "weight_decay": weight_decay if decayed else 0.0,
                        "fixed_lr": is_fixed, "lars": adapted})
    return ordered


def _sgd_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool) -> list[dict]:
    # The two groups every earlier run used (kept as they were, so that those runs repeat bit for bit).
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 and not decay_bias_and_norm else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_lr(config: Config) -> float:
    scale = config.train.batch_size / 256 if config.optim.lr_scaling == "linear" else 1.0
    return config.optim.lr * scale


def build_optimizer(config: Config, model: nn.Module, fixed_lr: list[nn.Module] = ()) -> torch.optim.Optimizer:
    """SGD, AdamW or LARS over the model's parameters; ``fixed_lr`` modules keep the peak lr throughout."""
    optim = config.optim
    lr = peak_lr(config)
    if optim.optimizer in ("sgd", "adamw") and not fixed_lr:
        groups = _sgd_groups(model, optim.weight_decay, optim.decay_bias_and_norm)
    else:
        groups = _parameter_groups(model, optim.weight_decay, optim.decay_bias_and_norm, fixed_lr)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov)
    if optim.optimizer == "lars":
        return LARS(groups, lr=lr, momentum=optim.momentum, eta=optim.lars_eta, clip=optim.lars_clip)
    return torch.optim.AdamW(groups, lr=lr, betas=optim.betas)


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up from 0 over ``warmup_steps``, then cosine decay to ``min_ratio`` at the end.

    factor(t) = t / W                                         for t < W
              = r + (1 - r) (1 + cos(pi (t - W) / (T - W))) / 2   otherwise
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    config: Config, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = round(config.optim.warmup_epochs * steps_per_epoch)
    ratio = config.optim.min_lr_ratio

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, warmup, ratio)

    factors = [(lambda step: 1.0) if group.get("fixed_lr") else factor for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
