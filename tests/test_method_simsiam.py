"""SimSiam (Chen & He, CVPR 2021): its loss against the paper's equation and its stop-gradient, the predictor's
fixed learning rate, exact resume, and a whole tiny run.

The loss, written from SimSiam eq. 1-2 (the mean over the ordered pairs of distinct views; 1/2 D + 1/2 D for 2):

    D(p, z) = - p / ||p||  .  z / ||z||  with z constant,       L_b = mean_{v != w} D(p_bv, z_bw),   loss = mean_b L_b

DDP: SimSiam is NOT batch-decomposable: every BatchNorm (encoder, projector with its output BatchNorm,
predictor) normalises with the statistics of each process's local batch, so 2-process gloo DDP does not equal
one process of the whole batch (solo-learn converts to SyncBatchNorm; tunedcl does not). What holds instead,
and is tested here: the loss is a mean of per-image terms (equal halves' means average to the whole batch's
mean, so DDP's gradient mean is right), and the only coupling between images is BatchNorm's batch statistics.
"""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import pytest
import torch

from tunedcl import create_loss
from tunedcl.losses import simsiam as loss_module
from tunedcl.losses.simsiam import SimSiamLoss
from tunedcl.methods import create_method
from tunedcl.methods.byol import PredictorModel
from tunedcl.methods.simsiam import SimSiam
from tunedcl.models import create_model
from tunedcl.train.builders import lr_factor, peak_lr
from tunedcl.train.config import load_config
from tunedcl.train.loop import Trainer, epoch_permutation
from tunedcl.train.progress import Progress
from tunedcl.train.run import run_training
from tunedcl.train.runtime import setup

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = ["data.dataset=digits", "data.per_class=null", "model.options.width=0.25", "train.batch_size=64",
        "train.epochs=2", "train.threads=1", "train.tensorboard=false", "optim.warmup_epochs=0",
        "eval.linear_probe=none", "eval.knn_k=20", "data.augment=crop-flip", "loss.method=simsiam",
        "model.projection_dim=32", "model.projection_hidden=64", "loss.predictor_hidden=16"]


# --- the loss --------------------------------------------------------------------------------------------------
def reference(predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SimSiam eq. 1-2 in plain float64 loops, z a constant."""
    p, z = predictions.double(), targets.detach().double()
    if p.ndim == 2:  # row i against row i
        p, z, pairs = p[:, None], z[:, None], [(0, 0)]
    else:
        pairs = [(v, w) for v in range(p.shape[1]) for w in range(p.shape[1]) if v != w]
    per_image = []
    for b in range(p.shape[0]):
        total = torch.zeros((), dtype=torch.float64)
        for v, w in pairs:
            dot = sum(a * c for a, c in zip(p[b, v], z[b, w], strict=True))
            norms = torch.sqrt(sum(a * a for a in p[b, v])) * torch.sqrt(sum(c * c for c in z[b, w]))
            total = total - dot / norms
        per_image.append(total / len(pairs))
    losses = torch.stack(per_image)
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


@pytest.mark.parametrize("shape", [(6, 2, 5), (5, 3, 4), (7, 4)], ids=["2-views", "3-views", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_matches_the_paper_in_values_and_gradients(shape: tuple[int, ...], reduction: str) -> None:
    g = torch.Generator().manual_seed(1)
    predictions = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    targets = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    got = SimSiamLoss(reduction=reduction)(predictions, targets)
    expected = reference(predictions, targets, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.rand(got.shape, generator=g, dtype=torch.float64)
    (ours,) = torch.autograd.grad((got * weights).sum(), predictions, retain_graph=True)
    (theirs,) = torch.autograd.grad((expected * weights).sum(), predictions)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    # The stop-gradient: no gradient flows into the target argument, even when it requires one.
    assert torch.autograd.grad(got.sum(), targets, allow_unused=True) == (None,)


def test_the_stop_gradient_branch_gets_no_gradient_in_the_model() -> None:
    """In the model the targets are the projector's outputs: the projector and encoder get gradient only through
    the predictor, exactly as if z were detached by hand."""
    method = create_method("simsiam", predictor_hidden=8)
    model = method.build(create_model("small-cnn", in_channels=1, width=0.25), 10, projection_dim=16,
                         projection_hidden=32, gather_distributed=False).double()
    views = torch.randn(6, 2, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = model(views)
    assert out.projections.requires_grad
    ours = torch.autograd.grad(SimSiamLoss()(out.predictions, out.projections), list(model.parameters()))
    out = model(views)
    by_hand = -torch.nn.functional.cosine_similarity(out.predictions, out.projections.detach().flip(1), dim=-1).mean()
    theirs = torch.autograd.grad(by_hand, list(model.parameters()))
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_the_loss_is_the_registered_simsiam_and_passes_gradcheck() -> None:
    assert isinstance(create_loss("simsiam"), SimSiamLoss)
    g = torch.Generator().manual_seed(3)
    predictions = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: SimSiamLoss()(p, targets), (predictions,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1.0, 1e30])
def test_the_loss_is_finite_for_every_finite_input(dtype: torch.dtype, scale: float) -> None:
    g = torch.Generator().manual_seed(4)
    scale = min(scale, torch.finfo(dtype).max / 8)
    predictions = (torch.randn(6, 2, 8, generator=g) * scale).to(dtype).requires_grad_(True)
    targets = (torch.randn(6, 2, 8, generator=g) * scale).to(dtype)
    value = SimSiamLoss()(predictions, targets)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value) and -1.0 <= float(value.detach()) <= 1.0
    assert torch.isfinite(predictions.grad).all()
    if scale >= 1.0:
        expected = reference(predictions.detach().double(), targets.double())
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)



def test_the_docstring_example_runs() -> None:
    result = doctest.testmod(loss_module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0

@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: SimSiamLoss(reduction=None), r"^SimSiamLoss: reduction must be one of 'mean', 'sum', 'none'; got None$"),
        (lambda: SimSiamLoss()(torch.randn(4, 1, 3), torch.randn(4, 1, 3)),
         r"^SimSiamLoss: predictions must be a non-empty floating-point tensor \[N, D\] or \[B, V, D\] with V >= 2; "
         r"got a torch.float32 tensor of shape \(4, 1, 3\)$"),
        (lambda: SimSiamLoss()(torch.randn(4, 2, 3), torch.randn(2, 4, 3)),
         r"^SimSiamLoss: targets must be a floating-point tensor of the predictions' shape \(4, 2, 3\); "
         r"got a torch.float32 tensor of shape \(2, 4, 3\)$"),
        (lambda: create_method("simsiam", predictor_hidden=2.5), r"^simsiam: predictor_hidden must be an integer >= 1; got 2.5 \(float\)$"),
        (lambda: create_method("simsiam", fixed_predictor_lr=1), r"^simsiam: fixed_predictor_lr must be True or False; got 1 \(int\)$"),
    ],
)
def test_bad_arguments_are_one_line_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- the method ------------------------------------------------------------------------------------------------
def _trainer(config, run_dir: Path) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, run_dir, setup(config.train), Progress(silent=True))


def test_the_parts_are_solo_learns_layout() -> None:
    method = create_method("simsiam")
    assert (method.predictor_hidden, method.fixed_predictor_lr) == (512, True)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    model = method.build(encoder, 10, projection_dim=2048, projection_hidden=2048, gather_distributed=False)
    assert isinstance(model, PredictorModel) and model.encoder is encoder
    projector = [(type(m).__name__, getattr(m, "out_features", None), getattr(m, "bias", None) is not None)
                 for m in model.projector.net]
    assert projector == [("Linear", 2048, False), ("BatchNorm1d", None, True), ("ReLU", None, False),
                         ("Linear", 2048, False), ("BatchNorm1d", None, True), ("ReLU", None, False),
                         ("Linear", 2048, False), ("BatchNorm1d", None, False)]  # output BN without affine
    predictor = [(type(m).__name__, getattr(m, "out_features", None)) for m in model.predictor.net]
    assert predictor == [("Linear", 512), ("BatchNorm1d", None), ("ReLU", None), ("Linear", 2048)]
    assert method.fixed_lr_modules() == [model.predictor]
    assert create_method("simsiam", fixed_predictor_lr=False).fixed_lr_modules() == []


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
def test_the_predictor_keeps_the_peak_lr_while_the_rest_follows_the_schedule(tmp_path: Path, optimizer: str) -> None:
    config = load_config("quick", [*TINY, f"optim.optimizer={optimizer}", "optim.lr=0.5", "optim.warmup_epochs=1"])
    trainer = _trainer(config, tmp_path / "run")
    predictor = {id(p) for p in trainer.model.predictor.parameters()}
    groups = trainer.optimizer.param_groups
    fixed = [group for group in groups if group.get("fixed_lr")]
    assert {id(p) for group in fixed for p in group["params"]} == predictor
    assert all(id(p) not in predictor for group in groups if not group.get("fixed_lr") for p in group["params"])
    peak = peak_lr(config)
    warmup, total = trainer.steps_per_epoch, trainer.total_steps
    for step in range(total):
        factor = lr_factor(step, total, warmup, config.optim.min_lr_ratio)
        for group in groups:
            expected = peak if group.get("fixed_lr") else peak * factor
            assert group["lr"] == pytest.approx(expected, rel=1e-12), (step, group.get("fixed_lr"))
        trainer.optimizer.step()  # no gradients: nothing moves, but the scheduler may step after it
        trainer.scheduler.step()
    assert lr_factor(0, total, warmup, config.optim.min_lr_ratio) < 0.1  # the schedule did move the rest


def test_without_fixed_predictor_lr_everything_follows_the_schedule(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.fixed_predictor_lr=false", "optim.warmup_epochs=1"])
    trainer = _trainer(config, tmp_path / "run")
    trainer.optimizer.step()
    trainer.scheduler.step()
    assert len({group["lr"] for group in trainer.optimizer.param_groups}) == 1


def test_the_loss_is_per_image_and_only_batch_norm_couples_images() -> None:
    """What holds instead of DDP equivalence (module docstring)."""
    g = torch.Generator().manual_seed(5)
    predictions, targets = torch.randn(8, 2, 16, generator=g), torch.randn(8, 2, 16, generator=g)
    loss = SimSiamLoss()
    halves = (loss(predictions[:4], targets[:4]) + loss(predictions[4:], targets[4:])) / 2
    torch.testing.assert_close(halves, loss(predictions, targets), rtol=1e-6, atol=1e-6)
    model = create_method("simsiam", predictor_hidden=8).build(
        create_model("small-cnn", in_channels=1, width=0.25), 10, projection_dim=16, projection_hidden=32,
        gather_distributed=False)
    views = torch.randn(8, 2, 1, 8, 8, generator=g)
    assert not torch.allclose(model(views[:4]).predictions, model(views).predictions[:4], atol=1e-4)
    model.eval()
    torch.testing.assert_close(model(views[:4]).predictions, model(views).predictions[:4], rtol=1e-5, atol=1e-5)


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "optim.warmup_epochs=1"])  # the fixed-lr groups in the checkpoint too
    whole = _trainer(config, tmp_path / "whole")
    finished = whole.run()
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
    assert outcome.method.state_dict() == finished.method.state_dict() == {}  # SimSiam keeps no state of its own
    for name, tensor in finished.model.state_dict().items():
        assert torch.equal(outcome.model.state_dict()[name], tensor), name
    lrs = [(group["lr"], group.get("fixed_lr")) for group in resumed.optimizer.param_groups]
    assert lrs == [(group["lr"], group.get("fixed_lr")) for group in whole.optimizer.param_groups]


def test_a_tiny_run_ends_with_finite_results(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "train.epochs=1", "eval.linear_probe=fast", "eval.probe_epochs=5"])
    results = run_training(config, tmp_path / "run", quiet=True)
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    for key in ("linear_top1", "knn_top1"):
        assert math.isfinite(results[key]) and math.isfinite(stored[key]) and 0 <= stored[key] <= 100
    assert isinstance(create_method("simsiam"), SimSiam)
