"""Batches of a host-held split copied to a GPU one step ahead, from pinned memory, on a side stream.

The training loop indexes a whole split held on the host (a uint8 tensor, or a memory-mapped image-folder
cache). Copied from pageable memory, ``.to("cuda", non_blocking=True)`` is a synchronous copy: the host
waits for it, and the GPU idles while the host gathers the next batch. :class:`BatchPrefetcher` gathers
the next batch straight into pinned memory while the GPU still runs the current step and starts its copy
on a side stream; the step that uses it only makes its stream wait for that copy.

On the CPU (and any device that is not CUDA) it copies plainly, with the same results: the logic (which
batch is ready, what happens when the rows asked for are not those prefetched) is the same, so the CPU
tests cover it.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchPrefetcher:
    """Hands out ``(images[rows], labels[rows])`` on ``device``, having copied the batch asked for next in advance.

    Call :meth:`fetch` with this step's rows and, when known, the next step's: the next batch is gathered and
    its copy started before this one is returned. A batch is taken from the prefetched one only when its rows
    are exactly those prefetched (compared on the host); otherwise (the first step, a resume, a new epoch) it is
    copied on the spot. Either way the result equals ``(images[rows].to(device), labels[rows].to(device))``.

    Args:
        images: ``[n, ...]`` tensor on the host (any dtype; a memory-mapped one is read only for the rows
            asked for).
        labels: ``[n]`` tensor on the host.
        device: where the batches go; only CUDA gets pinned memory and a side stream.

    Example:
        >>> import torch
        >>> images, labels = torch.arange(12).view(6, 2), torch.arange(6)
        >>> fetcher = BatchPrefetcher(images, labels, torch.device("cpu"))
        >>> fetcher.fetch(torch.tensor([4, 0]), next_rows=torch.tensor([1, 2]))[1]
        tensor([4, 0])
        >>> fetcher.fetch(torch.tensor([1, 2]))[1], fetcher.hits
        (tensor([1, 2]), 1)
    """

    def __init__(self, images: Tensor, labels: Tensor, device: torch.device) -> None:
        self.images, self.labels, self.device = images, labels, device
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self._pending: tuple[Tensor, Tensor, Tensor] | None = None  # rows, their images and labels (in flight)
        self.hits = 0  # batches served from a prefetch (for tests and benchmarks)

    def fetch(self, rows: Tensor, next_rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """This step's batch on the device; starts copying ``next_rows``' batch if given."""
        batch = self._take(rows)
        if batch is None:
            batch = self._copy(rows, side_stream=False)
        self._pending = None
        if next_rows is not None:
            self._pending = (next_rows.clone(), *self._copy(next_rows, side_stream=True))
        return batch

    def _take(self, rows: Tensor) -> tuple[Tensor, Tensor] | None:
        if self._pending is None or not torch.equal(self._pending[0], rows):
            return None
        _, images, labels = self._pending
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)  # the copy is done before the step reads the batch
            # Memory made on the side stream and used on this one: keep the caching allocator from reusing
            # it before this stream's work on it is done.
            images.record_stream(current)
            labels.record_stream(current)
        self.hits += 1
        return images, labels

    def _copy(self, rows: Tensor, side_stream: bool) -> tuple[Tensor, Tensor]:
        rows = rows.to(self.images.device)
        if not self.cuda:
            return self.images[rows].to(self.device), self.labels[rows].to(self.device)
        # Gathered straight into pinned memory (one host copy, not a gather then a pin), so the copy to the
        # GPU can run asynchronously. The pinned allocator keeps a block until the copies from it are done.
        images = torch.empty((rows.numel(), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=True)
        labels = torch.empty((rows.numel(), *self.labels.shape[1:]), dtype=self.labels.dtype, pin_memory=True)
        torch.index_select(self.images, 0, rows, out=images)
        torch.index_select(self.labels, 0, rows, out=labels)
        stream = self.stream if side_stream else torch.cuda.current_stream(self.device)
        with torch.cuda.stream(stream):
            return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


__all__ = ["BatchPrefetcher"]
