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

from pathlib import Path

import pytest
import torch

import method_harness as harness
from tunedcl import create_loss
from tunedcl.losses import simsiam as loss_module
from tunedcl.losses.simsiam import SimSiamLoss
from tunedcl.methods import create_method
from tunedcl.methods.byol import PredictorModel
from tunedcl.methods.simsiam import SimSiam
from tunedcl.models import create_model
from tunedcl.train.builders import lr_factor, peak_lr
from tunedcl.train.config import load_config

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = [*harness.TINY_DIGITS, "data.augment=crop-flip", "loss.method=simsiam", "model.projection_dim=32",
        "model.projection_hidden=64", "loss.predictor_hidden=16"]


# --- the loss --------------------------------------------------------------------------------------------------
def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = - p / ||p|| . z / ||z||, element by element."""
    dot = sum(a * c for a, c in zip(p, z, strict=True))
    norms = torch.sqrt(sum(a * a for a in p)) * torch.sqrt(sum(c * c for c in z))
    return -dot / norms


def reference(predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SimSiam eq. 1-2 in plain float64 loops: D(p, z) averaged over the pairs (row i against row i for [N, D]),
    z a constant."""
    return harness.per_image_reference(negative_cosine, predictions, targets, reduction, mean_over_pairs=True)


@pytest.mark.parametrize("shape", [(6, 2, 5), (5, 3, 4), (7, 4)], ids=["2-views", "3-views", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_matches_the_paper_in_values_and_gradients(shape: tuple[int, ...], reduction: str) -> None:
    # The stop-gradient too: no gradient flows into the target argument, even when it requires one.
    harness.assert_regression_matches_reference(SimSiamLoss(reduction=reduction), reference, shape, reduction)


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
    harness.assert_gradcheck_over_predictions(SimSiamLoss(), seed=3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1.0, 1e30])
def test_the_loss_is_finite_for_every_finite_input(dtype: torch.dtype, scale: float) -> None:
    predictions, targets, value = harness.scaled_loss(SimSiamLoss(), dtype, scale, seed=4)  # finite, finite gradient
    assert -1.0 <= float(value.detach()) <= 1.0
    if scale >= 1.0:
        expected = reference(predictions.detach().double(), targets.double())
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)



def test_the_docstring_example_runs() -> None:
    harness.assert_doctests_pass(loss_module)

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
    trainer = harness.make_trainer(config, tmp_path / "run")
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
    trainer = harness.make_trainer(config, tmp_path / "run")
    trainer.optimizer.step()
    trainer.scheduler.step()
    assert len({group["lr"] for group in trainer.optimizer.param_groups}) == 1


def test_the_loss_is_per_image_and_only_batch_norm_couples_images() -> None:
    """What holds instead of DDP equivalence (module docstring)."""
    method = create_method("simsiam", predictor_hidden=8)
    harness.assert_per_image_and_only_batch_norm_couples_images(SimSiamLoss(), method, seed=5)


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "optim.warmup_epochs=1"])  # the fixed-lr groups in the checkpoint too
    runs = harness.train_straight_and_resumed(config, tmp_path, cut_after=5)
    assert runs.outcome.steps == runs.finished.steps == runs.resumed.total_steps
    assert runs.outcome.method.state_dict() == runs.finished.method.state_dict() == {}  # no state of its own
    runs.assert_same_model()
    lrs = [(group["lr"], group.get("fixed_lr")) for group in runs.resumed.optimizer.param_groups]
    assert lrs == [(group["lr"], group.get("fixed_lr")) for group in runs.whole.optimizer.param_groups]


def test_a_tiny_run_ends_with_finite_results(tmp_path: Path) -> None:
    harness.assert_top1_finite(*harness.run_end_to_end(TINY, tmp_path / "run"))
    assert isinstance(create_method("simsiam"), SimSiam)
