"""Encoder + head compositions used by training: contrastive pretraining and the cross-entropy baseline."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from tunedcl._checks import bad_argument, check_bool, check_int
from tunedcl.models.heads import ProjectionHead


def _encoder_dim(owner: str, encoder: nn.Module) -> int:
    """The encoder's ``feature_dim``: the wrappers size their heads from it rather than running the encoder."""
    dim = getattr(encoder, "feature_dim", None)
    return check_int("encoder.feature_dim", dim, low=1, owner=owner, hint="the encoder must expose its feature size")


class ContrastiveOutput(NamedTuple):
    """What ``ContrastiveModel`` returns."""

    features: torch.Tensor
    """Pooled encoder features, used by the linear probe and kNN."""
    projections: torch.Tensor
    """Unnormalised head outputs, what the contrastive loss takes."""


class ContrastiveModel(nn.Module):
    """An encoder followed by a projection head.

    Accepts either ``[N, C, H, W]`` images or the ``[B, V, C, H, W]`` views made by
    ``tunedcl.data.augment.make_views``; the views are encoded as one batch (so BatchNorm sees all
    ``B * V`` of them) and the outputs keep the leading dimensions: ``[B, V, D]`` is what the losses take.

    Args:
        encoder: any module with ``feature_dim`` mapping images to ``[N, feature_dim]``.
        head: the projection head; ``None`` builds ``ProjectionHead(encoder.feature_dim, out_dim=out_dim)``.
        out_dim: projection size when ``head`` is ``None``.

    Example:
        >>> import torch
        >>> from tunedcl.models import ContrastiveModel, create_model
        >>> model = ContrastiveModel(create_model("small-cnn", in_channels=1, width=0.25))
        >>> out = model(torch.randn(4, 2, 1, 28, 28))
        >>> out.features.shape, out.projections.shape
        (torch.Size([4, 2, 64]), torch.Size([4, 2, 128]))
    """

    def __init__(self, encoder: nn.Module, head: nn.Module | None = None, out_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim = _encoder_dim("ContrastiveModel", encoder)
        self.encoder = encoder
        if head is None:
            out_dim = check_int("out_dim", out_dim, low=1, owner="ContrastiveModel")
            head = ProjectionHead(self.feature_dim, out_dim=out_dim)
        self.head = head

    def forward(self, images: torch.Tensor) -> ContrastiveOutput:
        if images.dim() not in (4, 5):
            allowed = "images [N, C, H, W] or views [B, V, C, H, W]"
            raise bad_argument("images", images, allowed, owner="ContrastiveModel")
        leading = images.shape[:-3]
        flat = images.reshape(-1, *images.shape[-3:]) if images.dim() == 5 else images
        features = self.encoder(flat)
        projections = self.head(features)
        return ContrastiveOutput(
            features.reshape(*leading, features.shape[-1]),
            projections.reshape(*leading, projections.shape[-1]),
        )


class LinearClassifier(nn.Module):
    """An encoder followed by ``Linear(feature_dim, num_classes)``: logits for cross-entropy.

    With ``freeze_encoder=False`` (default) it is the paper's cross-entropy baseline, trained end to end.
    With ``freeze_encoder=True`` it is a linear probe: the encoder's parameters stop requiring gradients,
    it runs without autograd, and it stays in eval mode (BatchNorm uses its running statistics) even after
    ``.train()``, so only the linear layer learns.

    Args:
        encoder: any module with ``feature_dim`` mapping images to ``[N, feature_dim]``.
        num_classes: number of classes.
        freeze_encoder: see above.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, freeze_encoder: bool = False) -> None:
        super().__init__()
        self.feature_dim = _encoder_dim("LinearClassifier", encoder)
        num_classes = check_int("num_classes", num_classes, low=1, owner="LinearClassifier")
        self.freeze_encoder = check_bool("freeze_encoder", freeze_encoder, owner="LinearClassifier")
        self.encoder = encoder
        self.fc = nn.Linear(self.feature_dim, num_classes)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> LinearClassifier:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` images to ``[N, num_classes]`` logits."""
        if self.freeze_encoder:
            with torch.no_grad():
                features = self.encoder(images)
        else:
            features = self.encoder(images)
        return self.fc(features)
