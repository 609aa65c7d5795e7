"""BYOL (Grill et al., NeurIPS 2020): its regression loss against the paper's equation, the EMA target and its
cosine momentum schedule, exact resume, and a whole tiny run.

The loss, written from BYOL eq. 2 with the symmetrised total L + L~ (every ordered pair of distinct views):

    L_b = sum_{v != w} || p_bv / ||p_bv||  -  z'_bw / ||z'_bw|| ||^2,        loss = mean_b L_b,   z' constant

DDP: BYOL is NOT batch-decomposable: every BatchNorm (encoder, projector, predictor, online and target)
normalises with the statistics of each process's local batch, so 2-process gloo DDP does not equal one
process of the whole batch (solo-learn converts to SyncBatchNorm; tunedcl does not). What holds instead, and
is tested here: the loss itself is a mean of per-image terms (the halves' means average to the whole batch's
mean, so DDP's gradient mean is right), the only coupling between images is BatchNorm's batch statistics, and
the target stays identical on every rank (the EMA of DDP-synchronised weights, a function of them alone).
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest
import torch

from tunedcl import create_loss
from tunedcl.losses import byol as loss_module
from tunedcl.losses.byol import BYOLLoss
from tunedcl.losses.inputs import unit_vectors
from tunedcl.methods import create_method
from tunedcl.methods.byol import BYOL, PredictorModel
from tunedcl.models import ContrastiveModel, create_model
from tunedcl.train.config import load_config
from tunedcl.train.loop import Trainer, epoch_permutation
from tunedcl.train.progress import Progress
from tunedcl.train.run import run_training
from tunedcl.train.runtime import setup

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = ["data.dataset=digits", "data.per_class=null", "model.options.width=0.25", "train.batch_size=64",
        "train.epochs=2", "train.threads=1", "train.tensorboard=false", "optim.warmup_epochs=0",
        "eval.linear_probe=none", "eval.knn_k=20", "data.augment=crop-flip", "loss.method=byol",
        "model.projection_dim=32", "model.projection_hidden=64", "loss.predictor_hidden=64"]


# --- the loss --------------------------------------------------------------------------------------------------
def reference(predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BYOL eq. 2 in plain float64 loops: || p/||p|| - z'/||z'|| ||^2 per pair, z' a constant."""
    p, z = predictions.double(), targets.detach().double()
    if p.ndim == 2:  # row i regresses row i
        p, z, pairs = p[:, None], z[:, None], [(0, 0)]
    else:
        pairs = [(v, w) for v in range(p.shape[1]) for w in range(p.shape[1]) if v != w]
    per_image = []
    for b in range(p.shape[0]):
        total = torch.zeros((), dtype=torch.float64)
        for v, w in pairs:
            p_unit = p[b, v] / torch.sqrt(sum(x * x for x in p[b, v]))
            z_unit = z[b, w] / torch.sqrt(sum(x * x for x in z[b, w]))
            total = total + sum((a - c) ** 2 for a, c in zip(p_unit, z_unit, strict=True))
        per_image.append(total)
    losses = torch.stack(per_image)
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


@pytest.mark.parametrize("shape", [(6, 2, 5), (5, 3, 4), (7, 4)], ids=["2-views", "3-views", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_matches_the_paper_in_values_and_gradients(shape: tuple[int, ...], reduction: str) -> None:
    g = torch.Generator().manual_seed(1)
    predictions = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    targets = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    got = BYOLLoss(reduction=reduction)(predictions, targets)
    expected = reference(predictions, targets, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.rand(got.shape, generator=g, dtype=torch.float64)  # every output element's gradient
    (ours,) = torch.autograd.grad((got * weights).sum(), predictions)
    (theirs,) = torch.autograd.grad((expected * weights).sum(), predictions)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    # The stop-gradient: the targets get no gradient at all.
    assert torch.autograd.grad(got.sum(), targets, allow_unused=True) == (None,)


def test_the_loss_is_the_registered_byol_and_passes_gradcheck() -> None:
    assert isinstance(create_loss("byol"), BYOLLoss)
    g = torch.Generator().manual_seed(2)
    predictions = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: BYOLLoss()(p, targets), (predictions,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-4, 1.0, 1e4, 1e30])
def test_the_loss_is_finite_and_scale_free_for_every_finite_input(dtype: torch.dtype, scale: float) -> None:
    g = torch.Generator().manual_seed(3)
    scale = min(scale, torch.finfo(dtype).max / 8)  # finite inputs: randn stays below 8 here
    base = torch.randn(6, 2, 8, generator=g)
    predictions = (base * scale).to(dtype).requires_grad_(True)
    targets = (torch.randn(6, 2, 8, generator=g) * scale).to(dtype)
    value = BYOLLoss()(predictions, targets)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert torch.isfinite(predictions.grad).all()
    representable = predictions.detach().float().abs().amax(dim=-1).gt(1e-6).all()  # no vector lost to rounding
    if representable and targets.float().abs().amax(dim=-1).gt(1e-6).all():
        # cos is scale-free: huge inputs (whose squared norm overflows) give the loss of moderate ones.
        expected = reference(predictions.detach().double(), targets.double())
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)


def test_unit_vectors_are_unit_and_map_zero_to_zero() -> None:
    x = torch.tensor([[3e30, 4e30], [0.0, 0.0], [3e-3, -4e-3]])
    torch.testing.assert_close(unit_vectors(x), torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.6, -0.8]]))



def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(loss_module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0

@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: BYOLLoss(reduction="avg"), r"^BYOLLoss: reduction must be one of 'mean', 'sum', 'none'; got 'avg' \(str\)$"),
        (lambda: BYOLLoss()(torch.randn(4, 1, 3), torch.randn(4, 1, 3)),
         r"^BYOLLoss: predictions must be a non-empty floating-point tensor \[N, D\] or \[B, V, D\] with V >= 2; "
         r"got a torch.float32 tensor of shape \(4, 1, 3\)$"),
        (lambda: BYOLLoss()(torch.ones(4, 3, dtype=torch.long), torch.randn(4, 3)), r"predictions must be .* got a torch.int64 tensor"),
        (lambda: BYOLLoss()(torch.randn(2, 2, 2, 3), torch.randn(2, 2, 2, 3)), r"predictions must be .* of shape \(2, 2, 2, 3\)$"),
        (lambda: BYOLLoss()(torch.randn(4, 2, 3), torch.randn(4, 2, 5)),
         r"^BYOLLoss: targets must be a floating-point tensor of the predictions' shape \(4, 2, 3\); "
         r"got a torch.float32 tensor of shape \(4, 2, 5\)$"),
        (lambda: BYOLLoss()(torch.randn(4, 3), [[1.0]]), r"targets must be .*; got \[\[1.0\]\] \(list\)$"),
        (lambda: create_method("byol", base_momentum=1.5), r"^byol: base_momentum must be a finite number >= 0 and <= 1; got 1.5"),
        (lambda: create_method("byol", base_momentum=0.99, final_momentum=0.9),
         r"^byol: final_momentum must be a finite number >= 0.99 and <= 1 \(the momentum rises from base_momentum\); got 0.9"),
        (lambda: create_method("byol", predictor_hidden=0), r"^byol: predictor_hidden must be an integer >= 1; got 0 \(int\)$"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- the method ------------------------------------------------------------------------------------------------
def _trainer(config, run_dir: Path) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, run_dir, setup(config.train), Progress(silent=True))


def paper_momentum(k: int, total: int, base: float, final: float = 1.0) -> float:
    """BYOL sec. 3.2: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, k counting from 0 (generalised to final)."""
    return final - (final - base) * (math.cos(math.pi * k / total) + 1) / 2


def test_the_parts_are_the_recipe_and_the_target_copies_the_online_network() -> None:
    method = create_method("byol")
    assert (method.base_momentum, method.final_momentum, method.predictor_hidden) == (0.99, 1.0, 4096)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    model = method.build(encoder, 10, projection_dim=256, projection_hidden=4096, gather_distributed=False)
    assert isinstance(model, PredictorModel) and model.encoder is encoder
    linear_bn = [type(m).__name__ for m in model.projector.net]
    assert linear_bn == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert [type(m).__name__ for m in model.predictor.net] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (model.projector.net[0].out_features, model.projector.net[3].out_features) == (4096, 256)
    assert (model.predictor.net[0].out_features, model.predictor.net[3].out_features) == (4096, 256)
    assert isinstance(method.target, ContrastiveModel) and method.target.training
    online = [*encoder.parameters(), *model.projector.parameters()]
    for t, o in zip(method.target.parameters(), online, strict=True):
        assert torch.equal(t, o) and t is not o and not t.requires_grad
    out = model(torch.randn(4, 2, 1, 8, 8))
    assert out.projections.shape == (4, 2, 256) and out.predictions.shape == (4, 2, 256)


def test_the_target_follows_by_ema_with_the_cosine_momentum_and_gets_no_gradient(tmp_path: Path) -> None:
    # A 4-step run: tau moves a lot from step to step (0.9, 0.915, 0.95), so a step off in the schedule shows.
    config = load_config("quick", [*TINY, "loss.base_momentum=0.9", "train.max_steps=4"])
    trainer = _trainer(config, tmp_path / "run")
    method, total = trainer.method, trainer.total_steps
    assert total == 4
    order = epoch_permutation(config.train.seed, 0, len(trainer.dataset.train))
    target_params = list(method.target.parameters())
    online_params = [*trainer.model.encoder.parameters(), *trainer.model.projector.parameters()]
    online_start = [p.detach().clone() for p in online_params]
    for index in range(3):
        before = [t.detach().clone() for t in target_params]
        trainer.train_step(order, index)
        # After optimiser step k (1-based) the update uses the schedule's tau at k - 1: base_momentum first.
        m = paper_momentum(index, total, 0.9)
        assert method.momentum(index + 1, total) == pytest.approx(m, abs=1e-15)
        for t0, t1, o1 in zip(before, target_params, online_params, strict=True):
            torch.testing.assert_close(t1, m * t0 + (1 - m) * o1.detach(), rtol=0, atol=1e-6)
            assert t1.grad is None and not t1.requires_grad  # no gradient ever reaches the target
    assert method.momentum(1, total) == 0.9 and 0.9 < method.momentum(total, total) < 1.0
    assert any(not torch.equal(a, b) for a, b in zip(online_start, online_params, strict=True))
    assert all(p.grad is not None for p in trainer.model.predictor.parameters())  # the predictor trains


def test_the_loss_is_per_image_and_only_batch_norm_couples_images() -> None:
    """What holds instead of DDP equivalence (module docstring): equal halves' mean losses average to the whole
    batch's; the model's outputs for half a batch differ from the same images' outputs in the whole batch only
    through BatchNorm's batch statistics (in eval mode they agree)."""
    g = torch.Generator().manual_seed(4)
    predictions, targets = torch.randn(8, 2, 16, generator=g), torch.randn(8, 2, 16, generator=g)
    loss = BYOLLoss()
    halves = (loss(predictions[:4], targets[:4]) + loss(predictions[4:], targets[4:])) / 2
    torch.testing.assert_close(halves, loss(predictions, targets), rtol=1e-6, atol=1e-6)
    method = create_method("byol", predictor_hidden=32)
    model = method.build(create_model("small-cnn", in_channels=1, width=0.25), 10, projection_dim=16,
                         projection_hidden=32, gather_distributed=False)
    views = torch.randn(8, 2, 1, 8, 8, generator=g)
    assert not torch.allclose(model(views[:4]).predictions, model(views).predictions[:4], atol=1e-4)
    model.eval()
    torch.testing.assert_close(model(views[:4]).predictions, model(views).predictions[:4], rtol=1e-5, atol=1e-5)


def test_resume_is_bit_identical_for_the_model_and_the_target(tmp_path: Path) -> None:
    config = load_config("quick", TINY)
    finished = _trainer(config, tmp_path / "whole").run()
    stopped = _trainer(config, tmp_path / "cut")
    order = epoch_permutation(config.train.seed, 0, len(stopped.dataset.train))
    for index in range(5):
        stopped.train_step(order, index)
    stopped.checkpoint()
    resumed = _trainer(config, tmp_path / "cut")
    resumed.restore()
    assert resumed.step == 5
    outcome = resumed.run()
    assert outcome.steps == finished.steps == resumed.total_steps
    for name, tensor in finished.model.state_dict().items():
        assert torch.equal(outcome.model.state_dict()[name], tensor), name
    target = outcome.method.target.state_dict()
    assert len(target) == len(finished.method.target.state_dict()) > 0
    for name, tensor in finished.method.target.state_dict().items():  # weights and BatchNorm buffers
        assert torch.equal(target[name], tensor), name


def test_a_tiny_run_ends_with_finite_results(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "train.epochs=1", "eval.linear_probe=fast", "eval.probe_epochs=5"])
    results = run_training(config, tmp_path / "run", quiet=True)
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("linear_top1", "knn_top1"):
        assert math.isfinite(results[key]) and math.isfinite(stored[key]) and 0 <= stored[key] <= 100
    assert isinstance(create_method("byol"), BYOL)
