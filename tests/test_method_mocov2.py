"""MoCo v2+ (``mocov2``) and TCL with a momentum encoder and a queue (``tcl-moco``): the loss against its
equation, the EMA target and its cosine momentum schedule, the per-view FIFO queues, exact resume and a whole
tiny run.

The loss, written from MoCo's InfoNCE (He et al. 2020, eq. 1) with TCL's k1 / k2 (tcl.md §1 with one
positive): for query q, its key k and the queue's rows n, all L2-normalised,

    L = log D - s_qk / tau,    D = e^{s_qk / tau} + k1 e^{-s_qk} + k2 sum_n e^{s_qn / tau},    loss = mean over queries

DDP: neither method is batch-decomposable. The loss is (each query's term needs only its own key and the
queue, so the ranks' local means average to the whole batch's mean, and the keys are all-gathered in rank
order before they are enqueued, so every rank holds the queues one process would), but every BatchNorm of
the online and the momentum network normalises with the statistics of each process's local batch (no
shuffle-BN, no SyncBN), so 2-process gloo DDP does not equal one process of the whole batch. What holds
instead is tested here on one process: the loss of a batch is the mean of its halves' losses against the
same queue, and the queues hold exactly the last keys in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import method_harness as harness
from tunedcl import create_loss
from tunedcl.losses import LOSSES, moco
from tunedcl.losses.inputs import unit_vectors
from tunedcl.losses.moco import MoCoInfoNCELoss
from tunedcl.methods import METHODS, Batch, create_method
from tunedcl.methods.mocov2 import MoCoV2
from tunedcl.methods.tcl_moco import TCLMoCo
from tunedcl.models import create_model
from tunedcl.train.assemble import epoch_permutation
from tunedcl.train.config import ConfigError, load_config

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = [*harness.TINY_DIGITS, "data.augment=crop-flip", "model.projection_dim=32", "model.projection_hidden=64",
        "loss.queue_size=200"]
METHOD_NAMES = ("mocov2", "tcl-moco")


# --- the loss --------------------------------------------------------------------------------------------------
def reference(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, *, temperature: float, k1: float,
              k2: float, k1_uses_temperature: bool = False) -> torch.Tensor:
    """The equation in plain float64 loops (no log-sum-exp: the inputs keep every exponent small)."""
    q, k, n = queries.double(), keys.double(), queue.double()

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(sum(value * value for value in x))

    losses = []
    for i in range(q.shape[0]):
        qi = unit(q[i])
        s_p = sum(a * b for a, b in zip(qi, unit(k[i]), strict=True))
        denominator = torch.exp(s_p / temperature)
        denominator = denominator + k1 * torch.exp(-s_p / temperature if k1_uses_temperature else -s_p)
        for row in n:
            s_n = sum(a * b for a, b in zip(qi, unit(row), strict=True))
            denominator = denominator + k2 * torch.exp(s_n / temperature)
        losses.append(torch.log(denominator) - s_p / temperature)
    return torch.stack(losses).mean()


def _inputs(seed: int, batch: int = 5, dim: int = 6, negatives: int = 7) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(rows, dim, generator=g, dtype=torch.float64) * 3
                 for rows in (batch, batch, negatives))


@pytest.mark.parametrize(
    "arguments",
    [
        dict(temperature=0.2, k1=0.0, k2=1.0),  # MoCo
        dict(temperature=0.2, k1=5000.0, k2=1.0),  # tcl-moco's defaults
        dict(temperature=0.5, k1=50.0, k2=3.0),
        dict(temperature=0.3, k1=2.0, k2=0.5, k1_uses_temperature=True),
    ],
)
@pytest.mark.parametrize("negatives", [7, 0])  # a queue of 7 rows, and an empty queue (the first step)
def test_the_loss_matches_its_equation_values_and_gradients(arguments: dict, negatives: int) -> None:
    queries, keys, queue = (x.requires_grad_(True) for x in _inputs(1, negatives=negatives))
    got = MoCoInfoNCELoss(**arguments)(queries, keys, queue)
    expected = reference(queries, keys, queue, **arguments)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    ours = torch.autograd.grad(got, (queries, keys, queue), allow_unused=True)
    theirs = torch.autograd.grad(expected, (queries, keys, queue), allow_unused=True)
    for a, b in zip(ours, theirs, strict=True):
        if b is None:  # an empty queue
            assert a is None or a.numel() == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if negatives:
        assert torch.autograd.gradcheck(lambda *x: MoCoInfoNCELoss(**arguments)(*x), (queries, keys, queue))


def test_k1_0_k2_1_is_moco_infonce_as_a_cross_entropy() -> None:
    queries, keys, queue = (x.requires_grad_(True) for x in _inputs(2, batch=6, dim=16, negatives=32))
    q, k, n = (F.normalize(x, dim=1) for x in (queries, keys, queue))
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ n.T], dim=1) / 0.2
    expected = F.cross_entropy(logits, torch.zeros(6, dtype=torch.long))
    got = MoCoInfoNCELoss(temperature=0.2, k1=0.0, k2=1.0)(queries, keys, queue)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(got, (queries, keys)), torch.autograd.grad(expected, (queries, keys)),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert create_loss("moco-infonce").k1 == 0.0 and LOSSES.get("moco-infonce") is MoCoInfoNCELoss


def test_the_loss_is_finite_for_every_finite_input_and_computes_in_float32() -> None:
    loss = MoCoInfoNCELoss(temperature=0.01, k1=5000.0, k2=1.0)
    huge = torch.full((3, 4), 1e38, requires_grad=True)
    zeros = torch.zeros(3, 4, requires_grad=True)
    for queries, keys, queue in [(huge, -huge, huge), (zeros, zeros, torch.zeros(5, 4)), (huge, zeros, -huge)]:
        value = loss(queries, keys, queue)
        (grad,) = torch.autograd.grad(value, queries)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    half = loss(*(x.to(torch.bfloat16) for x in _inputs(3)))
    assert half.dtype == torch.float32 and torch.isfinite(half)
    queries, keys, queue = (x.float() for x in _inputs(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast would run the matmul in bf16
        inside = loss(queries, keys, queue)
    torch.testing.assert_close(inside, loss(queries, keys, queue), rtol=0, atol=0)


def test_a_batch_loss_is_the_mean_of_its_halves_against_the_same_queue() -> None:
    """The loss is per query: DDP's average of the ranks' local losses is the whole batch's loss."""
    queries, keys, queue = _inputs(4, batch=8)
    loss = MoCoInfoNCELoss(k1=5000.0)
    halves = (loss(queries[:4], keys[:4], queue) + loss(queries[4:], keys[4:], queue)) / 2
    torch.testing.assert_close(halves, loss(queries, keys, queue), rtol=1e-12, atol=1e-12)


def test_the_docstring_example_runs() -> None:
    harness.assert_doctests_pass(moco)


@pytest.mark.parametrize(
    "arguments,message",
    [
        (dict(temperature=0.0), r"^temperature must be a finite number > 0; got 0.0 \(float\)$"),
        (dict(k1=-1.0), r"^k1 must be a finite number >= 0; got -1.0 \(float\)$"),
        (dict(k2=0.0), r"^k2 must be a finite number > 0; got 0.0 \(float\)$"),
        (dict(k1_uses_temperature=1), r"^k1_uses_temperature must be True or False; got 1 \(int\)$"),
    ],
)
def test_the_loss_refuses_bad_hyperparameters(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MoCoInfoNCELoss(**arguments)


@pytest.mark.parametrize(
    "queries,keys,queue,message",
    [
        (torch.zeros(4), torch.zeros(4), torch.zeros(2, 4), r"^MoCoInfoNCELoss: queries must be a non-empty "
         r"floating-point tensor \[B, D\]; got a torch.float32 tensor of shape \(4,\)$"),
        (torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(2, 4), r"^MoCoInfoNCELoss: keys must be a floating-"
         r"point tensor of the queries' shape \(3, 4\); got a torch.float32 tensor of shape \(2, 4\)$"),
        (torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 5), r"^MoCoInfoNCELoss: queue must be a floating-"
         r"point tensor \[K, 4\] \(K >= 0 negatives\); got a torch.float32 tensor of shape \(2, 5\)$"),
        (torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, 4), torch.zeros(2, 4), r"queries must be"),
        (torch.zeros(3, 4), [[0.0] * 4] * 3, torch.zeros(2, 4), r"keys must be .* got \[\[0.0"),
    ],
)
def test_the_loss_refuses_bad_inputs(queries, keys, queue, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MoCoInfoNCELoss()(queries, keys, queue)


# --- the methods -------------------------------------------------------------------------------------------
def test_the_methods_are_registered_with_their_defaults() -> None:
    assert METHODS.get("mocov2") is MoCoV2 and METHODS.get("tcl-moco") is TCLMoCo
    moco, tcl = create_method("mocov2"), create_method("tcl-moco")
    assert (moco.loss.temperature, moco.loss.k1, moco.loss.k2) == (0.2, 0.0, 1.0)
    assert (tcl.loss.temperature, tcl.loss.k1, tcl.loss.k2, tcl.loss.k1_uses_temperature) == (0.2, 5000.0, 1.0, False)
    for method in (moco, tcl):
        assert (method.queue_size, method.base_momentum, method.final_momentum) == (65536, 0.99, 0.999)
        assert not method.uses_labels and method.min_views == 2
    assert "k1" not in MoCoV2.hyperparameter_specs() and "k1" in TCLMoCo.hyperparameter_specs()
    config = load_config("quick", ["loss.method=tcl-moco", "loss.k1=50", "loss.k2=2"])
    assert (config.loss.k1, config.loss.k2, config.loss.queue_size) == (50.0, 2.0, 65536)


@pytest.mark.parametrize(
    "name,override,message",
    [
        ("mocov2", "loss.queue_size=0", r"queue_size must be an integer >= 1; got 0 \(int\)"),
        ("mocov2", "loss.base_momentum=1.5", r"base_momentum must be a finite number >= 0 and <= 1; got 1.5"),
        ("tcl-moco", "loss.final_momentum=-0.1", r"final_momentum must be a finite number >= 0 and <= 1"),
        ("tcl-moco", "loss.k1=-1", r"k1 must be a finite number >= 0; got -1.0"),
        ("mocov2", "loss.k1=3", r"k1"),  # MoCo has no k1
        ("mocov2", "data.n_views=1", r"data.n_views must be >= 2"),
    ],
)
def test_the_config_refuses_bad_hyperparameters(name: str, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("quick", [f"loss.method={name}", override])


def _manual(name: str, queue_size: int, **hyperparameters) -> MoCoV2:
    method = create_method(name, queue_size=queue_size, **hyperparameters)
    method.build(create_model("small-cnn", in_channels=1, width=0.25), 10, projection_dim=8, projection_hidden=16,
                 gather_distributed=False)
    return method


def _batch(method: MoCoV2, views: torch.Tensor) -> Batch:
    def check_finite(what: str, tensor: torch.Tensor) -> None:
        assert torch.isfinite(tensor).all(), what

    return Batch(views, torch.zeros(views.shape[0], dtype=torch.long), method.model, torch.contiguous_format,
                 check_finite)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_queues_hold_the_last_keys_in_fifo_order_and_the_loss_is_symmetric(name: str) -> None:
    torch.manual_seed(0)
    method = _manual(name, queue_size=20)
    seen_keys, seen_queries = [], []
    method.target.register_forward_hook(lambda module, args, out: seen_keys.append(out.projections.detach()))
    method.model.register_forward_hook(lambda module, args, out: seen_queries.append(out.projections.detach()))
    g = torch.Generator().manual_seed(1)
    for step in range(4):  # 4 batches of 8 images: 32 keys per view for a queue of 20
        before = [queue.features.clone() if len(queue) else None for queue in method.queues]
        out = method.training_step(_batch(method, torch.randn(8, 2, 1, 8, 8, generator=g)))
        q, k = seen_queries[-1].double(), seen_keys[-1].double()
        if step == 0:  # no queues before the first step; with k1 = 0, D = exp(s_p / tau) alone
            assert before == [] and (out.loss == 0 or name != "mocov2")
        # View 0's queries against view 1's keys and view 1's queue, and the other way round, averaged.
        arguments = dict(temperature=0.2, k1=method.loss.k1, k2=method.loss.k2)
        empty = torch.zeros(0, k.shape[-1], dtype=torch.float64)
        queues = [b.double() if b is not None else empty for b in before or [None, None]]
        expected = (reference(q[:, 0], k[:, 1], queues[1], **arguments)
                    + reference(q[:, 1], k[:, 0], queues[0], **arguments)) / 2
        torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-5)
    for view, queue in enumerate(method.queues):
        keys = torch.cat([unit_vectors(k[:, view]) for k in seen_keys])[-20:]  # the newest 20, oldest first
        assert len(queue) == 20 and torch.equal(queue.features, keys)
        assert queue.ids.eq(-1).all()  # self-supervised entries: negatives only


def test_no_gradient_reaches_the_momentum_network() -> None:
    method = _manual("tcl-moco", queue_size=16)
    views = torch.randn(4, 2, 1, 8, 8)
    for _ in range(2):  # the second step has negatives in the queue
        out = method.training_step(_batch(method, views))
        out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.target.parameters())
    assert all(p.grad is not None for p in method.model.parameters())
    assert not any(queue.features.requires_grad for queue in method.queues)


def test_the_momentum_network_follows_the_ema_with_the_cosine_schedule(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=mocov2", "loss.base_momentum=0.5", "loss.final_momentum=0.9"])
    trainer = harness.make_trainer(config, tmp_path / "run")
    method, total = trainer.method, trainer.total_steps
    online_start = [p.detach().clone() for p in trainer.model.parameters()]
    for t, o in zip(method.target.parameters(), online_start, strict=True):
        assert torch.equal(t, o)  # the momentum network starts as a copy
    # BYOL's cosine schedule from 0.5 to 0.9; the (index + 1)-th update uses it at index steps done: 0.5 first,
    # as solo-learn.
    harness.assert_the_target_follows_the_ema(trainer, list(trainer.model.parameters()), base=0.5, final=0.9, steps=3)
    assert method.momentum(1, total) == 0.5 and 0.5 < method.momentum(total, total) < 0.9
    assert any(not torch.equal(a, b) for a, b in zip(online_start, trainer.model.parameters(), strict=True))


def test_tcl_moco_with_k1_0_k2_1_trains_exactly_as_mocov2(tmp_path: Path) -> None:
    runs = []
    for name, extra in (("mocov2", []), ("tcl-moco", ["loss.k1=0", "loss.k2=1"])):
        config = load_config("quick", [*TINY, f"loss.method={name}", *extra])
        trainer = harness.make_trainer(config, tmp_path / name)
        order = epoch_permutation(config.train.seed, 0, len(trainer.dataset.train))
        for index in range(3):
            trainer.train_step(order, index)
        runs.append(trainer)
    moco, tcl = runs
    for name, tensor in moco.model.state_dict().items():
        assert torch.equal(tcl.model.state_dict()[name], tensor), name
    for a, b in zip(moco.method.queues, tcl.method.queues, strict=True):
        assert torch.equal(a.features, b.features)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_resume_is_bit_identical_for_model_target_and_queues(name: str, tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, f"loss.method={name}"])
    # 5 x 64 keys per view: the queue of 200 has wrapped around by the cut (resumed at step 5, checked there).
    runs = harness.train_straight_and_resumed(config, tmp_path, cut_after=5,
                                              inspect_restored=lambda resumed: [len(q) for q in resumed.method.queues])
    assert runs.restored == [200, 200]
    assert runs.outcome.steps == runs.finished.steps == runs.resumed.total_steps
    runs.assert_same_model()
    runs.assert_same_target()
    outcome, finished = runs.outcome, runs.finished
    assert len(outcome.method.queues) == len(finished.method.queues) == 2
    for ours, theirs in zip(outcome.method.queues, finished.method.queues, strict=True):
        harness.assert_states_equal(theirs.state_dict(), ours.state_dict())  # rows, ids, pointer, fill and kind


def test_a_checkpoint_with_another_queue_size_is_refused() -> None:
    method = _manual("mocov2", queue_size=16)
    method.training_step(_batch(method, torch.randn(4, 2, 1, 8, 8)))
    other = _manual("mocov2", queue_size=32)
    with pytest.raises(ValueError, match=r"the checkpoint's queues hold 16 keys; queue_size is 32"):
        other.load_state_dict(method.state_dict())


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_a_tiny_run_ends_with_finite_results(name: str, tmp_path: Path) -> None:
    harness.assert_top1_finite(*harness.run_end_to_end([*TINY, f"loss.method={name}"], tmp_path / "run"))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    spreads = [record["embedding_spread"] for record in records if "embedding_spread" in record]
    assert spreads and all(0.01 < spread < 2 for spread in spreads)  # the queries reach the collapse check
