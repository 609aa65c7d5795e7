"""Encoders, projection heads and their compositions, in plain torch.

    >>> from tunedcl.models import ContrastiveModel, create_model, list_models
    >>> list_models()
    ['resnet101', 'resnet18', 'resnet34', 'resnet50', 'small-cnn']
    >>> encoder = create_model("resnet18", in_channels=3, stem="cifar", width=1.0)
    >>> encoder.feature_dim
    512
    >>> model = ContrastiveModel(encoder, out_dim=128)  # features [.., 512], projections [.., 128]

This package depends on torch only; it knows nothing of the losses or the data.
"""

from tunedcl.models.base import Encoder, init_conv_bn
from tunedcl.models.heads import ProjectionHead
from tunedcl.models.momentum import cosine_momentum, ema_update, frozen_copy
from tunedcl.models.registry import MODELS, create_model, list_models, model_options, register_model
from tunedcl.models.resnet import BasicBlock, Bottleneck, ResidualBlock, ResNet, resnet18, resnet34, resnet50, resnet101
from tunedcl.models.small_cnn import SmallCNN, small_cnn
from tunedcl.models.wrappers import ContrastiveModel, ContrastiveOutput, LinearClassifier

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ContrastiveModel",
    "ContrastiveOutput",
    "Encoder",
    "LinearClassifier",
    "MODELS",
    "ProjectionHead",
    "cosine_momentum",
    "ema_update",
    "frozen_copy",
    "ResNet",
    "ResidualBlock",
    "SmallCNN",
    "create_model",
    "init_conv_bn",
    "list_models",
    "model_options",
    "register_model",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "small_cnn",
]
