"""What the method tests share (tests/test_method_*.py, tests/test_extending.py): the tiny digits run, a quiet
Trainer, the exact-resume check's two runs, state comparisons, the end-to-end run, and the checks that Barlow
Twins and VICReg (one BatchLossMethod, one projector, one recipe) and BYOL and SimSiam (a predictor regressing a
constant target over every ordered pair of views) have in common.

Not a test module: the test files import it as a sibling (``import method_harness as harness``; tests/ is on
sys.path under pytest's default import mode). pytest rewrites the asserts of test modules and conftest.py only,
so those here say what they saw.
"""

from __future__ import annotations

import doctest
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tunedcl import rundir
from tunedcl.models import create_model
from tunedcl.train.assemble import epoch_permutation
from tunedcl.train.config import load_config
from tunedcl.train.loop import Trainer, TrainOutcome
from tunedcl.train.progress import Progress
from tunedcl.train.run import run_training
from tunedcl.train.runtime import setup

# One small, fast run on the digits: each method's tests add their own keys after these.
TINY_DIGITS = ["data.dataset=digits", "data.per_class=null", "model.options.width=0.25", "train.batch_size=64",
               "train.epochs=2", "train.threads=1", "train.tensorboard=false", "optim.warmup_epochs=0",
               "eval.linear_probe=none", "eval.knn_k=20"]
# What turns a tiny run into an end-to-end one: one epoch, then a fast linear probe.
END_TO_END = ["train.epochs=1", "eval.linear_probe=fast", "eval.probe_epochs=5"]


# --- training ------------------------------------------------------------------------------------------------
def make_trainer(config, run_dir: Path) -> Trainer:
    """A silent Trainer writing to ``run_dir`` (made if missing)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, run_dir, setup(config.train), Progress(silent=True))


def first_epoch_order(trainer: Trainer) -> torch.Tensor:
    """The order of the training images in epoch 0, as the loop draws it."""
    return epoch_permutation(trainer.config.train.seed, 0, len(trainer.dataset.train))


@dataclass
class StraightAndResumed:
    """The two runs of an exact-resume check: ``whole`` trained straight through to ``finished``; ``stopped``
    trained ``cut_after`` steps and checkpointed; ``resumed``, a new Trainer restored from that checkpoint, run
    to the end as ``outcome``. ``restored``: what ``inspect_restored`` said of ``resumed`` before it ran."""

    whole: Trainer
    finished: TrainOutcome
    stopped: Trainer
    resumed: Trainer
    outcome: TrainOutcome
    restored: Any = None

    def assert_same_model(self) -> None:
        """The resumed run ends with the straight run's model, bit for bit."""
        assert_states_equal(self.finished.model.state_dict(), self.outcome.model.state_dict())

    def assert_same_target(self) -> None:
        """The resumed run ends with the straight run's momentum target (weights and BatchNorm buffers, not none),
        bit for bit."""
        target = self.outcome.method.target.state_dict()
        assert len(target) == len(self.finished.method.target.state_dict()) > 0, "no target state, or not all of it"
        assert_states_equal(self.finished.method.target.state_dict(), target)


def train_straight_and_resumed(config, tmp_path: Path, cut_after: int,
                               inspect_restored: Callable[[Trainer], Any] | None = None) -> StraightAndResumed:
    """Train ``config`` straight through (in tmp_path/whole), and again (in tmp_path/cut) for ``cut_after`` steps,
    checkpoint, restore into a new Trainer (checked to be at step ``cut_after``) and run that to the end."""
    whole = make_trainer(config, tmp_path / "whole")
    finished = whole.run()
    stopped = make_trainer(config, tmp_path / "cut")
    order = first_epoch_order(stopped)
    for index in range(cut_after):
        stopped.train_step(order, index)
    stopped.checkpoint()
    resumed = make_trainer(config, tmp_path / "cut")
    resumed.restore()
    assert resumed.step == cut_after, f"restored at step {resumed.step}, not {cut_after}"
    restored = inspect_restored(resumed) if inspect_restored is not None else None
    return StraightAndResumed(whole, finished, stopped, resumed, resumed.run(), restored)


def assert_states_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    """Every tensor of the state dict ``a`` is bit-identical to ``b``'s of the same name (a mismatch names it)."""
    for name, tensor in a.items():
        assert torch.equal(b[name], tensor), name


def assert_a_step_trains(config, run_dir: Path) -> None:
    """One training step gives a finite loss and moves the model."""
    trainer = make_trainer(config, run_dir)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(first_epoch_order(trainer), 0)
    assert math.isfinite(trainer.last_loss), f"the loss is {trainer.last_loss}"
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)), "nothing moved"


# --- the end-to-end run --------------------------------------------------------------------------------------
def run_end_to_end(overrides: list[str], run_dir: Path) -> tuple[dict, dict]:
    """``run_training`` of the quick preset with ``overrides`` and END_TO_END: its results and the results.json
    it saved in ``run_dir``."""
    results = run_training(load_config("quick", [*overrides, *END_TO_END]), run_dir, quiet=True)
    return results, json.loads((run_dir / "results.json").read_text())


def assert_top1_finite(results: dict, saved: dict) -> None:
    """The linear-probe and k-NN accuracies are finite, and those saved in results.json are percentages."""
    for key in ("linear_top1", "knn_top1"):
        assert math.isfinite(results[key]) and math.isfinite(saved[key]) and 0 <= saved[key] <= 100, \
            f"{key}: {results[key]} returned, {saved[key]} saved"


def first_epoch_record(run_dir: Path) -> dict:
    """The first end-of-epoch record of the run's metrics log."""
    return next(r for r in rundir.MetricsLog(run_dir).read() if "epoch" in r)


def assert_doctests_pass(module) -> None:
    """The module's docstring examples run, and there are some."""
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0, result


# --- momentum targets (BYOL, MoCo v2+, TCL-MoCo) ---------------------------------------------------------------
def cosine_momentum(step: int, total: int, base: float, final: float = 1.0) -> float:
    """BYOL sec. 3.2: tau = final - (final - base) (cos(pi step / total) + 1) / 2, step counting from 0 (the paper's
    final is 1)."""
    return final - (final - base) * (math.cos(math.pi * step / total) + 1) / 2


def assert_the_target_follows_the_ema(trainer: Trainer, online: list[torch.Tensor], *, base: float, final: float,
                                      steps: int = 3) -> None:
    """For the first ``steps`` steps: each target weight is m t0 + (1 - m) o1 with the cosine momentum m, o1 the
    ``online`` weight after the step, and no gradient ever reaches the target."""
    method, total = trainer.method, trainer.total_steps
    order = first_epoch_order(trainer)
    target = list(method.target.parameters())
    for index in range(steps):
        before = [t.detach().clone() for t in target]
        trainer.train_step(order, index)
        # After optimiser step k (1-based) the update uses the schedule's tau at k - 1: base_momentum first.
        m = cosine_momentum(index, total, base, final)
        got = method.momentum(index + 1, total)
        assert got == pytest.approx(m, abs=1e-15), f"momentum after step {index + 1}: {got}, not {m}"
        for t0, t1, o1 in zip(before, target, online, strict=True):
            torch.testing.assert_close(t1, m * t0 + (1 - m) * o1.detach(), rtol=0, atol=1e-6)
            assert t1.grad is None and not t1.requires_grad, "a gradient reached the target"


# --- Barlow Twins and VICReg: losses of batch statistics, solo-learn's projector and recipe -------------------
def mean_over_view_pairs(two_view_loss: Callable[..., torch.Tensor], views: torch.Tensor, **hyper) -> torch.Tensor:
    """The mean of the two-view loss over the V (V - 1) / 2 pairs of views of [B, V, D]."""
    pairs = list(itertools.combinations(range(views.shape[1]), 2))
    return sum(two_view_loss(views[:, a], views[:, b], **hyper) for a, b in pairs) / len(pairs)


def assert_value_and_gradient_match(got: torch.Tensor, expected: torch.Tensor, inputs: torch.Tensor) -> None:
    """float64 against a reference: the value to 1e-12, the gradient with respect to ``inputs`` to 1e-10."""
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (ours,) = torch.autograd.grad(got, inputs)
    (theirs,) = torch.autograd.grad(expected, inputs)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def assert_gradcheck_and_symmetry(loss: nn.Module, z: torch.Tensor) -> None:
    """gradcheck of loss(view 0, view 1) in float64, and the same value with the views swapped."""
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (z[:, 0], z[:, 1]))
    torch.testing.assert_close(loss(z[:, 0], z[:, 1]), loss(z[:, 1], z[:, 0]), rtol=1e-14, atol=0)


def assert_float32_close_to_float64(loss: nn.Module, z: torch.Tensor) -> None:
    """float32 views (``z`` is float64) give a float32 loss within 1e-5 of the float64 one."""
    expected = loss(z)
    got = loss(z.float())
    assert got.dtype == torch.float32, got.dtype
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def assert_autocast_keeps_float32(loss: nn.Module, z: torch.Tensor) -> None:
    """Under bf16 autocast, and for bf16 inputs, the loss of float32 ``z`` is still computed in float32."""
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = loss(z)
    assert inside.dtype == torch.float32, inside.dtype
    torch.testing.assert_close(inside, loss(z), rtol=0, atol=0)
    bf16 = loss(z.bfloat16())
    assert bf16.dtype == torch.float32, bf16.dtype


def assert_builds_the_solo_learn_projector(method) -> None:
    """solo-learn's projector: Linear-BN-ReLU twice (``projection_hidden`` wide), then Linear to
    ``projection_dim``, on top of the encoder it is given."""
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 12))
    encoder.feature_dim = 12
    model = method.build(encoder, 10, projection_dim=6, projection_hidden=8, gather_distributed=False)
    assert model.encoder is encoder
    layers = [type(layer) for layer in model.head.net]
    assert layers == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear], layers
    widths = [layer.out_features for layer in model.head.net if isinstance(layer, nn.Linear)]
    assert widths == [8, 8, 6], widths


def assert_resumes_exactly_with_lars(overrides: list[str], tmp_path: Path) -> None:
    """Trained with LARS on cropped and flipped views, stopped after 5 steps and resumed: the same number of steps,
    a finite loss and the same model, bit for bit; the method keeps no state of its own (every trained part is
    the model's)."""
    config = load_config("quick", [*overrides, "data.augment=crop-flip", "optim.optimizer=lars", "optim.lr=0.3",
                                   "optim.decay_bias_and_norm=false"])
    runs = train_straight_and_resumed(config, tmp_path, cut_after=5)
    outcome, finished = runs.outcome, runs.finished
    assert outcome.steps == finished.steps and math.isfinite(outcome.final_loss), (outcome.steps, finished.steps,
                                                                                   outcome.final_loss)
    runs.assert_same_model()
    assert outcome.method.state_dict() == finished.method.state_dict() == {}, "the method keeps a state of its own"


def assert_the_lars_recipe(config, preset: str) -> None:
    """The papers' LARS recipe at batch 256, two views; on CIFAR a ResNet-18 with the CIFAR stem, a 2048-wide
    projector and 1000 epochs with 10 of warmup."""
    optim = (config.optim.optimizer, config.optim.lr, config.optim.weight_decay)
    assert optim == ("lars", 0.3, 1e-4), optim
    assert config.train.batch_size == 256 and config.data.n_views == 2, (config.train.batch_size, config.data.n_views)
    if "cifar" in preset:
        # The CIFAR stem: written in the preset, and the ResNet default (options equal to their default are left out).
        assert config.model.encoder == "resnet18" and config.model.options.get("stem", "cifar") == "cifar", config.model
        projector = (config.model.projection_hidden, config.model.projection_dim)
        assert projector == (2048, 2048), projector
        schedule = (config.train.epochs, config.optim.warmup_epochs)
        assert schedule == (1000, 10), schedule


# --- BYOL and SimSiam: a predictor regressing a constant target, per image, over ordered pairs of views ------
def per_image_reference(pair_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], predictions: torch.Tensor,
                        targets: torch.Tensor, reduction: str, *, mean_over_pairs: bool) -> torch.Tensor:
    """Plain float64 loops, the targets a constant: per image the sum (or the mean) of ``pair_term(p_bv, z_bw)``
    over the ordered pairs of distinct views v != w of [B, V, D] (row i against row i for [N, D]), then reduced."""
    p, z = predictions.double(), targets.detach().double()
    if p.ndim == 2:  # row i against row i
        p, z, pairs = p[:, None], z[:, None], [(0, 0)]
    else:
        pairs = [(v, w) for v in range(p.shape[1]) for w in range(p.shape[1]) if v != w]
    per_image = []
    for b in range(p.shape[0]):
        total = torch.zeros((), dtype=torch.float64)
        for v, w in pairs:
            total = total + pair_term(p[b, v], z[b, w])
        per_image.append(total / len(pairs) if mean_over_pairs else total)
    losses = torch.stack(per_image)
    return {"mean": losses.mean(), "sum": losses.sum(), "none": losses}[reduction]


def assert_regression_matches_reference(loss: nn.Module, reference: Callable[..., torch.Tensor],
                                        shape: tuple[int, ...], reduction: str) -> None:
    """On random float64 inputs of ``shape``: the values and gradients (every output element's, weighted at
    random) of ``loss`` (of that ``reduction``) are the reference's, and the targets get no gradient at all,
    even when they require one (the stop-gradient)."""
    g = torch.Generator().manual_seed(1)
    predictions = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    targets = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
    got = loss(predictions, targets)
    expected = reference(predictions, targets, reduction)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.rand(got.shape, generator=g, dtype=torch.float64)  # every output element's gradient
    (ours,) = torch.autograd.grad((got * weights).sum(), predictions, retain_graph=True)
    (theirs,) = torch.autograd.grad((expected * weights).sum(), predictions)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert torch.autograd.grad(got.sum(), targets, allow_unused=True) == (None,), "the targets got a gradient"


def assert_gradcheck_over_predictions(loss: nn.Module, seed: int) -> None:
    """gradcheck of the loss in the predictions of [4, 2, 3], the targets fixed."""
    g = torch.Generator().manual_seed(seed)
    predictions = torch.randn(4, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: loss(p, targets), (predictions,))


def scaled_loss(loss: nn.Module, dtype: torch.dtype, scale: float,
                seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random [6, 2, 8] predictions and targets times ``scale`` (kept finite in ``dtype``), in ``dtype``; the
    loss, checked to be a finite float32 with a finite gradient. Returns predictions, targets and the loss."""
    g = torch.Generator().manual_seed(seed)
    scale = min(scale, torch.finfo(dtype).max / 8)  # finite inputs: randn stays below 8 here
    predictions = (torch.randn(6, 2, 8, generator=g) * scale).to(dtype).requires_grad_(True)
    targets = (torch.randn(6, 2, 8, generator=g) * scale).to(dtype)
    value = loss(predictions, targets)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value), value
    assert torch.isfinite(predictions.grad).all(), "a gradient is not finite"
    return predictions, targets, value


def assert_per_image_and_only_batch_norm_couples_images(loss: nn.Module, method, seed: int) -> None:
    """Equal halves' mean losses average to the whole batch's; the model's outputs for half a batch differ from
    the same images' outputs in the whole batch only through BatchNorm's batch statistics (in eval mode they
    agree)."""
    g = torch.Generator().manual_seed(seed)
    predictions, targets = torch.randn(8, 2, 16, generator=g), torch.randn(8, 2, 16, generator=g)
    halves = (loss(predictions[:4], targets[:4]) + loss(predictions[4:], targets[4:])) / 2
    torch.testing.assert_close(halves, loss(predictions, targets), rtol=1e-6, atol=1e-6)
    model = method.build(create_model("small-cnn", in_channels=1, width=0.25), 10, projection_dim=16,
                         projection_hidden=32, gather_distributed=False)
    views = torch.randn(8, 2, 1, 8, 8, generator=g)
    assert not torch.allclose(model(views[:4]).predictions, model(views).predictions[:4], atol=1e-4), \
        "in train mode half a batch gives the whole batch's outputs: no batch statistics?"
    model.eval()
    torch.testing.assert_close(model(views[:4]).predictions, model(views).predictions[:4], rtol=1e-5, atol=1e-5)
