"""Where dataset files are looked for, how they are read, checksummed, downloaded and unpickled.

Shared by every file-based source, so that all of them search the same places, report a missing
dataset the same way, and never write a half-downloaded file where a later run would find it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ENV_VAR = "TUNEDCL_DATA"
_GZIP_MAGIC = b"\x1f\x8b"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tunedcl``, or ``~/.cache/tunedcl`` when that variable is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tunedcl"


def search_bases(root: Path | None) -> list[tuple[Path, str]]:
    """The folders every source looks in, in order, each with why it is looked in."""
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((root, "root argument"))
    if os.environ.get(ENV_VAR):
        bases.append((Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"))
    bases.append((cache_dir(), "cache"))
    return bases


def describe(folder: Path, why: str) -> str:
    """One line of a not-found message: the folder, why it was searched, whether it exists."""
    return f"{folder} ({why}{'' if folder.is_dir() else ', does not exist'})"


def not_found(dataset: str, looked_in: Sequence[str], how_to_get: Sequence[str]) -> FileNotFoundError:
    """The error for a dataset found nowhere: every place looked in and every way to get it."""
    places = "\n".join(f"  - {p}" for p in looked_in)
    ways = "\n".join(f"  - {w}" for w in how_to_get)
    return FileNotFoundError(f"dataset {dataset!r} not found. Looked in:\n{places}\nTo get it:\n{ways}")


def read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip (detected by magic bytes, not by extension)."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file's bytes, read in chunks (archives can be larger than we want in memory)."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digest(where: str, algorithm: str, expected: str, got: str) -> None:
    """Raise naming the file when a checksum differs from the published one."""
    if expected != got:
        raise ValueError(
            f"{where}: {algorithm.upper()} checksum mismatch: expected {expected}, got {got} "
            "(corrupt, truncated or a different file; delete it and fetch it again, or pass verify=False)"
        )


def download_dir(root: Path | None, subfolder: str) -> Path:
    """``<base>/<subfolder>`` in the first of `search_bases` that can be created and written to."""
    tried = []
    for base, why in search_bases(root):
        target = base / subfolder
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            tried.append(f"{target} ({why}): {err}")
            continue
        if os.access(target, os.W_OK):
            return target
        tried.append(f"{target} ({why}): not writable")
    raise OSError("no writable place to download to:\n" + "\n".join(f"  - {t}" for t in tried))


def fetch_url(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0) -> None:
    """Stream `url` into `dest` atomically: a temporary file beside it, checked, then renamed.

    A run killed mid-download leaves only a ``.part`` file, never a truncated `dest`. Any URL scheme
    urllib knows works, ``file://`` included (which is how the tests exercise this without a network).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5(usedforsecurity=False)  # an integrity check; FIPS builds refuse md5 otherwise
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if md5 is not None:
            check_digest(url, "md5", md5, h.hexdigest())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_first(urls: Sequence[str], dest: Path, md5: str | None = None) -> None:
    """Try each mirror in turn; raise listing every URL and its error if none works."""
    errors = []
    for url in urls:
        try:
            fetch_url(url, dest, md5)
            return
        except (OSError, ValueError) as err:  # URLError is an OSError; a checksum mismatch a ValueError
            errors.append(f"  - {url}: {err}")
    raise OSError(f"could not download {dest.name}:\n" + "\n".join(errors))


def _allowed_globals() -> dict[tuple[str, str], Any]:
    # Found through numpy's own pickling, so the same objects are allowed whichever numpy is installed;
    # both module spellings, because numpy 2 renamed numpy.core to numpy._core and old pickles
    # (CIFAR's, written by Python 2) name the old one.
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other class or function.

    A pickle can name any importable callable and have it called; a downloaded dataset file must not
    be able to run code, so only numpy's array reconstruction is let through.
    """

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: dataset pickles may only hold numpy arrays, "
                "lists, dicts, numbers and strings"
            ) from None


def safe_unpickle(data: bytes, where: str) -> Any:
    """Unpickle `data` (``encoding="bytes"``, for Python 2 pickles) allowing only numpy arrays.

    Any failure, a refused class included, is a ValueError naming `where`.
    """
    try:
        return _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # a corrupt pickle can raise almost anything; name the file whatever it was
        raise ValueError(f"{where}: not a valid dataset pickle ({type(err).__name__}: {err})") from err
