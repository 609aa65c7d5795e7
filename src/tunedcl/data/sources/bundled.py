"""Datasets that ship inside a Python package: Animal-MNIST (``animal-mnist``) and scikit-learn's digits.

Neither comes with a train/test split, so both get the same fixed one: a sixth of each class, chosen
by `SPLIT_SEED`, is the test split (the proportion of MNIST's 10,000 test to 60,000 train). The split
never depends on the ``seed`` option, so every run is scored on the same test images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import numpy as np

from tunedcl._checks import check_bool
from tunedcl.data.sources import files
from tunedcl.data.sources.core import (
    Dataset,
    as_split,
    check_count,
    check_expected,
    check_labels,
    register_dataset,
    stratified_split,
)

TEST_FRACTION = 1 / 6
SPLIT_SEED = 0

ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# The package's data folder and its two gzipped pickles (a uint8 array [10000, 28, 28] and an int64
# array [10000], sorted by class). SHA-256 of the decompressed pickles of animal-mnist 0.4.
ANIMAL_SUBDIR = Path("data") / "Animal_MNIST"
ANIMAL_FILES = {
    "animal_data_version_3.gz": "0a13908291891bf5b97b18427cf0eceedcb720959826cc85f7e06dc89e5eaf77",
    "animal_label_version_3.gz": "3d826227c39b7dba09abb8273cf07928443fec2c56b6396b4872741b7b332f93",
}
# Computed from the train split defined here (pixel / 255 over all train pixels).
ANIMAL_MEAN, ANIMAL_STD = (0.2730,), (0.4057,)
# Computed the same way from the digits train split after scaling 0..16 to 0..255.
DIGITS_MEAN, DIGITS_STD = (0.3056,), (0.3761,)


def _split(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    source: str,
) -> Dataset:
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return Dataset(
        name,
        as_split(images[train_idx], labels[train_idx]),
        as_split(images[test_idx], labels[test_idx]),
        classes,
        mean,
        std,
        source=source,
    )


def package_data_dir() -> Path | None:
    """The installed ``animal_mnist`` package's data folder, found without importing the package.

    `find_spec` of a top-level package does not run it; its modules import tensorflow.
    """
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / ANIMAL_SUBDIR
    return folder if folder.is_dir() else None


@register_dataset("animal-mnist")
def animal_mnist(root: Path | None, download: bool, *, verify: bool = True) -> Dataset:
    """Animal-MNIST: 10,000 28x28 animal silhouettes, 10 classes of 1,000, split 5/6 train, 1/6 test.

    ``download`` does nothing: the data comes with the ``animal-mnist`` package
    (``pip install --no-deps animal-mnist``; its declared dependencies, tensorflow among them, are
    not needed to read the files).
    """
    check_bool("verify", verify)
    folders = [(f, why) for base, why in files.search_bases(root) for f in (base, base / "animal-mnist")]
    package = package_data_dir()
    if package is not None:
        folders.append((package, "animal-mnist package"))
    folder = next((f for f, _ in folders if all((f / n).is_file() for n in ANIMAL_FILES)), None)
    if folder is None:
        looked = [files.describe(f, why) for f, why in folders]
        if package is None:
            looked.append("the animal_mnist package (not installed)")
        how = [
            "pip install --no-deps animal-mnist (--no-deps: its declared dependencies include tensorflow,"
            " which reading the data does not need)",
            f"or put {' and '.join(ANIMAL_FILES)} in ${files.ENV_VAR}/animal-mnist/, or pass root=",
        ]
        raise files.not_found("animal-mnist", looked, how)

    data_name, label_name = ANIMAL_FILES
    arrays = []
    for name in (data_name, label_name):
        raw = files.read_maybe_gzip(folder / name)
        if verify:
            files.check_digest(
                str(folder / name), "sha256", ANIMAL_FILES[name], hashlib.sha256(raw).hexdigest()
            )
        arrays.append(files.safe_unpickle(raw, str(folder / name)))
    images, labels = arrays
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"{folder / data_name}: expected a uint8 array [n, H, W], got {got}")
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"{folder / label_name}: expected an integer array [n], got {got}")
    check_count(len(images), len(labels), str(folder))
    check_labels(labels, len(ANIMAL_CLASSES), str(folder / label_name))
    if verify:
        check_expected("images and size", (10000, 28, 28), tuple(images.shape), str(folder / data_name))
    images = images.reshape(len(images), 1, *images.shape[1:])
    return _split(
        "animal-mnist",
        images,
        labels.astype(np.int64),
        ANIMAL_CLASSES,
        ANIMAL_MEAN,
        ANIMAL_STD,
        source=os.fspath(folder),
    )


@register_dataset("digits")
def digits(root: Path | None, download: bool) -> Dataset:
    """scikit-learn's 8x8 digits: 1,797 images, values 0..16 scaled to 0..255, split 5/6 train, 1/6 test.

    Needs scikit-learn (``pip install 'tunedcl[digits]'``), which ships the data; `root` and
    `download` are not used.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn, which ships it: pip install 'tunedcl[digits]'"
        ) from err
    bunch = load_digits()
    # 0..16 in steps of one; round rather than truncate so that 16 maps to 255 and 8 to 128.
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images = images.reshape(len(images), 1, 8, 8)
    return _split(
        "digits",
        images,
        labels,
        tuple(str(d) for d in range(10)),
        DIGITS_MEAN,
        DIGITS_STD,
        source="sklearn.datasets.load_digits",
    )
