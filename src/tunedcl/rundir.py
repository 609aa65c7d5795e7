"""The run directory: config.yaml, metrics.jsonl, checkpoints/, results.json, report.md; and the names of
a sweep's grid points (``key=value,...``, see :func:`parse_override`).

Training writes run directories and reports read them; both use this module (it imports neither).

Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a run
killed at any moment leaves either the old or the new version of each file, never half of one.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

CHECKPOINT = "checkpoints/last.pt"
TEMPORARY_SUFFIX = ".tmp"


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the half-written ``.<name>.*.tmp`` files a killed write left in ``run_dir`` (and checkpoints/)."""
    stale = [p for folder in (run_dir, run_dir / "checkpoints") if folder.is_dir()
             for p in folder.glob(f".*{TEMPORARY_SUFFIX}")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 less the umask): every run file gets it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a temporary file in ``path``'s folder, fsync, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    os.chmod(temporary, _file_mode())  # mkstemp's 0600 would make these files unlike metrics.jsonl
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """torch.save into checkpoints/last.pt, atomically."""
    _atomic_write(run_dir / CHECKPOINT, lambda file: torch.save(state, file))


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or at all (the message names the file and why)."""


def load_checkpoint(run_dir: Path, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
    """checkpoints/last.pt of ``run_dir`` (None if there is none), loaded with ``weights_only=True``: a file
    from disk can never run code. A file that is not a tunedcl checkpoint, truncated, or carrying anything
    but tensors and plain values is a :class:`CheckpointError`."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False: exactly what must not be done with a foreign file.
        raise CheckpointError(
            f"{path} cannot be loaded as a tunedcl checkpoint: it holds objects other than tensors and plain "
            "values, and loading those could run code (refused)"
        ) from None
    except Exception as error:  # noqa: BLE001 - zip, EOF and size errors alike: one message
        raise CheckpointError(
            f"{path} cannot be loaded as a tunedcl checkpoint: the file is damaged or not a checkpoint "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or not {"model", "step"} <= set(state):
        raise CheckpointError(f"{path} is not a tunedcl checkpoint (no model weights and step in it)")
    return state


class MetricsLog:
    """metrics.jsonl: one JSON object per line (per epoch, per evaluation)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "metrics.jsonl"

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill while being written
                    continue
        return records

    def truncate_after(self, step: int) -> None:
        """Drop records of work after ``step`` (lost by a crash; it will be redone on resume)."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def parse_override(text: str) -> tuple[str, Any, str]:
    """``section.key=value`` -> (key, value read as YAML: ``1e-3``, ``true``, ``null``, ``[0.9, 0.99]``,
    ``"quoted text"``; the raw text). A config override, and one item of a sweep grid point's name."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"override {text!r} must look like section.key=value (e.g. loss.k1=1000)")
    try:
        import yaml

        value = yaml.safe_load(raw) if raw.strip() else ""
    except Exception:  # noqa: BLE001 - not YAML (or no PyYAML): take the text as it is
        value = raw.strip()
    return key.strip(), value, raw
