"""CIFAR-10 and CIFAR-100: the "python version" pickled batches, from a folder or the original tar.gz.

Each batch is a pickled dict (written by Python 2, so its strings load as bytes): ``data`` a uint8
array ``[n, 3072]`` (1024 red, then 1024 green, then 1024 blue values, rows of 32), and ``labels``
(CIFAR-10) or ``fine_labels`` / ``coarse_labels`` (CIFAR-100), lists of ints. The archive is read in
place, member by member, never extracted to disk; only its published MD5 is known, so only the
archive can be checksummed.
"""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tunedcl._checks import check_bool, check_choice
from tunedcl.data.sources import files
from tunedcl.data.sources.core import Dataset, as_split, check_count, check_expected, check_labels, register_dataset

_PIXELS = 3 * 32 * 32
CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/"  # where both archives are published


@dataclass(frozen=True)
class CifarSpec:
    """Everything that differs between CIFAR-10 and CIFAR-100 (both have 50,000 + 10,000 images)."""

    name: str
    archive: str  # the published file name
    folder: str  # the folder the archive unpacks to
    md5: str  # of the archive, as published on the CIFAR page
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_types: Mapping[str, tuple[str, str, int]]  # label_type -> (labels key, names key, classes)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    n_train: int = 50000
    n_test: int = 10000
    url: str = ""  # default: the archive on the CIFAR page

    def __post_init__(self) -> None:
        if not self.url:
            object.__setattr__(self, "url", CIFAR_PAGE + self.archive)


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        md5="c58f30108f718f92721af3b95e74349a",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_types={"fine": ("labels", "label_names", 10)},
        # The TCL reference code's constants (shared research notes, section 3).
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_types={
            "fine": ("fine_labels", "fine_label_names", 100),
            "coarse": ("coarse_labels", "coarse_label_names", 20),
        },
        mean=(0.5071, 0.4867, 0.4408),
        std=(0.2675, 0.2565, 0.2761),
    ),
}


def _locate(spec: CifarSpec, root: Path | None) -> tuple[Path | None, list[str]]:
    """The first extracted folder or archive found, and every place looked in.

    Within each search base an extracted folder wins over an archive: it loads without decompressing.
    """
    needed = (*spec.train_files, *spec.test_files, spec.meta_file)
    looked: list[str] = []
    for base, why in files.search_bases(root):
        folders = (base, base / spec.folder, base / spec.name, base / spec.name / spec.folder)
        for folder in folders:
            present = [n for n in needed if (folder / n).is_file()]
            if len(present) == len(needed):
                return folder, looked
            line = files.describe(folder, why)
            if present:
                line += (
                    f": has {', '.join(present)} but lacks {', '.join(n for n in needed if n not in present)}"
                )
            looked.append(line)
        for archive in (base / spec.archive, base / spec.name / spec.archive):
            if archive.is_file():
                return archive, looked
            looked.append(f"{archive} ({why}, no such file)")
    return None, looked


def _read_members(location: Path, names: Sequence[str]) -> Iterator[tuple[str, str, bytes]]:
    """``(name, where, bytes)`` for each of `names`, from a folder or straight out of a tar archive."""
    if location.is_dir():
        for name in names:
            yield name, str(location / name), (location / name).read_bytes()
        return
    try:
        with tarfile.open(location, "r:*") as tar:
            by_name: dict[str, list[tarfile.TarInfo]] = {}
            for member in tar.getmembers():
                if member.isfile():
                    by_name.setdefault(PurePosixPath(member.name).name, []).append(member)
            for name in names:
                candidates = by_name.get(name, [])
                if len(candidates) != 1:
                    problem = "no member" if not candidates else f"{len(candidates)} members"
                    raise ValueError(
                        f"{location}: expected one archive member named {name!r}, found {problem}"
                    )
                extracted = tar.extractfile(candidates[0])
                assert extracted is not None  # isfile() members always extract
                yield name, f"{location}:{candidates[0].name}", extracted.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ValueError(f"{location}: corrupt or truncated archive ({type(err).__name__}: {err})") from err


def _as_str_keys(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _parse_batch(data: bytes, where: str, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _as_str_keys(files.safe_unpickle(data, where), where)
    for key in ("data", label_key):
        if key not in batch:
            raise ValueError(f"{where}: batch has no {key!r} entry (keys: {', '.join(sorted(batch))})")
    pixels = batch["data"]
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 2
        or pixels.shape[1] != _PIXELS
    ):
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise ValueError(f"{where}: 'data' must be a uint8 array [n, {_PIXELS}] (3x32x32 images); got {got}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {label_key!r} must be a list of integers ({err})") from err
    if labels.ndim != 1:
        raise ValueError(f"{where}: {label_key!r} must be a flat list; got shape {labels.shape}")
    check_count(len(pixels), len(labels), where)
    check_labels(labels, num_classes, where)
    return pixels.reshape(-1, 3, 32, 32), labels


def _class_names(data: bytes, where: str, names_key: str, num_classes: int) -> tuple[str, ...]:
    meta = _as_str_keys(files.safe_unpickle(data, where), where)
    names = meta.get(names_key)
    if not isinstance(names, list) or len(names) != num_classes:
        got = f"{len(names)} names" if isinstance(names, list) else repr(type(names).__name__)
        raise ValueError(f"{where}: expected {names_key!r} with {num_classes} class names, got {got}")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names)


def load_cifar(spec: CifarSpec, root: Path | None, download: bool, label_type: str, verify: bool) -> Dataset:
    """Find (or download) and read one CIFAR dataset."""
    check_choice("label_type", label_type, tuple(spec.label_types))
    check_bool("verify", verify)
    label_key, names_key, num_classes = spec.label_types[label_type]

    location, looked = _locate(spec, root)
    if location is None:
        if not download:
            how = [
                f"load_dataset({spec.name!r}, download=True) (fetches {spec.url})",
                f"put {spec.archive} or its extracted {spec.folder}/ in ${files.ENV_VAR}, or pass root=",
            ]
            raise files.not_found(spec.name, looked, how)
        location = files.download_dir(root, spec.name) / spec.archive
        files.fetch_first([spec.url], location, spec.md5)
    if verify and location.is_file():
        files.check_digest(str(location), "md5", spec.md5, files.file_digest(location, "md5"))

    names = (*spec.train_files, *spec.test_files, spec.meta_file)
    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    classes: tuple[str, ...] = ()
    for name, where, data in _read_members(location, names):
        if name == spec.meta_file:
            classes = _class_names(data, where, names_key, num_classes)
        else:
            parsed[name] = _parse_batch(data, where, label_key, num_classes)

    splits = []
    for split_files, expected in ((spec.train_files, spec.n_train), (spec.test_files, spec.n_test)):
        images = np.concatenate([parsed[f][0] for f in split_files])
        labels = np.concatenate([parsed[f][1] for f in split_files])
        if verify:
            check_expected("image count", expected, len(images), f"{location} ({', '.join(split_files)})")
        splits.append(as_split(images, labels))
    return Dataset(spec.name, splits[0], splits[1], classes, spec.mean, spec.std, source=str(location))


@register_dataset("cifar10")
def cifar10(root: Path | None, download: bool, *, verify: bool = True) -> Dataset:
    """CIFAR-10: 50,000 + 10,000 32x32 colour images in 10 classes."""
    return load_cifar(SPECS["cifar10"], root, download, "fine", verify)


@register_dataset("cifar100")
def cifar100(root: Path | None, download: bool, *, label_type: str = "fine", verify: bool = True) -> Dataset:
    """CIFAR-100: 50,000 + 10,000 32x32 colour images; 100 fine classes or 20 coarse superclasses."""
    return load_cifar(SPECS["cifar100"], root, download, label_type, verify)
