"""The dataset contract (`Dataset`, `Split`), the registry of sources (`DATASETS`), and `load_dataset`.

A source is a function ``fn(root, download, **options) -> Dataset`` registered under a name with
`register_dataset`; the first line of its docstring describes it in ``DATASETS.describe()``. It returns the
whole dataset; `load_dataset` then applies the quick-run subset options (``fraction``, ``per_class``,
``seed``, ``subset_test``) the same way for every source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunedcl._checks import bad_argument, check_bool, check_int, check_real
from tunedcl.registry import Registry, named_parameters

SourceFn = Callable[..., "Dataset"]

DATASETS: Registry[SourceFn] = Registry("dataset")


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset, held whole: the training loop indexes it, no per-image Python.

    Attributes:
        images: ``[n, C, H, W]`` uint8, contiguous. It may be backed by a memory-mapped cache file
            (image-folder), so treat it as read-only.
        labels: ``[n]`` int64 class indices into `Dataset.classes`.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        im, lb = self.images, self.labels
        if not isinstance(im, torch.Tensor) or im.dtype != torch.uint8 or im.dim() != 4:
            raise bad_argument("images", im, "a uint8 tensor [n, C, H, W]", owner="Split")
        if not im.is_contiguous():
            raise bad_argument("images", im, "contiguous", owner="Split")
        if not isinstance(lb, torch.Tensor) or lb.dtype != torch.int64 or lb.dim() != 1:
            raise bad_argument("labels", lb, "an int64 tensor [n]", owner="Split")
        if lb.shape[0] != im.shape[0]:
            raise ValueError(f"Split has {im.shape[0]} images but {lb.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, image_shape={tuple(self.images.shape[1:])})"

    def take(self, indices: np.ndarray) -> Split:
        """The images and labels at `indices` (a copy, in memory, even if this split is memory-mapped)."""
        idx = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        return Split(self.images[idx].contiguous(), self.labels[idx].contiguous())


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset loaded whole: train and test splits, class names, normalisation constants.

    Attributes:
        name: the registry name it was loaded by (``"cifar100"``).
        train, test: the two splits (same C, H, W).
        classes: class names; ``classes[label]`` names a label.
        mean, std: per-channel statistics in [0, 1] units, for normalising ``images / 255``.
        source: where the data was read from (a path or a package), for run reports.
        validation: images held out of the training split (``load_dataset(..., validation=N)``), or None.
    """

    name: str
    train: Split
    test: Split
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str = ""
    validation: Split | None = None

    def __post_init__(self) -> None:
        # Tuples, so that a frozen Dataset is immutable all the way down.
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        shape = tuple(self.train.images.shape[1:])
        if tuple(self.test.images.shape[1:]) != shape:
            raise ValueError(
                f"{self.name}: train images are {shape}, test images {tuple(self.test.images.shape[1:])}"
            )
        if shape[1] != shape[2]:
            raise ValueError(f"{self.name}: images must be square; got {shape[1]}x{shape[2]}")
        if len(self.mean) != shape[0] or len(self.std) != shape[0]:
            raise ValueError(f"{self.name}: mean/std need {shape[0]} values (one per channel)")
        if self.validation is not None and tuple(self.validation.images.shape[1:]) != shape:
            raise ValueError(f"{self.name}: validation images are {tuple(self.validation.images.shape[1:])}, "
                             f"train images {shape}")
        splits = (("train", self.train), ("test", self.test), ("validation", self.validation))
        for split_name, split in splits:
            if split is None or not len(split):
                continue
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= len(self.classes):
                raise ValueError(
                    f"{self.name} {split_name}: labels span {low}..{high}, "
                    f"outside 0..{len(self.classes) - 1} ({len(self.classes)} classes)"
                )

    @property
    def in_channels(self) -> int:
        """Channels per image (1 or 3)."""
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.train.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"classes={self.num_classes}, image={self.in_channels}x{self.image_size}x{self.image_size})"
        )


def register_dataset(name: str) -> Callable[[SourceFn], SourceFn]:
    """Register ``fn(root: Path | None, download: bool, **options) -> Dataset`` in `DATASETS` under `name`.

    The keyword options `fn` declares are the options `load_dataset` accepts for that name; the first line
    of its docstring is the dataset's description.
    """
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names `load_dataset` accepts, sorted."""
    return DATASETS.names()


def load_dataset(
    name: str,
    root: str | Path | None = None,
    download: bool = False,
    *,
    fraction: float | None = None,
    per_class: int | None = None,
    seed: int = 0,
    subset_test: bool = False,
    validation: int = 0,
    **options: Any,
) -> Dataset:
    """Load a dataset by name: whole splits as uint8 tensors, class names, normalisation constants.

    Args:
        name: one of `list_datasets()`: ``fashion-mnist``, ``mnist``, ``cifar10``, ``cifar100``,
            ``animal-mnist``, ``digits``, ``image-folder``.
        root: a folder to look in first (for ``image-folder``: the tree itself, required).
        download: fetch from the canonical source when the files are found nowhere.
        fraction: keep this fraction (0 < f <= 1) of each class of the training split.
        per_class: keep this many images of each class of the training split (all of a class that has
            fewer). At most one of `fraction` / `per_class`.
        seed: chooses which images the subset keeps; the same seed keeps the same images, and a smaller
            subset is contained in a larger one with the same seed.
        subset_test: apply the subset to the test split too (default: the test split stays whole, so that
            quick runs are still scored on the full test set).
        validation: hold this many images of each class out of the training split, as ``Dataset.validation``
            (chosen by `seed`, before any subset, which then draws from the rest). Anything tuned is tuned on
            it; the test split stays for the final numbers.
        **options: per-source options, e.g. ``verify=False`` (skip checksums and expected counts),
            ``label_type="coarse"`` (cifar100), ``image_size=64``, ``classes="imagenet100"``
            (image-folder). Unknown options are an error.

    Example:
        >>> ds = load_dataset("fashion-mnist", per_class=100)      # doctest: +SKIP
        >>> ds.train.images.shape, ds.mean                         # doctest: +SKIP
        (torch.Size([1000, 1, 28, 28]), (0.5,))
    """
    key = DATASETS.key(name)
    if root is not None and not isinstance(root, (str, Path)):
        raise bad_argument("root", root, "a path (str or pathlib.Path) or None")
    check_bool("download", download)
    _check_subset_args(fraction, per_class, seed, subset_test)
    check_int("validation", validation, low=0)

    fn = DATASETS.get(key)
    allowed = list(named_parameters(fn, keyword_only=True))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) for dataset {key!r}: {', '.join(unknown)}; "
            f"its options are: {', '.join(allowed + ['fraction', 'per_class', 'seed', 'subset_test', 'validation'])}"
        )
    ds: Dataset = fn(Path(root).expanduser() if root is not None else None, download, **options)
    if validation:
        held, rest = hold_out(ds.train, validation, seed)
        ds = replace(ds, train=rest, validation=held)
    if fraction is None and per_class is None:
        return ds
    train = subset_split(ds.train, fraction=fraction, per_class=per_class, seed=seed)
    test = (
        subset_split(ds.test, fraction=fraction, per_class=per_class, seed=seed) if subset_test else ds.test
    )
    return replace(ds, train=train, test=test)


def _check_subset_args(fraction: Any, per_class: Any, seed: Any, subset_test: Any) -> None:
    if fraction is not None and per_class is not None:
        raise ValueError(
            f"fraction={fraction!r} and per_class={per_class!r} were both given; give at most one"
        )
    check_real("fraction", fraction, low=0.0, low_inclusive=False, high=1.0, allow_none=True)
    check_int("per_class", per_class, low=1, allow_none=True)
    check_int("seed", seed, low=0)
    check_bool("subset_test", subset_test)


def hold_out(split: Split, per_class: int, seed: int) -> tuple[Split, Split]:
    """(held out, rest): the first ``per_class`` images of each class in its seeded order, and the others; a
    class with no more than ``per_class`` images is an error (nothing would be left to train on)."""
    held, rest = [], []
    for perm in per_class_permutations(split.labels.numpy(), seed):
        if len(perm) <= per_class:
            label = int(split.labels[perm[0]])
            raise ValueError(f"validation={per_class} would hold out all {len(perm)} training images of class "
                             f"{label}; validation must be below the smallest class size")
        held.append(perm[:per_class])
        rest.append(perm[per_class:])
    return split.take(np.sort(np.concatenate(held))), split.take(np.sort(np.concatenate(rest)))


def per_class_permutations(labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """For each class present (ascending), its indices in an order shuffled by `seed`.

    Taking a prefix of each gives a stratified sample; prefixes of different lengths with the same seed
    are nested, which is what makes ``per_class=10`` a superset of ``per_class=5``.
    """
    rng = np.random.default_rng(seed)
    return [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, test), taking ``round(test_fraction * n_c)`` of each class to test.

    Both index arrays are sorted, so the splits keep the order of the original data.
    """
    train, test = [], []
    for perm in per_class_permutations(labels, seed):
        n_test = int(round(test_fraction * len(perm)))
        test.append(perm[:n_test])
        train.append(perm[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def subset_split(split: Split, *, fraction: float | None, per_class: int | None, seed: int) -> Split:
    """Keep a stratified, seed-determined part of `split`: `fraction` of each class or `per_class` images.

    A class keeps at least one image under `fraction`, and all its images when it has fewer than
    `per_class`. The kept images stay in their original order.
    """
    keep: list[np.ndarray] = []
    for perm in per_class_permutations(split.labels.numpy(), seed):
        k = per_class if per_class is not None else max(1, int(round(float(fraction) * len(perm))))  # type: ignore[arg-type]
        keep.append(perm[:k])
    indices = np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    return split.take(indices)


def as_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """A `Split` from numpy arrays (images ``[n, C, H, W]`` uint8), without copying when possible."""
    return Split(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64)))


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    """Raise naming `where` if any label is outside ``0..num_classes-1`` (a mislabelled file)."""
    if labels.size == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{where}: label value {int(labels[i])} at index {i} is outside 0..{num_classes - 1} "
            f"({bad.size} labels out of range)"
        )


def check_count(n_images: int, n_labels: int, where: str) -> None:
    """Raise naming `where` when images and labels disagree in number."""
    if n_images != n_labels:
        raise ValueError(f"{where}: images/labels count mismatch: {n_images} images but {n_labels} labels")


def check_expected(what: str, expected: Sequence[int] | int, got: Sequence[int] | int, where: str) -> None:
    """Raise naming `where` when a verified dataset's count or size differs from the published one."""
    if expected != got:
        raise ValueError(
            f"{where}: expected {what} {expected}, got {got} "
            "(not the published dataset? verify=False skips this)"
        )
