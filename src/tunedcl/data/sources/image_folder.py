"""Class-per-folder image trees (ImageNet-100, CUB-200 laid out that way), decoded once into a cache.

``root/train/<class>/...`` and ``root/val/<class>/...`` (or ``root/test/``) are decoded with Pillow,
converted to RGB (or grey), resized so the shorter side is ``image_size`` and centre-cropped to a
square (one resampling step, bicubic, over the central square of the original), and written to a
memory-mapped uint8 ``.npy`` per split. JPEGs are decoded at the smallest of 1, 1/2, 1/4, 1/8 scale
that still covers the target (Pillow's ``draft``): several times faster on ImageNet-sized photos,
within a few grey levels of a full decode. Later loads map those files instead of decoding again, and
``Split.images`` is a zero-copy view of the map, so a split larger than RAM still streams from disk.

The cache lives in ``<cache_dir>/<key>/`` where the key hashes the root, the options and every
file's path, size and modification time: change any image and the next load rebuilds. It is written
to a temporary folder and renamed into place, so an interrupted build is never mistaken for a cache.
Processes that load the same tree at once (the ranks of a torchrun job, parallel sweep runs) take turns
through a lock on the cache folder: the first builds, the others wait and then map what it built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunedcl._checks import bad_argument, check_choice, check_int
from tunedcl.data.sources import files
from tunedcl.data.sources.core import Dataset, Split, register_dataset

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
# Bump when decoding or resizing changes, so that caches made the old way are not reused.
CACHE_VERSION = 1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_BATCH = 512  # images handed to the decoding threads at a time (bounds the pending work, not the speed)


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of the CMC ImageNet-100 subset, in the order of CMC's list."""
    text = resources.files("tunedcl.data").joinpath("imagenet100.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _resolve_classes(classes: Any, train_dir: Path) -> list[str]:
    if classes is None:
        return sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes == "imagenet100":
        # Sorted: how an ImageFolder over just those 100 folders numbers them (so the reference code).
        return sorted(imagenet100_classes())
    if (
        isinstance(classes, (list, tuple))
        and classes
        and all(isinstance(c, str) and c for c in classes)
        and len(set(classes)) == len(classes)
    ):
        return list(classes)
    raise bad_argument(
        "classes", classes, 'None (every folder in train/), "imagenet100", or a list of distinct folder names'
    )


def _scan(split_dir: Path, classes: Sequence[str], split: str) -> tuple[list[str], list[int]]:
    """Relative paths of every image under each class folder (sorted, recursive) and their labels."""
    missing = [c for c in classes if not (split_dir / c).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{split_dir}: no folder for class(es) {shown}")
    paths: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(split_dir / cls):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [
                os.path.relpath(os.path.join(dirpath, f), split_dir)
                for f in filenames
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
            ]
        if not found and split == "train":
            raise ValueError(
                f"{split_dir / cls}: class folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        found.sort()
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise ValueError(f"{split_dir}: no images in any class folder")
    return paths, labels


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 ``[C, size, size]``: shorter side to `size`, centre square, one resample."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
            side = min(w, h)
            # JPEG can decode at 1/2, 1/4, 1/8 scale for free; ask for no less than the size we need.
            img.draft(mode, (math.ceil(w * size / side), math.ceil(h * size / side)))
            rgb = img.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: cannot decode image ({type(err).__name__}: {err})") from err
    w, h = rgb.size
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    out = rgb.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    arr = np.asarray(out, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _cache_key(
    root: Path,
    image_size: int,
    channels: int,
    classes: Sequence[str],
    listing: dict[str, tuple[Path, list[str], list[int]]],
) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(root.resolve()), image_size, channels, list(classes)]).encode())
    for split, (split_dir, paths, labels) in listing.items():
        h.update(f"\n{split}:{split_dir.name}".encode())
        for rel, label in zip(paths, labels, strict=True):
            st = os.stat(split_dir / rel)
            h.update(f"\n{rel}\t{label}\t{st.st_size}\t{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def _decode_into(out: np.ndarray, paths: list[Path], size: int, mode: str, i: int) -> None:
    out[i] = _decode(paths[i], size, mode)


def _build(
    tmp: Path,
    image_size: int,
    channels: int,
    classes: Sequence[str],
    listing: dict[str, tuple[Path, list[str], list[int]]],
    workers: int,
) -> None:
    mode = "L" if channels == 1 else "RGB"
    index: dict[str, Any] = {
        "version": CACHE_VERSION,
        "image_size": image_size,
        "channels": channels,
        "classes": list(classes),
    }
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow releases the GIL while decoding
        for split, (split_dir, paths, labels) in listing.items():
            log.info("decoding %d %s images from %s into %s", len(paths), split, split_dir, tmp)
            out = np.lib.format.open_memmap(
                tmp / f"{split}.npy",
                mode="w+",
                dtype=np.uint8,
                shape=(len(paths), channels, image_size, image_size),
            )

            work = partial(_decode_into, out, [split_dir / p for p in paths], image_size, mode)
            for start in range(0, len(paths), _BATCH):
                list(pool.map(work, range(start, min(start + _BATCH, len(paths)))))
            out.flush()
            del out
            index[split] = {"folder": str(split_dir), "files": paths, "labels": labels}
    (tmp / "index.json").write_text(json.dumps(index))


@contextmanager
def _exclusive(parent: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache folder ``parent`` (``flock`` on the folder itself: no lock file to
    leave behind, released by the kernel if the holder dies). Without it every torchrun rank would decode the
    whole tree at once (8x the work and the disk). Where ``flock`` does not exist (Windows) there is no lock;
    concurrent builds then still end in one cache (the rename in `image_folder`)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    handle = os.open(parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is building an image cache in %s; waiting for it", parent)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # NFS emulates flock with fcntl locks, which refuse a read-only descriptor
            log.info("no lock on %s (%s): processes may build the cache at once; one rename wins", parent, error)
        yield
    finally:
        os.close(handle)  # closing the last descriptor releases the lock


def _build_once(folder: Path, build: Callable[[Path], None]) -> None:
    """``build(tmp)`` into a temporary folder renamed to ``folder``, unless ``folder`` holds a cache by the time
    this process holds the lock (another one built it while this one waited)."""
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(parent):
        if (folder / "index.json").is_file():
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=parent))
        try:
            build(tmp)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "index.json").is_file():  # not a concurrent build that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _load_split(folder: Path, split: str, labels: list[int]) -> Split:
    """The cached images of `split`, memory-mapped; `labels` come from the scan the cache key covers."""
    path = folder / f"{split}.npy"
    try:
        # "c" (copy-on-write): a writable view, so torch takes it without a warning, that never
        # writes back to the shared cache file.
        images = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable cache file ({err}); delete {folder} to rebuild it") from err
    if images.shape[0] != len(labels):
        raise ValueError(
            f"{path}: cache holds {images.shape[0]} images, expected {len(labels)}; "
            f"delete {folder} to rebuild it"
        )
    return Split(torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64))


@register_dataset("image-folder")
def image_folder(
    root: Path | None,
    download: bool,
    *,
    image_size: int = 64,
    classes: Sequence[str] | str | None = None,
    channels: int = 3,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> Dataset:
    """Any class-per-folder image tree (root/train/<class>/, root/val/<class>/, as ImageNet-100), decoded once.

    `root` holds ``train/`` and ``val/`` (or ``test/``), one folder per class in each; the decoded images
    are cached as memory-mapped uint8 arrays.

    Args:
        image_size: side of the square images the tree is resized and centre-cropped to.
        classes: None (every folder in ``train/``, sorted), ``"imagenet100"`` (the CMC list, sorted),
            or a list of folder names (labels follow its order).
        channels: 3 (RGB) or 1 (grey).
        cache_dir: where decoded caches live (default ``~/.cache/tunedcl/image-folder``).
        workers: decoding threads (default: the CPU count, at most 8).
    Normalisation constants are ImageNet's (their mean over channels when ``channels=1``).
    """
    if root is None:
        raise bad_argument("root", root, "the folder holding train/ and val/ (or test/) for image-folder")
    if download:
        raise bad_argument("download", download, "False for image-folder (there is nothing to download)")
    image_size = check_int("image_size", image_size, low=1)
    check_choice("channels", channels, (1, 3))
    workers = check_int("workers", workers, low=1, allow_none=True)
    if cache_dir is not None and not isinstance(cache_dir, (str, Path)):
        raise bad_argument("cache_dir", cache_dir, "a path, or None")
    try:
        import PIL  # noqa: F401
    except ImportError as err:
        raise ImportError("image-folder decodes images with Pillow: pip install 'tunedcl[images]'") from err

    train_dir = root / "train"
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        found = sorted(p.name + "/" for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"{root}: an image-folder root needs train/ and val/ (or test/), one folder per class in each; "
            f"found: {', '.join(found) or 'no subfolders'}"
        )
    class_names = _resolve_classes(classes, train_dir)
    listing = {
        split: (d, *_scan(d, class_names, split)) for split, d in (("train", train_dir), ("test", test_dir))
    }

    parent = Path(cache_dir).expanduser() if cache_dir is not None else files.cache_dir() / "image-folder"
    folder = parent / _cache_key(root, image_size, channels, class_names, listing)
    if not (folder / "index.json").is_file():
        threads = workers or min(os.cpu_count() or 1, 8)
        _build_once(folder, lambda tmp: _build(tmp, image_size, channels, class_names, listing, threads))

    train = _load_split(folder, "train", listing["train"][2])
    test = _load_split(folder, "test", listing["test"][2])
    mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,)
    std = IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,)
    return Dataset("image-folder", train, test, class_names, mean, std, source=str(root))
