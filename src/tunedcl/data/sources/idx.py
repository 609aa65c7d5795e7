"""MNIST and Fashion-MNIST: the IDX format, gzipped or not.

An IDX file is a big-endian header (magic ``0x0000 08 ndim``: unsigned bytes, ``ndim`` dimensions, so
2051 for images and 2049 for labels), ``ndim`` uint32 sizes, then the raw bytes. Fashion-MNIST is
verified by SHA-256 of the *decompressed* files, so a recompressed copy (Debian's) passes.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunedcl._checks import check_bool
from tunedcl.data.sources import files
from tunedcl.data.sources.core import Dataset, as_split, check_count, check_expected, check_labels, register_dataset

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


@dataclass(frozen=True)
class IdxFile:
    """One of the four files: what its decompressed bytes and its published ``.gz`` hash to."""

    sha256: str | None  # of the decompressed bytes; None where no authoritative value is known
    md5_gz: str | None  # of the ``.gz`` as served by the mirrors (checked on download)


@dataclass(frozen=True)
class IdxSpec:
    """Everything that differs between the IDX datasets."""

    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: Mapping[str, IdxFile]
    n_train: int
    n_test: int
    side: int
    mirrors: tuple[str, ...]  # base URLs; the file name + ".gz" is appended
    subfolders: tuple[str, ...]  # looked for inside every search base, after the base itself
    system_dirs: tuple[Path, ...] = ()
    system_hint: str | None = None


SPECS: dict[str, IdxSpec] = {
    "fashion-mnist": IdxSpec(
        name="fashion-mnist",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mean=(0.5,),  # as the TCL reference code normalises Fashion-MNIST (shared research notes, section 3)
        std=(0.5,),
        # SHA-256 of the decompressed files, computed from Debian's dataset-fashion-mnist
        # (0.0~git20200523.55506a9-1); MD5 of the .gz files as Zalando publishes them.
        files={
            TRAIN_IMAGES: IdxFile(
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            TRAIN_LABELS: IdxFile(
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            TEST_IMAGES: IdxFile(
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            TEST_LABELS: IdxFile(
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        },
        n_train=60000,
        n_test=10000,
        side=28,
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        subfolders=("fashion-mnist", "FashionMNIST/raw"),  # ours, then torchvision's layout
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
        system_hint="apt-get install dataset-fashion-mnist "
        "(Debian/Ubuntu; installs /usr/share/datasets/fashion-mnist)",
    ),
    "mnist": IdxSpec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        # SHA-256 of the decompressed files: UNKNOWN (the real files were not available to us and no
        # authoritative value was found), so local files are verified structurally only (magic numbers,
        # counts, 28x28). Downloads are checked against the .gz MD5s torchvision publishes.
        files={
            TRAIN_IMAGES: IdxFile(None, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            TRAIN_LABELS: IdxFile(None, "d53e105ee54ea40749a09fcbcd1e9432"),
            TEST_IMAGES: IdxFile(None, "9fb629c4189551a2d022fa330f9573f3"),
            TEST_LABELS: IdxFile(None, "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        n_train=60000,
        n_test=10000,
        side=28,
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        subfolders=("mnist", "MNIST/raw"),
    ),
}


def parse_idx(data: bytes, ndim: int, where: str) -> np.ndarray:
    """The uint8 array an IDX file holds, checking its magic number and that its size matches its header."""
    expected_magic = 0x0800 | ndim
    if len(data) < 4:
        raise ValueError(f"{where}: file is {len(data)} bytes, too short for an IDX header (truncated)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = {2049: " (an IDX label file)", 2051: " (an IDX image file)"}.get(magic, "")
        raise ValueError(
            f"{where}: IDX magic number {expected_magic} (unsigned bytes, {ndim} dimensions) expected, "
            f"got {magic}{kind}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{where}: file is {len(data)} bytes, shorter than its {header}-byte header (truncated)"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(data) - header
    if got != expected:
        shape = "*".join(str(d) for d in dims)
        why = "truncated" if got < expected else "trailing bytes"
        raise ValueError(f"{where}: expected {shape} = {expected} bytes after the header, got {got} ({why})")
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _find(spec: IdxSpec, root: Path | None) -> tuple[dict[str, Path] | None, list[str]]:
    """The four files, from the first folder that holds all of them, and every folder looked in."""
    bases = files.search_bases(root) + [(d, "system") for d in spec.system_dirs]
    looked: list[str] = []
    for base, why in bases:
        for folder in (base, *(base / sub for sub in spec.subfolders)):
            found = {}
            for name in spec.files:
                for candidate in (folder / name, folder / f"{name}.gz"):
                    if candidate.is_file():
                        found[name] = candidate
                        break
            if len(found) == len(spec.files):
                return found, looked
            line = files.describe(folder, why)
            if found:
                lacking = sorted(set(spec.files) - set(found))
                line += f": has {', '.join(sorted(found))} but lacks {', '.join(lacking)}"
            looked.append(line)
    return None, looked


def _download(spec: IdxSpec, root: Path | None) -> dict[str, Path]:
    target = files.download_dir(root, spec.name)
    paths = {}
    for name, info in spec.files.items():
        dest = target / f"{name}.gz"
        if not dest.is_file():
            files.fetch_first([m + f"{name}.gz" for m in spec.mirrors], dest, info.md5_gz)
        paths[name] = dest
    return paths


def _read_split(
    spec: IdxSpec, paths: Mapping[str, Path], images_name: str, labels_name: str, verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = paths[images_name], paths[labels_name]
    image_bytes = files.read_maybe_gzip(images_path)
    label_bytes = files.read_maybe_gzip(labels_path)
    images = parse_idx(image_bytes, 3, str(images_path))
    labels = parse_idx(label_bytes, 1, str(labels_path))
    check_count(len(images), len(labels), f"{images_path} / {labels_path}")
    check_labels(labels, len(spec.classes), str(labels_path))
    if verify:
        # After the structural checks, whose messages say more than a checksum mismatch would.
        for name, data in ((images_name, image_bytes), (labels_name, label_bytes)):
            expected = spec.files[name].sha256
            if expected is not None:
                files.check_digest(str(paths[name]), "sha256", expected, hashlib.sha256(data).hexdigest())
        check_expected("image size", (spec.side, spec.side), tuple(images.shape[1:]), str(images_path))
    # The copy makes the array writable (np.frombuffer over bytes is not) and adds the channel axis.
    return images.reshape(len(images), 1, *images.shape[1:]).copy(), labels.astype(np.int64)


def load_idx_dataset(spec: IdxSpec, root: Path | None, download: bool, verify: bool) -> Dataset:
    """Find (or download) and read one IDX dataset."""
    check_bool("verify", verify)
    paths, looked = _find(spec, root)
    if paths is None:
        if not download:
            how = [f"load_dataset({spec.name!r}, download=True)"]
            if spec.system_hint:
                how.insert(0, spec.system_hint)
            how.append(
                f"put {', '.join(f'{n}[.gz]' for n in spec.files)} in ${files.ENV_VAR} "
                f"(or ${files.ENV_VAR}/{spec.name}/), or pass root="
            )
            raise files.not_found(spec.name, looked, how)
        paths = _download(spec, root)
    train_x, train_y = _read_split(spec, paths, TRAIN_IMAGES, TRAIN_LABELS, verify)
    test_x, test_y = _read_split(spec, paths, TEST_IMAGES, TEST_LABELS, verify)
    if verify:
        check_expected("train count", spec.n_train, len(train_x), str(paths[TRAIN_IMAGES]))
        check_expected("test count", spec.n_test, len(test_x), str(paths[TEST_IMAGES]))
    train, test = as_split(train_x, train_y), as_split(test_x, test_y)
    return Dataset(
        spec.name, train, test, spec.classes, spec.mean, spec.std, source=os.path.dirname(paths[TRAIN_IMAGES])
    )


@register_dataset("fashion-mnist")
def fashion_mnist(root: Path | None, download: bool, *, verify: bool = True) -> Dataset:
    """Zalando's Fashion-MNIST: 60,000 + 10,000 28x28 grey images of 10 kinds of clothing."""
    return load_idx_dataset(SPECS["fashion-mnist"], root, download, verify)


@register_dataset("mnist")
def mnist(root: Path | None, download: bool, *, verify: bool = True) -> Dataset:
    """LeCun's MNIST digits: 60,000 + 10,000 28x28 grey images."""
    return load_idx_dataset(SPECS["mnist"], root, download, verify)
