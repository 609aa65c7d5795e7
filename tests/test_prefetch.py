"""The batch prefetcher (tunedcl.data.prefetch): on the CPU it runs the same logic as on a GPU (without pinned
memory and streams), so these tests check which batch is served, in which order, and that training with it
is bit-identical to training without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import method_harness as harness
from tunedcl.data.prefetch import BatchPrefetcher
from tunedcl.train.config import load_config

CPU = torch.device("cpu")


def _split(n: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randint(0, 256, (n, 1, 4, 4), generator=torch.Generator().manual_seed(n), dtype=torch.uint8)
    return images, torch.arange(n) % 5


def test_an_epoch_of_batches_in_order_each_prefetched_by_the_step_before() -> None:
    images, labels = _split()
    order = torch.randperm(23, generator=torch.Generator().manual_seed(1))
    batches = [order[i : i + 5] for i in range(0, 23, 5)]  # the last holds 3 rows
    fetcher = BatchPrefetcher(images, labels, CPU)
    for i, rows in enumerate(batches):
        following = batches[i + 1] if i + 1 < len(batches) else None
        got_images, got_labels = fetcher.fetch(rows, following)
        assert torch.equal(got_images, images[rows]) and torch.equal(got_labels, labels[rows]), i
    assert fetcher.hits == len(batches) - 1  # every batch but the first came from the prefetch
    assert fetcher._pending is None  # nothing in flight after the last batch


def test_rows_other_than_those_prefetched_are_copied_on_the_spot() -> None:
    images, labels = _split()
    fetcher = BatchPrefetcher(images, labels, CPU)
    fetcher.fetch(torch.tensor([0, 1]), torch.tensor([2, 3]))
    other = torch.tensor([3, 2])  # same rows, another order: not the prefetched batch
    got_images, got_labels = fetcher.fetch(other, torch.tensor([9]))
    assert fetcher.hits == 0 and torch.equal(got_images, images[other]) and torch.equal(got_labels, labels[other])
    rows = torch.tensor([9])
    got_images, _ = fetcher.fetch(rows)
    assert fetcher.hits == 1 and torch.equal(got_images, images[rows])


def test_the_prefetch_keeps_its_own_copy_of_the_rows_and_reads_memory_maps(tmp_path: Path) -> None:
    images, labels = _split()
    np.save(tmp_path / "images.npy", images.numpy())
    mapped = torch.from_numpy(np.load(tmp_path / "images.npy", mmap_mode="c"))
    fetcher = BatchPrefetcher(mapped, labels, CPU)
    following = torch.tensor([5, 6])
    fetcher.fetch(torch.tensor([0]), following)
    following[:] = torch.tensor([7, 8])  # the caller reusing its tensor does not change what was prefetched
    got_images, _ = fetcher.fetch(torch.tensor([5, 6]))
    assert fetcher.hits == 1 and torch.equal(got_images, images[5:7])


def test_training_with_the_prefetcher_is_bit_identical_to_training_without(tmp_path: Path) -> None:
    config = load_config("quick", harness.TINY_DIGITS)
    plain, fetched = (harness.make_trainer(config, tmp_path / name) for name in ("plain", "fetched"))
    assert plain.prefetcher is None  # the CPU path is untouched
    train = fetched.dataset.train
    fetched.prefetcher = BatchPrefetcher(train.images, train.labels, CPU)  # what a GPU run gets
    order = harness.first_epoch_order(plain)
    for index in range(5):
        plain.train_step(order, index)
        fetched.train_step(order, index)
    harness.assert_states_equal(plain.model.state_dict(), fetched.model.state_dict())
    assert fetched.prefetcher.hits == 4  # the loop asked for each next batch correctly
