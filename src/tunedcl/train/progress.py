"""A progress bar per epoch (loss, views/s) on a terminal; plain epoch lines in logs and CI."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO


class Progress:
    """Writes a one-line bar that redraws at most 4 times a second, only when ``stream`` is a TTY
    and not ``quiet``; :meth:`line` always prints (the epoch summaries) unless ``silent``."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, silent: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.bar = not quiet and not silent and self.stream.isatty()
        self.silent = silent
        self._last_draw = 0.0

    def update(self, epoch: int, epochs: int, done: int, total: int, loss: float, views_per_s: float) -> None:
        if not self.bar:
            return
        now = time.monotonic()
        if now - self._last_draw < 0.25 and done < total:
            return
        self._last_draw = now
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\repoch {epoch + 1}/{epochs} [{bar}] {done}/{total} loss {loss:.4f} {views_per_s:,.0f} views/s "
        )
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.silent:
            return
        if self.bar:
            self.stream.write("\r" + " " * 100 + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def tensorboard_writer(run_dir: Path) -> Any:
    """A SummaryWriter in run_dir/tensorboard when tensorboard is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
