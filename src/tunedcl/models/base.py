"""What every encoder shares: the ``Encoder`` interface, the standard weight initialisation, and the checks
of the two arguments every encoder takes (input channels and a width multiplier)."""

from __future__ import annotations

import math

import torch
from torch import nn

from tunedcl._checks import bad_argument, check_int, check_real


class Encoder(nn.Module):
    """An image encoder: ``[B, C, H, W]`` images to pooled ``[B, feature_dim]`` features.

    Subclasses set ``feature_dim`` and implement ``forward_features`` (the last feature map, before
    pooling). ``forward`` global-average-pools that map, so any input size that survives the encoder's
    downsampling works and the feature size does not depend on the image size.
    """

    feature_dim: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``[B, feature_dim, h, w]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features, ``[B, feature_dim]``."""
        # mean over H, W rather than .view: valid for channels_last maps and any spatial size.
        return self.forward_features(x).mean(dim=(-2, -1))


def init_conv_bn(module: nn.Module) -> None:
    """He et al. initialisation: kaiming-normal (fan_out, ReLU) convs, BatchNorm weight 1 and bias 0.

    fan_out keeps the variance of the backward signal constant through the ReLU stack, which is what
    matters for training from scratch; Linear layers keep PyTorch's default.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_in_channels(owner: str, value: object) -> int:
    """Input channels: any positive int (1 for grayscale, 3 for RGB are the usual values)."""
    return check_int("in_channels", value, low=1, owner=owner, hint="1 for grayscale, 3 for RGB, or any other count")


def scaled_channels(owner: str, base: int, width: object) -> int:
    """Channels of the first stage for a width multiplier: ``round(base * width)``, at least 1.

    Later stages double this number, so the feature dimension is an exact multiple of it and equals the
    documented ``base_feature_dim * width`` whenever ``base * width`` is a whole number.
    """
    scale = check_real("width", width, low=0.0, low_inclusive=False, owner=owner)
    channels = math.floor(base * scale + 0.5)  # round half up, not Python's banker's rounding
    if channels < 1:
        # Checked apart from the range above: the smallest width depends on the encoder's base channels.
        hint = f"{base}*width < 0.5 leaves no channels in the first stage"
        raise bad_argument("width", width, f"at least {0.5 / base:g} ({hint})", owner)
    return channels
