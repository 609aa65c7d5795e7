"""What a run is assembled from: its data (with the labels training sees), where the split lives, its method
with the model built, and the order of each epoch. Shared by the training loop, ``tunedcl eval`` and the
benchmarks, so they build alike."""

from __future__ import annotations

from typing import Any

import torch

from tunedcl.data import load_dataset
from tunedcl.methods import Method, create_method
from tunedcl.train.builders import build_encoder
from tunedcl.train.config import Config, ConfigError


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the training images in ``epoch``: the same on every rank and after a resume."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def load_training_data(config: Config):
    """The dataset of the config, with its subset and source options (``data.options``)."""
    data = config.data
    try:
        return load_dataset(
            data.dataset,
            root=data.root,
            download=data.download,
            fraction=data.fraction,
            per_class=data.per_class,
            seed=data.subset_seed,
            validation=data.validation,
            **data.options,
        )
    except ValueError as error:
        raise ConfigError(f"data: {error}") from error


def training_labels(labels: torch.Tensor, groups: list[list[int]] | None, num_classes: int) -> torch.Tensor:
    """The labels training sees: the classes, or with ``data.train_label_groups`` the index of each class's
    group (positives far apart; evaluation keeps the classes). ConfigError unless the groups hold every class
    ``0 .. num_classes - 1`` once."""
    if groups is None:
        return labels
    named = sorted(c for group in groups for c in group)
    if named != list(range(num_classes)):
        raise ConfigError(f"data.train_label_groups must hold every class 0..{num_classes - 1} of the dataset once; "
                          f"got {groups}")
    group_of = torch.empty(num_classes, dtype=labels.dtype)
    for index, group in enumerate(groups):
        group_of[group] = index
    return group_of[labels]


def keep_on_device(nbytes: int, device: torch.device, limit_gib: float, free_bytes: int | None = None) -> bool:
    """Whether a training split of ``nbytes`` should live on ``device`` (train.data_on_device_gib): only on a
    GPU, at most ``limit_gib`` GiB and a quarter of the free memory (``free_bytes``; read from the device when
    None), so the model keeps room. Indexing a batch there then costs no host copy at all."""
    if device.type != "cuda" or nbytes > limit_gib * 2**30:
        return False
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    return nbytes <= free_bytes // 4


def trained_classes(config: Config, dataset: Any) -> int:
    """How many labels training distinguishes (a classifier's outputs): the groups of
    ``data.train_label_groups``, else the dataset's classes. Training and ``tunedcl eval`` build alike."""
    groups = config.data.train_label_groups
    return len(groups) if groups else dataset.num_classes


def build_method(config: Config, in_channels: int, num_classes: int, gather_distributed: bool) -> Method:
    """The config's method with its model built (``method.model``); the encoder is built first, then the
    method's parts, so the initial weights depend on the seed alone."""
    method = create_method(config.loss.method, **config.loss.hyperparameters)
    method.build(
        build_encoder(config, in_channels),
        num_classes,
        projection_dim=config.model.projection_dim,
        projection_hidden=config.model.projection_hidden,
        gather_distributed=gather_distributed,
    )
    return method
