"""SwAV (``loss.method=swav``): Sinkhorn-Knopp and the swapped prediction loss against slow float64 loops written
from the paper's algorithm, the frozen prototypes, the queue, exact resume and an end-to-end run.

DDP: SwAV is batch-decomposable under DDP with ``train.gather_distributed`` (the default), apart from
BatchNorm. Sinkhorn-Knopp normalises over the batch (every code depends on every sample), so per-rank codes
would differ from one process's; the loss therefore gathers every rank's scores (no gradient) and each rank
computes exactly the codes one process computes on the global batch, keeping its own rows, and the queue holds
the gathered projections (the same on every rank, in the same order as one process's). The prediction term is a
local mean, so DDP's gradient averaging gives the gradient of the global loss. What still differs from one
process: BatchNorm statistics (the encoder's and the projector's) are per rank, as for every method here.
``test_two_processes_give_one_process_codes_loss_and_gradients`` checks the loss part with 2 gloo processes.
While the prototypes are frozen they take no part in the backward pass, so DistributedDataParallel must be
built with ``find_unused_parameters=True`` (then their ``.grad`` stays None on every rank, as checked there too).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import method_harness as harness
from tunedcl import create_loss
from tunedcl import distributed as dist_utils
from tunedcl.losses.swav import SwAVLoss, sinkhorn_knopp
from tunedcl.methods import METHODS, Batch, create_method
from tunedcl.models import create_model
from tunedcl.train.assemble import epoch_permutation
from tunedcl.train.config import load_config

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = [*harness.TINY_DIGITS, "data.augment=crop-flip", "loss.method=swav", "loss.num_prototypes=20",
        "optim.optimizer=lars", "optim.lr=0.6", "optim.weight_decay=1.0e-6"]


# --- slow references, written from the paper (plain loops, float64) -------------------------------------------
def sinkhorn_reference(scores: torch.Tensor, iterations: int, epsilon: float) -> torch.Tensor:
    """The paper's Sinkhorn-Knopp (its Algorithm 1 / official code), element by element:
    Q = exp(S^T / eps) / total;  repeat: rows (prototypes) to 1/K;  columns (samples) to 1/N;  codes = N Q^T."""
    n, k = scores.shape
    q = [[math.exp(float(scores[b, j]) / epsilon) for b in range(n)] for j in range(k)]  # K x N
    total = sum(sum(row) for row in q)
    q = [[value / total for value in row] for row in q]
    for _ in range(iterations):
        for j in range(k):
            row_sum = sum(q[j])
            q[j] = [value / row_sum / k for value in q[j]]
        for b in range(n):
            column_sum = sum(q[j][b] for j in range(k))
            for j in range(k):
                q[j][b] = q[j][b] / column_sum / n
    return torch.tensor([[q[j][b] * n for j in range(k)] for b in range(n)], dtype=torch.float64)


def swav_reference(scores: torch.Tensor, queued: torch.Tensor | None, *, temperature: float, iterations: int,
                   epsilon: float) -> torch.Tensor:
    """L = 1/(B V (V-1)) sum_b sum_{v != w} -sum_k q_bk^(v) log softmax(s_b^(w)/tau)_k, q from the slow Sinkhorn
    over the batch's (and the queue's) rows of view v."""
    b_size, views, k = scores.shape
    codes = []
    for v in range(views):
        rows = scores[:, v].detach() if queued is None else torch.cat([scores[:, v].detach(), queued[:, v]])
        codes.append(sinkhorn_reference(rows, iterations, epsilon)[:b_size])
    total = scores.new_zeros(())
    for b in range(b_size):
        for v in range(views):
            for w in range(views):
                if w == v:
                    continue
                logits = [scores[b, w, j] / temperature for j in range(k)]
                log_norm = torch.log(sum(torch.exp(logit) for logit in logits))
                total = total - sum(codes[v][b, j] * (logits[j] - log_norm) for j in range(k))
    return total / (b_size * views * (views - 1))


def cosine_scores(*leading: int, k: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    """Scores as SwAV makes them: unit projections against unit prototypes (cosines), float64."""
    generator = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(*leading, dim, generator=generator, dtype=torch.float64), dim=-1)
    prototypes = F.normalize(torch.randn(k, dim, generator=generator, dtype=torch.float64), dim=-1)
    return z @ prototypes.T


# --- Sinkhorn-Knopp --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("iterations", [1, 3, 7])
def test_sinkhorn_matches_the_papers_loop(iterations: int) -> None:
    scores = cosine_scores(9, k=4, seed=1)
    got = sinkhorn_knopp(scores, iterations=iterations, epsilon=0.05)
    expected = sinkhorn_reference(scores, iterations, 0.05)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # float32 scores: float32 codes, close to the float64 ones
    torch.testing.assert_close(sinkhorn_knopp(scores.float(), iterations, 0.05).double(), expected, rtol=1e-4,
                               atol=1e-5)


def test_sinkhorn_codes_sum_to_one_per_sample_and_to_n_over_k_per_prototype() -> None:
    scores = cosine_scores(12, k=4, seed=2)
    three = sinkhorn_knopp(scores, iterations=3, epsilon=0.05)
    torch.testing.assert_close(three.sum(dim=1), torch.ones(12, dtype=torch.float64), rtol=0, atol=1e-12)
    assert (three >= 0).all()
    converged = sinkhorn_knopp(scores, iterations=500, epsilon=0.05)
    torch.testing.assert_close(converged.sum(dim=1), torch.ones(12, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(converged.sum(dim=0), torch.full((4,), 12 / 4, dtype=torch.float64), rtol=0,
                               atol=1e-8)
    # any leading dimensions are independent problems
    stacked = sinkhorn_knopp(torch.stack([scores, scores.flip(0)]), iterations=3, epsilon=0.05)
    torch.testing.assert_close(stacked[0], three, rtol=0, atol=0)
    torch.testing.assert_close(stacked[1], three.flip(0), rtol=1e-12, atol=1e-14)


def test_sinkhorn_and_the_loss_are_finite_where_the_exp_form_overflows() -> None:
    scores = torch.tensor([[[0.0, 300.0, -400.0], [2.0, -1.0, 0.0]], [[-500.0, 0.0, 1.0], [9.0, 9.0, -9.0]],
                           [[1.0, 1.0, 1.0], [-3.0, 800.0, 0.0]]], requires_grad=True)
    codes = sinkhorn_knopp(scores.detach().transpose(0, 1), iterations=3, epsilon=0.05)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(dim=-1), torch.ones(2, 3))
    loss = SwAVLoss()(scores)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()


# --- the loss ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("queue_rows", [0, 5])
def test_swav_loss_matches_the_slow_reference(views: int, queue_rows: int) -> None:
    scores = cosine_scores(6, views, k=5, seed=3).requires_grad_(True)
    queued = cosine_scores(queue_rows, views, k=5, seed=4) if queue_rows else None
    arguments = dict(temperature=0.2, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    got = create_loss("swav", **arguments)(scores, queued)
    expected = swav_reference(scores, queued, temperature=0.2, iterations=3, epsilon=0.05)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    (ours,) = torch.autograd.grad(got, scores)
    (theirs,) = torch.autograd.grad(expected, scores)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_the_codes_are_targets_without_gradient() -> None:
    scores = cosine_scores(5, 2, k=3, seed=5).requires_grad_(True)
    loss = SwAVLoss(temperature=0.1)
    codes = loss.codes(scores)
    assert not codes.requires_grad
    # the gradient is that of the cross-entropy with the codes held fixed: (softmax - q) / (tau B V (V-1)) summed
    loss(scores).backward()
    softmax = torch.softmax(scores.detach() / 0.1, dim=-1)
    expected = (softmax - codes.flip(1)) / (0.1 * 5 * 2)  # V = 2: view w predicts the other view's codes
    torch.testing.assert_close(scores.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: SwAVLoss(temperature=0), r"^SwAVLoss: temperature must be a finite number > 0; got 0 \(int\)$"),
        (lambda: SwAVLoss(sinkhorn_iterations=0),
         r"^SwAVLoss: sinkhorn_iterations must be an integer >= 1; got 0 \(int\)$"),
        (lambda: SwAVLoss(sinkhorn_epsilon=-0.1),
         r"^SwAVLoss: sinkhorn_epsilon must be a finite number > 0; got -0.1 \(float\)$"),
        (lambda: SwAVLoss(gather_distributed=1), r"^SwAVLoss: gather_distributed must be True or False; got 1 \(int\)$"),
        (lambda: SwAVLoss()(torch.zeros(4, 1, 3)),
         r"^SwAVLoss: scores must be a floating-point tensor \[B, V, K\] with B >= 1 and V >= 2; "
         r"got a torch.float32 tensor of shape \(4, 1, 3\)$"),
        (lambda: SwAVLoss()(torch.zeros(4, 2, 3), torch.zeros(5, 2, 4)),
         r"^SwAVLoss: queued_scores must be None or a floating-point tensor \[Q, 2, 3\] \(as the scores\); "
         r"got a torch.float32 tensor of shape \(5, 2, 4\)$"),
        (lambda: sinkhorn_knopp(torch.zeros(3, 2), iterations=0),
         r"^sinkhorn_knopp: iterations must be an integer >= 1; got 0 \(int\)$"),
        (lambda: sinkhorn_knopp(torch.zeros(3, 2), epsilon=float("inf")),
         r"^sinkhorn_knopp: epsilon must be a finite number > 0; got inf \(float\)$"),
        (lambda: create_method("swav", num_prototypes=0), r"^num_prototypes must be an integer >= 1; got 0 \(int\)$"),
        (lambda: create_method("swav", queue_size=-1),
         r"^queue_size must be an integer >= 0 \(0: no queue\); got -1 \(int\)$"),
        (lambda: create_method("swav", epoch_queue_starts=1.5),
         r"^epoch_queue_starts must be an integer >= 0; got 1.5 \(float\)$"),
        (lambda: create_method("swav", freeze_prototypes_epochs=-1),
         r"^freeze_prototypes_epochs must be an integer >= 0; got -1 \(int\)$"),
        (lambda: create_method("swav", temperature=-1.0),
         r"^SwAVLoss: temperature must be a finite number > 0; got -1.0 \(float\)$"),
    ],
)
def test_arguments_are_checked_with_one_line_messages(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# --- the method's parts: prototypes, queue ------------------------------------------------------------------
def _built_method(**hyperparameters):
    method = create_method("swav", **hyperparameters)
    torch.manual_seed(0)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    method.build(encoder, 10, projection_dim=8, projection_hidden=16, gather_distributed=False)
    return method


def _batch(method, views: torch.Tensor, epoch: int) -> Batch:
    return Batch(views, torch.zeros(views.shape[0], dtype=torch.long), method.model, torch.contiguous_format,
                 lambda what, tensor: None, step=0, epoch=epoch)


def test_the_model_holds_unit_prototypes_and_the_solo_learn_projector() -> None:
    method = _built_method(num_prototypes=7)
    model = method.model
    assert METHODS.get("swav") is type(method) and not method.uses_labels and method.min_views == 2
    assert model.encoder is not None and model.prototypes.bias is None
    assert model.prototypes.weight.shape == (7, 8)
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(7), rtol=0, atol=1e-6)
    layers = [type(layer).__name__ for layer in model.projector.net]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    out = model(torch.randn(3, 2, 1, 28, 28))
    assert out.scores.shape == (3, 2, 7) and out.projections.shape == (3, 2, 8)
    torch.testing.assert_close(out.projections.norm(dim=-1), torch.ones(3, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.scores, out.projections @ model.prototypes.weight.T, rtol=1e-6, atol=1e-6)


def test_the_queue_is_used_from_its_start_epoch_and_holds_the_last_projections_fifo() -> None:
    method = _built_method(num_prototypes=5, queue_size=10, epoch_queue_starts=2, temperature=0.1)
    generator = torch.Generator().manual_seed(6)
    seen = []
    for epoch in (0, 1, 2, 3):
        views = torch.randn(4, 2, 1, 28, 28, generator=generator)
        queued = method.queued_projections().clone() if len(method.queue) else None
        got = method.training_step(_batch(method, views, epoch)).loss
        with torch.no_grad():  # train-mode BatchNorm: the same forward again gives the same outputs
            out = method.model(views)
        weight = method.model.prototypes.weight
        if epoch < 2:
            expected = method.loss(out.scores)
        else:
            assert queued is not None and queued.shape == (min(10, 4 * epoch), 2, 8)
            expected = method.loss(out.scores, queued @ weight.T)
            assert not torch.equal(expected, method.loss(out.scores))  # the queue changed the codes
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        seen.append(out.projections)
        # FIFO: the last 10 projections seen, oldest first
        history = torch.cat(seen)[-10:]
        torch.testing.assert_close(method.queued_projections(), history, rtol=0, atol=0)
    assert len(method.queue) == 10


def test_prototypes_stay_frozen_during_the_freeze_epochs_then_train_and_stay_unit(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.freeze_prototypes_epochs=1", "loss.queue_size=0"])
    trainer = harness.make_trainer(config, tmp_path)
    prototypes = trainer.model.prototypes.weight
    initial = prototypes.detach().clone()
    encoder_before = [p.detach().clone() for p in trainer.model.encoder.parameters()]
    order = epoch_permutation(config.train.seed, 0, len(trainer.dataset.train))
    for index in range(trainer.steps_per_epoch):
        trainer.train_step(order, index)
        assert prototypes.grad is None
        assert torch.equal(prototypes.detach(), initial), f"step {index + 1}"
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, trainer.model.encoder.parameters(), strict=True))
    trainer.train_step(epoch_permutation(config.train.seed, 1, len(trainer.dataset.train)), 0)  # epoch 1
    assert prototypes.grad is not None
    assert not torch.equal(prototypes.detach(), initial)
    torch.testing.assert_close(prototypes.detach().norm(dim=1), torch.ones(20), rtol=0, atol=1e-6)


# --- resume and an end-to-end run --------------------------------------------------------------------------------
def test_swav_resumes_exactly_with_its_prototypes_and_queue(tmp_path: Path) -> None:
    # 23 steps per epoch; the queue (16 steps of 64) is used from epoch 1 and the cut at step 20 is in epoch 0,
    # so a queue lost at the cut would change the codes of epoch 1; the prototypes thaw at epoch 1.
    config = load_config("quick", [*TINY, "loss.queue_size=1024", "loss.epoch_queue_starts=1",
                                   "loss.freeze_prototypes_epochs=1"])
    runs = harness.train_straight_and_resumed(config, tmp_path, cut_after=20,
                                              inspect_restored=lambda resumed: len(resumed.method.queue))
    assert runs.stopped.steps_per_epoch == 23
    assert runs.restored == 1024  # resumed at step 20 with a full queue
    assert math.isfinite(runs.outcome.final_loss)
    runs.assert_same_model()
    assert "prototypes.weight" in runs.finished.model.state_dict()
    harness.assert_states_equal(runs.outcome.method.state_dict()["queue"], runs.finished.method.state_dict()["queue"])


def test_an_end_to_end_run_gives_finite_results(tmp_path: Path) -> None:
    overrides = [*TINY, "loss.queue_size=256", "loss.epoch_queue_starts=0", "loss.freeze_prototypes_epochs=0"]
    results, _ = harness.run_end_to_end(overrides, tmp_path / "run")
    assert math.isfinite(results["linear_top1"]) and math.isfinite(results["knn_top1"])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)


# --- DDP: 2 gloo processes against 1 -----------------------------------------------------------------------------
WORLD = 2


def _check_codes_loss_and_gradients(rank: int) -> None:
    scores = cosine_scores(8, 2, k=5, seed=7)
    queued = cosine_scores(6, 2, k=5, seed=8)  # the same queue on every rank (the method enqueues gathered rows)
    local = slice(rank * 4, (rank + 1) * 4)
    for queue in (None, queued):
        full = scores.clone().requires_grad_(True)
        single = SwAVLoss(temperature=0.1)
        expected = single(full, queue)
        expected.backward()
        mine = scores[local].clone().requires_grad_(True)
        gathered = SwAVLoss(temperature=0.1, gather_distributed=True)
        torch.testing.assert_close(gathered.codes(mine, queue), single.codes(scores, queue)[local], rtol=0, atol=0)
        value = gathered(mine, queue)
        value.backward()
        # the local mean, averaged over ranks, is the global loss; raw gradients are W times this rank's share
        torch.testing.assert_close(dist_utils.all_reduce_sum(value.detach()) / WORLD, expected.detach(), rtol=0,
                                   atol=1e-12)
        torch.testing.assert_close(mine.grad / WORLD, full.grad[local], rtol=0, atol=1e-12)


def _check_frozen_prototypes_under_ddp(rank: int) -> None:
    method = _built_method(num_prototypes=5, queue_size=0, freeze_prototypes_epochs=1)
    ddp = DistributedDataParallel(method.model, find_unused_parameters=True)
    views = torch.randn(4, 2, 1, 28, 28, generator=torch.Generator().manual_seed(9 + rank))
    for epoch in (0, 0, 1):  # two frozen steps, then a thawed one
        ddp.zero_grad(set_to_none=True)
        batch = Batch(views, torch.zeros(4, dtype=torch.long), ddp, torch.contiguous_format,
                      lambda what, tensor: None, epoch=epoch)
        method.training_step(batch).loss.backward()
        assert (method.model.prototypes.weight.grad is None) == (epoch == 0)
        assert method.model.projector.net[0].weight.grad is not None
    del ddp
    # without find_unused_parameters DDP would fail at the next step: the method says why at the first frozen one
    plain = DistributedDataParallel(method.model)
    batch = Batch(views, torch.zeros(4, dtype=torch.long), plain, torch.contiguous_format, lambda what, tensor: None)
    with pytest.raises(ValueError, match=r"^swav: freeze_prototypes_epochs=1 needs DistributedDataParallel"):
        method.training_step(batch)
    del plain
    dist.barrier()


def _worker(rank: int, init_file: str, errors: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        _check_codes_loss_and_gradients(rank)
        _check_frozen_prototypes_under_ddp(rank)
        dist.barrier()
    except BaseException:
        with open(os.path.join(errors, f"rank{rank}.txt"), "w") as handle:
            handle.write(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo's native threads can abort in the interpreter's teardown (see tests/test_distributed.py)


def test_two_processes_give_one_process_codes_loss_and_gradients() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        try:
            mp.spawn(_worker, args=(init_file, tmp), nprocs=WORLD, join=True)
        except Exception as error:  # show the worker's own traceback, not just the spawn wrapper's
            reports = [open(os.path.join(tmp, f)).read() for f in sorted(os.listdir(tmp)) if f.startswith("rank")]
            pytest.fail("a worker failed:\n" + "\n".join(reports or [str(error)]))
