"""ResNet-18/34/50/101 encoders (He et al. 2016) with a CIFAR or ImageNet stem and a width multiplier.

The classifier is left out: ``forward`` returns the globally pooled features, ``[B, feature_dim]`` with
``feature_dim = 512 * width`` (BasicBlock: 18, 34) or ``2048 * width`` (Bottleneck: 50, 101). Bottlenecks
stride in their 3x3 conv (the "v1.5" layout of most modern implementations); parameter counts are the
same either way, and at ``stem="imagenet"``, ``width=1`` they equal the standard architectures minus
their 1000-way fc.

Stems:
- ``"cifar"`` (default, the paper's): 3x3 conv stride 1, no max-pool; a 32x32 image reaches the last
  stage at 4x4.
- ``"imagenet"``: 7x7 conv stride 2 and a 3x3 stride-2 max-pool; 224x224 reaches the last stage at 7x7.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tunedcl.models._checks import (
    check_bool,
    check_choice,
    check_in_channels,
    check_positive_int,
    scaled_channels,
)
from tunedcl.models.base import Encoder, init_conv_bn
from tunedcl.models.registry import register_model

STEMS = ("cifar", "imagenet")
_BASE_CHANNELS = 64


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    # A projection only where the shapes differ (He et al.'s option B).
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, planes, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _stem(in_channels: int, out_channels: int, stem: str) -> nn.Sequential:
    if stem == "cifar":
        return nn.Sequential(
            _conv3x3(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


class ResNet(Encoder):
    """A ResNet encoder without classifier.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        in_channels: image channels (1 grayscale, 3 RGB, or any positive int).
        stem: ``"cifar"`` (3x3 stride 1, no max-pool) or ``"imagenet"`` (7x7 stride 2 + max-pool).
        width: channel multiplier (> 0); stage ``i`` has ``round(64 * width) * 2**i`` planes.
        zero_init_residual: start each residual branch's last BatchNorm at weight 0, so every block
            begins as the identity (Goyal et al. 2017); helps large-batch training.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        in_channels: int = 3,
        stem: str = "cifar",
        width: float = 1.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        owner = f"ResNet({block.__name__}, {list(layers)})"
        if len(layers) != 4:
            raise ValueError(f"{owner}: layers must give the block count of 4 stages, got {list(layers)}")
        for count in layers:
            check_positive_int(owner, "each entry of layers", count)
        in_channels = check_in_channels(owner, in_channels)
        stem = check_choice(owner, "stem", stem, STEMS)
        zero_init_residual = check_bool(owner, "zero_init_residual", zero_init_residual)
        base = scaled_channels(owner, _BASE_CHANNELS, width)
        self.in_channels = in_channels
        self.stem_type = stem
        self.width = width

        self.stem = _stem(in_channels, base, stem)
        channels = base
        stages: list[nn.Sequential] = []
        for i, num_blocks in enumerate(layers):
            planes = base * 2**i
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(num_blocks):
                blocks.append(block(channels, planes, stride if j == 0 else 1))
                channels = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = channels

        init_conv_bn(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, stem={self.stem_type!r}, width={self.width}, "
            f"feature_dim={self.feature_dim}"
        )


# One explicit builder per name: create_model reads their signatures to list and check the options.


@register_model("resnet18")
def resnet18(
    in_channels: int = 3, stem: str = "cifar", width: float = 1.0, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-18: BasicBlock x [2, 2, 2, 2], ``feature_dim = 512 * width``."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, stem, width, zero_init_residual)


@register_model("resnet34")
def resnet34(
    in_channels: int = 3, stem: str = "cifar", width: float = 1.0, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-34: BasicBlock x [3, 4, 6, 3], ``feature_dim = 512 * width``."""
    return ResNet(BasicBlock, (3, 4, 6, 3), in_channels, stem, width, zero_init_residual)


@register_model("resnet50")
def resnet50(
    in_channels: int = 3, stem: str = "cifar", width: float = 1.0, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-50: Bottleneck x [3, 4, 6, 3], ``feature_dim = 2048 * width``."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, stem, width, zero_init_residual)


@register_model("resnet101")
def resnet101(
    in_channels: int = 3, stem: str = "cifar", width: float = 1.0, zero_init_residual: bool = False
) -> ResNet:
    """ResNet-101: Bottleneck x [3, 4, 23, 3], ``feature_dim = 2048 * width``."""
    return ResNet(Bottleneck, (3, 4, 23, 3), in_channels, stem, width, zero_init_residual)
