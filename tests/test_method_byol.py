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

from pathlib import Path

import pytest
import torch

import method_harness as harness
from tunedcl import create_loss
from tunedcl.losses import byol as loss_module
from tunedcl.losses.byol import BYOLLoss
from tunedcl.losses.inputs import unit_vectors
from tunedcl.methods import create_method
from tunedcl.methods.byol import BYOL, PredictorModel
from tunedcl.models import ContrastiveModel, create_model
from tunedcl.train.config import load_config

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")

TINY = [*harness.TINY_DIGITS, "data.augment=crop-flip", "loss.method=byol", "model.projection_dim=32",
        "model.projection_hidden=64", "loss.predictor_hidden=64"]


# --- the loss --------------------------------------------------------------------------------------------------
def regression_term(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """|| p/||p|| - z'/||z'|| ||^2, element by element."""
    p_unit = p / torch.sqrt(sum(x * x for x in p))
    z_unit = z / torch.sqrt(sum(x * x for x in z))
    return sum((a - c) ** 2 for a, c in zip(p_unit, z_unit, strict=True))


def reference(predictions: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BYOL eq. 2 in plain float64 loops: || p/||p|| - z'/||z'|| ||^2 per pair, summed over the pairs (row i
    regresses row i for [N, D]), z' a constant."""
    return harness.per_image_reference(regression_term, predictions, targets, reduction, mean_over_pairs=False)


@pytest.mark.parametrize("shape", [(6, 2, 5), (5, 3, 4), (7, 4)], ids=["2-views", "3-views", "rows"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_the_loss_matches_the_paper_in_values_and_gradients(shape: tuple[int, ...], reduction: str) -> None:
    # The stop-gradient too: the targets get no gradient at all.
    harness.assert_regression_matches_reference(BYOLLoss(reduction=reduction), reference, shape, reduction)


def test_the_loss_is_the_registered_byol_and_passes_gradcheck() -> None:
    assert isinstance(create_loss("byol"), BYOLLoss)
    harness.assert_gradcheck_over_predictions(BYOLLoss(), seed=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-4, 1.0, 1e4, 1e30])
def test_the_loss_is_finite_and_scale_free_for_every_finite_input(dtype: torch.dtype, scale: float) -> None:
    predictions, targets, value = harness.scaled_loss(BYOLLoss(), dtype, scale, seed=3)  # a finite value and gradient
    representable = predictions.detach().float().abs().amax(dim=-1).gt(1e-6).all()  # no vector lost to rounding
    if representable and targets.float().abs().amax(dim=-1).gt(1e-6).all():
        # cos is scale-free: huge inputs (whose squared norm overflows) give the loss of moderate ones.
        expected = reference(predictions.detach().double(), targets.double())
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)


def test_unit_vectors_are_unit_and_map_zero_to_zero() -> None:
    x = torch.tensor([[3e30, 4e30], [0.0, 0.0], [3e-3, -4e-3]])
    torch.testing.assert_close(unit_vectors(x), torch.tensor([[0.6, 0.8], [0.0, 0.0], [0.6, -0.8]]))



def test_the_docstring_example_runs() -> None:
    harness.assert_doctests_pass(loss_module)

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
    trainer = harness.make_trainer(config, tmp_path / "run")
    method, total = trainer.method, trainer.total_steps
    assert total == 4
    online_params = [*trainer.model.encoder.parameters(), *trainer.model.projector.parameters()]
    online_start = [p.detach().clone() for p in online_params]
    # BYOL sec. 3.2: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, for 3 steps from tau_base = 0.9.
    harness.assert_the_target_follows_the_ema(trainer, online_params, base=0.9, final=1.0, steps=3)
    assert method.momentum(1, total) == 0.9 and 0.9 < method.momentum(total, total) < 1.0
    assert any(not torch.equal(a, b) for a, b in zip(online_start, online_params, strict=True))
    assert all(p.grad is not None for p in trainer.model.predictor.parameters())  # the predictor trains


def test_the_loss_is_per_image_and_only_batch_norm_couples_images() -> None:
    """What holds instead of DDP equivalence (module docstring): equal halves' mean losses average to the whole
    batch's; the model's outputs for half a batch differ from the same images' outputs in the whole batch only
    through BatchNorm's batch statistics (in eval mode they agree)."""
    method = create_method("byol", predictor_hidden=32)
    harness.assert_per_image_and_only_batch_norm_couples_images(BYOLLoss(), method, seed=4)


def test_resume_is_bit_identical_for_the_model_and_the_target(tmp_path: Path) -> None:
    runs = harness.train_straight_and_resumed(load_config("quick", TINY), tmp_path, cut_after=5)
    assert runs.outcome.steps == runs.finished.steps == runs.resumed.total_steps
    runs.assert_same_model()
    runs.assert_same_target()


def test_a_tiny_run_ends_with_finite_results(tmp_path: Path) -> None:
    harness.assert_top1_finite(*harness.run_end_to_end(TINY, tmp_path / "run"))
    assert isinstance(create_method("byol"), BYOL)
