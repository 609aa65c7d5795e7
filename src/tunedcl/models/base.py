"""What every encoder shares: the ``Encoder`` interface and the standard weight initialisation."""

from __future__ import annotations

import torch
from torch import nn


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
