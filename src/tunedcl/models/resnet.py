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

from collections.abc import Callable, Sequence

import torch
from torch import nn

from tunedcl._checks import bad_argument, check_bool, check_choice, check_int
from tunedcl.models.base import Encoder, check_in_channels, init_conv_bn, scaled_channels
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


class ResidualBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))``, the branch a chain of conv-BatchNorm pairs with a ReLU between pairs.

    The pairs are registered as ``conv1``, ``bn1``, ``conv2``, ... in order: the names each block had
    spelled out, so the ``state_dict`` keys (and checkpoints saved before) stay the same, and so does the
    module order, which sets the order of the random weight initialisation.

    Args:
        convs: the branch's convolutions, in order; each is followed by a BatchNorm of its output.
        shortcut: the identity, or the projection where the block changes the shape.
    """

    expansion: int

    def __init__(self, convs: Sequence[nn.Conv2d], shortcut: nn.Module) -> None:
        super().__init__()
        self.depth = len(convs)
        for i, conv in enumerate(convs, start=1):
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", nn.BatchNorm2d(conv.out_channels))
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = shortcut

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BatchNorm closing the residual branch (zeroed by ``zero_init_residual``)."""
        return getattr(self, f"bn{self.depth}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for i in range(1, self.depth + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.depth:  # the last pair's ReLU comes after the sum
                out = self.relu(out)
        return self.relu(out + self.shortcut(x))


class BasicBlock(ResidualBlock):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        convs = [_conv3x3(in_channels, planes, stride), _conv3x3(planes, planes)]
        super().__init__(convs, _shortcut(in_channels, planes, stride))


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        out_channels = planes * self.expansion
        convs = [_conv1x1(in_channels, planes), _conv3x3(planes, planes, stride), _conv1x1(planes, out_channels)]
        super().__init__(convs, _shortcut(in_channels, out_channels, stride))


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
        block: type[ResidualBlock],
        layers: Sequence[int],
        in_channels: int = 3,
        stem: str = "cifar",
        width: float = 1.0,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        owner = f"ResNet({block.__name__}, {list(layers)})"
        if len(layers) != 4:
            raise bad_argument("layers", list(layers), "the block counts of 4 stages", owner)
        for count in layers:
            check_int("each entry of layers", count, low=1, owner=owner)
        in_channels = check_in_channels(owner, in_channels)
        stem = check_choice("stem", stem, STEMS, owner)
        zero_init_residual = check_bool("zero_init_residual", zero_init_residual, owner)
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
                if isinstance(m, ResidualBlock):
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


def _register_resnet(depth: int, block: type[ResidualBlock], layers: Sequence[int]) -> Callable[..., ResNet]:
    """Register ``resnet{depth}``: a builder whose signature ``create_model`` reads to list and check options."""

    def build(
        in_channels: int = 3, stem: str = "cifar", width: float = 1.0, zero_init_residual: bool = False
    ) -> ResNet:
        return ResNet(block, layers, in_channels, stem, width, zero_init_residual)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    features = 512 * block.expansion
    build.__doc__ = f"ResNet-{depth}: {block.__name__} x {list(layers)}, {features} * width features."
    return register_model(build.__name__)(build)


resnet18 = _register_resnet(18, BasicBlock, (2, 2, 2, 2))
resnet34 = _register_resnet(34, BasicBlock, (3, 4, 6, 3))
resnet50 = _register_resnet(50, Bottleneck, (3, 4, 6, 3))
resnet101 = _register_resnet(101, Bottleneck, (3, 4, 23, 3))
