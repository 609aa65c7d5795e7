"""From a Config to what a run trains with: the encoder, the optimiser, the learning-rate schedule (the method
builds the rest: :func:`tunedcl.train.loop.build_method`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from tunedcl.models import create_model
from tunedcl.train.config import Config, ConfigError


def build_encoder(config: Config, in_channels: int) -> nn.Module:
    """The encoder ``model.encoder`` with its ``model.options``."""
    try:
        return create_model(config.model.encoder, in_channels=in_channels, **config.model.options)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from error


def _parameter_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool) -> list[dict]:
    """Weight decay on every parameter (the paper's recipe), or not on biases and normalisation
    parameters (1-d tensors) when ``decay_bias_and_norm`` is False."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 and not decay_bias_and_norm else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_lr(config: Config) -> float:
    scale = config.train.batch_size / 256 if config.optim.lr_scaling == "linear" else 1.0
    return config.optim.lr * scale


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    optim = config.optim
    groups = _parameter_groups(model, optim.weight_decay, optim.decay_bias_and_norm)
    lr = peak_lr(config)
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim.momentum, nesterov=optim.nesterov)
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
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup, ratio))
