"""gather_distributed across 2 real processes (gloo, CPU) against 1 process holding the whole batch:
equal loss, equal gradients, equal parameters and queues after 3 SGD steps under DDP."""

from __future__ import annotations

import os
import sys
import tempfile
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tunedcl import distributed as dist_utils
from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss
from tunedcl.losses.queue import MemoryQueue

WORLD = 2
B, V, D = 8, 2, 6  # global batch: 8 samples x 2 views

# Labels chosen so that the two halves hold different numbers of anchors with a positive:
# rank 0 gets samples 0-3 (labels 0 0 1 2), rank 1 gets 4-7 (labels 3 4 5 1). With V = 1 only label
# pairs count, and 2 (rank 0) and 3, 4, 5 (rank 1) are singletons.
LABELS = torch.tensor([0, 0, 1, 2, 3, 4, 5, 1])

CASES = {
    "tcl-labels": lambda f, lab, **kw: tcl_loss(f, lab, k1=5000.0, k2=2.0, **kw),
    "tcl-instance": lambda f, lab, **kw: tcl_loss(f, None, k1=50.0, **kw),
    "supcon-in": lambda f, lab, **kw: supcon_loss(f, lab, variant="in", **kw),
    "ntxent": lambda f, lab, **kw: ntxent_loss(f, None, **kw),
    "tcl-one-view": lambda f, lab, **kw: tcl_loss(f[:, :1], lab, **kw),
}


def _check_loss_and_gradients(rank: int) -> None:
    features = torch.randn(B, V, D, generator=torch.Generator().manual_seed(50), dtype=torch.float64)
    local = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
    for name, fn in CASES.items():
        for chunk_size in (0, None, 3):
            full = features.clone().requires_grad_(True)
            expected = fn(full, LABELS, chunk_size=chunk_size)
            expected.backward()
            mine = features[local].clone().requires_grad_(True)
            value = fn(mine, LABELS[local], chunk_size=chunk_size, gather_distributed=True)
            value.backward()
            where = f"{name}, chunk_size={chunk_size}, rank {rank}"
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-12, msg=where)
            # Raw gradients are W times this rank's share (DDP divides by W).
            torch.testing.assert_close(mine.grad / WORLD, full.grad[local], rtol=0, atol=1e-12, msg=where)


def _check_ddp_training_with_queue(rank: int) -> None:
    generator = torch.Generator().manual_seed(51)
    inputs = torch.randn(3, B, V, 10, generator=generator, dtype=torch.float64)  # 3 steps of data
    torch.manual_seed(52)
    reference_model = torch.nn.Linear(10, D).double()
    model = torch.nn.Linear(10, D).double()
    model.load_state_dict(reference_model.state_dict())
    ddp = DistributedDataParallel(model)
    reference_queue, queue = MemoryQueue(12), MemoryQueue(12)
    reference_opt = torch.optim.SGD(reference_model.parameters(), lr=0.5)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    local = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
    for step in range(3):
        reference_opt.zero_grad()
        tcl_loss(reference_model(inputs[step]), LABELS, queue=reference_queue).backward()
        reference_opt.step()
        opt.zero_grad()
        loss = tcl_loss(ddp(inputs[step, local]), LABELS[local], queue=queue, gather_distributed=True)
        loss.backward()
        opt.step()
    for (name, got), expected in zip(model.state_dict().items(), reference_model.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6, msg=f"{name} on rank {rank}")
    torch.testing.assert_close(queue.features, reference_queue.features, rtol=0, atol=1e-6)
    assert torch.equal(queue.ids, reference_queue.ids)
    del ddp  # release DDP's reducer (and its communication hooks) while both ranks are still here
    dist.barrier()


def _check_unequal_sizes_fail_clearly(rank: int) -> None:
    rows = 3 if rank == 0 else 2
    features = torch.randn(rows, V, D, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"same local batch size on every rank; got \[6, 4\] rows"):
        tcl_loss(features, gather_distributed=True)


def _check_gather_fills_one_buffer(rank: int) -> None:
    """gather concatenates in rank order through the one-buffer collective: gloo (torch 2.13) supports it,
    so the list form (all_gather + cat) is never called."""
    list_form = dist.all_gather

    def refuse(*args, **kwargs):
        raise AssertionError("the list all_gather was used")

    dist.all_gather = refuse
    try:
        rows = torch.arange(6, dtype=torch.float64).view(3, 2) + 100 * rank
        gathered = dist_utils.gather(rows)
        expected = torch.cat([torch.arange(6, dtype=torch.float64).view(3, 2) + 100 * r for r in range(WORLD)])
        assert torch.equal(gathered, expected), gathered
        dist_utils.check_equal_sizes(3, "gather_distributed")
    finally:
        dist.all_gather = list_form
    assert dist_utils._GATHER_INTO_TENSOR is not None


def _worker(rank: int, init_file: str, errors: str) -> None:
    import faulthandler

    faulthandler.enable()  # a native crash in a worker prints its Python stack
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        assert dist_utils.rank() == rank and dist_utils.world_size() == WORLD
        _check_gather_fills_one_buffer(rank)
        _check_loss_and_gradients(rank)
        _check_ddp_training_with_queue(rank)
        _check_unequal_sizes_fail_clearly(rank)
        dist.barrier()  # both ranks done before either tears the gloo context down
    except BaseException:
        with open(os.path.join(errors, f"rank{rank}.txt"), "w") as handle:
            handle.write(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()
    # Every check passed. Leave without the interpreter's teardown: with torch 2.13 gloo's native threads
    # can abort there ("terminate called without an active exception", about 1 run in 15), after all
    # the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_two_processes_match_one_process() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        try:
            mp.spawn(_worker, args=(init_file, tmp), nprocs=WORLD, join=True)
        except Exception as error:  # show the worker's own traceback, not just the spawn wrapper's
            reports = [open(os.path.join(tmp, f)).read() for f in sorted(os.listdir(tmp)) if f.startswith("rank")]
            pytest.fail("a worker failed:\n" + "\n".join(reports or [str(error)]))
