"""``small-cnn``: the fast encoder for CPU runs (Fashion-MNIST, CIFAR at 28 to 32 pixels).

Four 3x3 conv-BatchNorm-ReLU blocks of 32, 64, 128 and 256 channels (times ``width``), a 2x2 max-pool
between blocks, global average pooling. About 0.39M parameters at width 1; at 28x28 the blocks see
28, 14, 7 and 3 pixels, so most of the compute sits in the middle blocks rather than at full resolution.
Inputs must be at least 8x8 so that the three pools leave a non-empty map.
"""

from __future__ import annotations

import torch
from torch import nn

from tunedcl.models.base import Encoder, check_in_channels, init_conv_bn, scaled_channels
from tunedcl.models.registry import register_model

_BASE_CHANNELS = 32
_NUM_BLOCKS = 4


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # bias=False: the BatchNorm shift that follows makes a conv bias redundant.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(Encoder):
    """Four conv blocks, 32-64-128-256 channels at ``width=1``; ``feature_dim = 256 * width``.

    Args:
        in_channels: image channels (1 grayscale, 3 RGB, or any positive int).
        width: channel multiplier (> 0); block ``i`` has ``round(32 * width) * 2**i`` channels.
    """

    def __init__(self, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        in_channels = check_in_channels("SmallCNN", in_channels)
        base = scaled_channels("SmallCNN", _BASE_CHANNELS, width)
        self.in_channels = in_channels
        self.width = width
        channels = [base * 2**i for i in range(_NUM_BLOCKS)]
        layers: list[nn.Module] = []
        previous = in_channels
        for i, out in enumerate(channels):
            if i > 0:
                layers.append(nn.MaxPool2d(kernel_size=2))
            layers.append(_conv_bn_relu(previous, out))
            previous = out
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = channels[-1]
        init_conv_bn(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, width={self.width}, feature_dim={self.feature_dim}"


@register_model("small-cnn")
def small_cnn(in_channels: int = 3, width: float = 1.0) -> SmallCNN:
    """Four conv blocks of 32-64-128-256 channels (times width): the fast encoder for CPU runs."""
    return SmallCNN(in_channels=in_channels, width=width)
