"""VICReg (``loss.method=vicreg``): the loss against a slow float64 loop written from the paper's equations
(values and gradients, two and more views), hand-computed cases, finiteness, argument checks; the method's
projector and config keys; exact resume; an end-to-end run.

DDP: VICReg is not batch-decomposable (the variance and covariance terms are statistics over the batch; the
projector's BatchNorm uses batch statistics), so a 2-process gloo DDP run does not equal one process. What
holds instead, with ``gather_distributed``: every rank computes the loss of the gathered global batch of
projections (the one-process loss of those projections) and its gradient is the global loss's; BatchNorm still
normalises per rank. Only the single-process path is tested here.
"""

from __future__ import annotations

import doctest
import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import tunedcl.losses.vicreg as vicreg_module
from tunedcl import create_loss, rundir
from tunedcl.losses.vicreg import VICRegLoss
from tunedcl.methods import METHODS, create_method
from tunedcl.train.config import ConfigError, load_config
from tunedcl.train.loop import Trainer, epoch_permutation
from tunedcl.train.progress import Progress
from tunedcl.train.run import run_training
from tunedcl.train.runtime import setup

TINY = ["data.dataset=digits", "data.per_class=null", "model.options.width=0.25", "train.batch_size=64",
        "train.epochs=2", "train.threads=1", "train.tensorboard=false", "optim.warmup_epochs=0",
        "eval.linear_probe=none", "eval.knn_k=20", "model.projection_dim=64", "model.projection_hidden=64"]
DEFAULTS = dict(lam=25.0, mu=25.0, nu=1.0, gamma=1.0, eps=1e-4)


# --- the paper's equations, as plain loops in float64 ----------------------------------------------------------
def column_statistics(z: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Means and the unbiased covariance matrix, cov[i][j] = (1/(B-1)) sum_b (z_bi - m_i)(z_bj - m_j)."""
    rows, dim = z.shape
    means = [sum(z[b, j] for b in range(rows)) / rows for j in range(dim)]
    cov = [[sum((z[b, i] - means[i]) * (z[b, j] - means[j]) for b in range(rows)) / (rows - 1) for j in range(dim)]
           for i in range(dim)]
    return means, cov


def variance_term(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """v(Z) = (1/D) sum_j max(0, gamma - sqrt(Var(z^j) + eps))."""
    _, cov = column_statistics(z)
    dim = z.shape[1]
    return sum(torch.clamp(gamma - torch.sqrt(cov[j][j] + eps), min=0.0) for j in range(dim)) / dim


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = (1/D) sum_{i != j} Cov(Z)_ij^2."""
    _, cov = column_statistics(z)
    dim = z.shape[1]
    return sum(cov[i][j] ** 2 for i in range(dim) for j in range(dim) if i != j) / dim


def invariance_term(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """s(Z, Z') = (1/(B D)) sum_b ||z_b - z'_b||^2 (the paper's (1/B) sum_b ||.||^2, over D as in its code)."""
    rows, dim = za.shape
    return sum((za[b, j] - zb[b, j]) ** 2 for b in range(rows) for j in range(dim)) / (rows * dim)


def vicreg_reference(za: torch.Tensor, zb: torch.Tensor, *, lam: float, mu: float, nu: float, gamma: float,
                     eps: float) -> torch.Tensor:
    """L = lambda s(Z, Z') + mu [v(Z) + v(Z')] + nu [c(Z) + c(Z')]."""
    return (lam * invariance_term(za, zb) + mu * (variance_term(za, gamma, eps) + variance_term(zb, gamma, eps))
            + nu * (covariance_term(za) + covariance_term(zb)))


def multi_view_reference(views: torch.Tensor, **hyper) -> torch.Tensor:
    """The mean of the two-view loss over the V (V - 1) / 2 pairs of views of [B, V, D]."""
    pairs = list(itertools.combinations(range(views.shape[1]), 2))
    return sum(vicreg_reference(views[:, a], views[:, b], **hyper) for a, b in pairs) / len(pairs)


def make_loss(lam: float, mu: float, nu: float, gamma: float, eps: float) -> VICRegLoss:
    return VICRegLoss(invariance_weight=lam, variance_weight=mu, covariance_weight=nu, variance_target=gamma, eps=eps)


def projections(rows: int, views: int, dim: int, seed: int, dtype=torch.float64, spread: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(rows, 1, dim, generator=generator, dtype=dtype)
    noise = torch.randn(rows, views, dim, generator=generator, dtype=dtype)
    # Correlated views, off-centre columns, per-feature scales on both sides of the hinge's gamma = 1.
    scales = torch.linspace(0.3, 2.0, dim, dtype=dtype)
    return spread * scales * (shared + 0.7 * noise) + 0.3


# --- the loss ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rows", "dim", "hyper"), [
    (2, 3, DEFAULTS),
    (6, 5, DEFAULTS),
    (7, 4, dict(lam=1.0, mu=2.0, nu=3.0, gamma=1.5, eps=1e-2)),
    (5, 1, dict(lam=0.5, mu=0.0, nu=1.0, gamma=0.1, eps=0.5)),
])
def test_the_loss_and_its_gradient_match_the_paper_loop(rows: int, dim: int, hyper: dict) -> None:
    z = projections(rows, 2, dim, seed=rows * dim).requires_grad_(True)
    loss = make_loss(**hyper)
    got = loss(z[:, 0], z[:, 1])
    expected = vicreg_reference(z[:, 0], z[:, 1], **hyper)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (ours,) = torch.autograd.grad(got, z)
    (theirs,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss(z), got, rtol=0, atol=0)  # [B, 2, D] is the same as the two views


def test_the_terms_match_the_paper_loop() -> None:
    z = projections(6, 2, 4, seed=1)
    terms = VICRegLoss().terms(z)
    torch.testing.assert_close(terms["invariance"], invariance_term(z[:, 0], z[:, 1]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["variance"], variance_term(z[:, 0], 1.0, 1e-4) + variance_term(z[:, 1], 1.0, 1e-4),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(terms["covariance"], covariance_term(z[:, 0]) + covariance_term(z[:, 1]),
                               rtol=1e-12, atol=1e-12)
    assert 0 < float(terms["variance"]) < 2  # some features below gamma, some above: both sides of the hinge


@pytest.mark.parametrize("views", [3, 4])
def test_more_views_average_the_loss_over_pairs(views: int) -> None:
    z = projections(5, views, 4, seed=views).requires_grad_(True)
    got = VICRegLoss()(z)
    expected = multi_view_reference(z, **DEFAULTS)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    (ours,) = torch.autograd.grad(got, z)
    (theirs,) = torch.autograd.grad(expected, z)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_gradcheck_in_float64_and_symmetry() -> None:
    z = projections(4, 2, 3, seed=11).requires_grad_(True)
    loss = VICRegLoss(invariance_weight=1.0, variance_weight=1.0, covariance_weight=1.0)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (z[:, 0], z[:, 1]))
    torch.testing.assert_close(loss(z[:, 0], z[:, 1]), loss(z[:, 1], z[:, 0]), rtol=1e-14, atol=0)


@pytest.mark.parametrize("spread", [1e-3, 1.0, 50.0])
def test_float32_is_close_to_float64(spread: float) -> None:
    z = projections(16, 2, 8, seed=5, spread=spread)
    expected = VICRegLoss()(z)
    got = VICRegLoss()(z.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_hand_computed_cases() -> None:
    loss = VICRegLoss()
    # Identical views a = [[1, 2], [-1, -2]]: s = 0; Var = 2 and 8 (unbiased, B = 2): both stds above 1, v = 0;
    # Cov_12 = (1 * 2 + (-1) * (-2)) / 1 = 4, so c = (4^2 + 4^2) / 2 = 16 per view: L = 1 * (16 + 16) = 32.
    a = torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64)
    terms = loss.terms(a, a.clone())
    assert float(terms["invariance"]) == 0.0 and float(terms["variance"]) == 0.0
    assert float(terms["covariance"]) == 32.0 and float(loss(a, a.clone())) == 32.0
    # A collapsed batch (every projection 0): s = 0, c = 0, each std is sqrt(eps) = 0.01, so v = 0.99 per view:
    # L = 25 * (0.99 + 0.99) = 49.5.
    zeros = torch.zeros(4, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(loss(zeros), torch.tensor(49.5, dtype=torch.float64))
    # Views that differ by a constant shift: the variances and covariances are the same, s = shift^2.
    z = projections(5, 1, 3, seed=2)[:, 0]
    shifted = loss.terms(z, z + 0.5)
    torch.testing.assert_close(shifted["invariance"], torch.tensor(0.25, dtype=torch.float64))
    torch.testing.assert_close(shifted["covariance"], loss.terms(z, z)["covariance"])


def test_a_constant_feature_is_finite() -> None:
    z = projections(6, 2, 3, seed=2)
    z[:, :, 1] = 4.0
    z.requires_grad_(True)
    value = VICRegLoss()(z)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value, vicreg_reference(z[:, 0], z[:, 1], **DEFAULTS), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["zeros", "constant", "large", "tiny", "two-rows", "mixed", "huge", "max-float"])
def test_finite_for_every_finite_input(case: str) -> None:
    z = torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(0))
    z = {
        "zeros": torch.zeros(8, 2, 6),
        "constant": torch.full((8, 2, 6), 3.0),
        "large": z * 1e6,
        "tiny": z * 1e-30,
        "two-rows": z[:2],
        "mixed": z * torch.tensor([1e-30, 1e-3, 1.0, 1e3, 1e5, 1e8]),
        "huge": z * 1e30,
        "max-float": torch.where(z > 0, torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max),
    }[case].requires_grad_(True)
    value = VICRegLoss()(z)
    assert not torch.isnan(value), case
    if case in ("huge", "max-float"):  # the true value (|z|^4) is beyond float32: inf, never NaN
        assert value == math.inf
        return
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all(), case
    torch.testing.assert_close(value.double(), VICRegLoss()(z.detach().double()), rtol=1e-4, atol=1e-5)


def test_autocast_does_not_lower_the_precision() -> None:
    z = projections(32, 2, 16, seed=4, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        inside = VICRegLoss()(z)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, VICRegLoss()(z), rtol=0, atol=0)
    assert VICRegLoss()(z.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(invariance_weight=-1.0), r"^VICRegLoss: invariance_weight must be a finite number >= 0; got -1.0 \(float\)$"),
    (dict(variance_weight=float("inf")), r"variance_weight must be a finite number >= 0; got inf \(float\)"),
    (dict(covariance_weight="1"), r"covariance_weight must be a finite number >= 0; got '1' \(str\)"),
    (dict(variance_target=-0.5), r"^VICRegLoss: variance_target must be a finite number >= 0; got -0.5 \(float\)$"),
    (dict(eps=0.0), r"^VICRegLoss: eps must be a finite number > 0 \(it keeps a constant feature finite\); got 0.0 \(float\)$"),
    (dict(eps=False), r"eps must be a finite number > 0 .*; got False \(bool\)"),
])
def test_bad_hyperparameters_say_what_is_allowed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VICRegLoss(**kwargs)


@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(1, 2, 4),), r"^VICRegLoss: projections must be a batch of B >= 2 rows .*; got a torch.float32 tensor of shape \(1, 2, 4\)$"),
    ((torch.zeros(1, 4), torch.zeros(1, 4)), r"projections must be a batch of B >= 2 rows .*; got a torch.float32 tensor of shape \(1, 4\)"),
    ((torch.zeros(4, 1, 8),), r"^VICRegLoss: projections must be a \[B, V, D\] tensor with V >= 2 views, or the first of two \[B, D\] tensors; got a torch.float32 tensor of shape \(4, 1, 8\)$"),
    ((torch.zeros(4, 8), torch.zeros(5, 8)), r"^VICRegLoss: other must be a tensor of the shape of projections, \(4, 8\); got a torch.float32 tensor of shape \(5, 8\)$"),
    ((torch.zeros(4, 2, 8, dtype=torch.int32),), r"projections must be a floating-point tensor; got a torch.int32 tensor"),
])
def test_bad_inputs_say_what_is_allowed(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VICRegLoss()(*args)


def test_registered_and_docstring_example_runs() -> None:
    loss = create_loss("vicreg", invariance_weight=10.0)
    assert isinstance(loss, VICRegLoss) and loss.invariance_weight == 10.0 and loss.covariance_weight == 1.0
    with pytest.raises(ValueError, match=r"vicreg loss got unknown argument\(s\) sim_loss_weight; allowed: invariance_weight, "):
        create_loss("vicreg", sim_loss_weight=1.0)
    result = doctest.testmod(vicreg_module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0


# --- the method ------------------------------------------------------------------------------------------------
def _trainer(config, run_dir: Path) -> Trainer:
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, run_dir, setup(config.train), Progress(silent=True))


def test_the_method_builds_solo_learns_projector_and_takes_its_keys() -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "loss.covariance_weight=2.0"])
    assert config.loss.hyperparameters == dict(invariance_weight=25.0, variance_weight=25.0, covariance_weight=2.0,
                                               variance_target=1.0, eps=1e-4, projector_hidden_layers=2)
    method = create_method("vicreg", **config.loss.hyperparameters)
    assert METHODS.get("vicreg") is type(method) and not method.uses_labels and method.min_views == 2
    assert method.loss.covariance_weight == 2.0
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 12))
    encoder.feature_dim = 12
    model = method.build(encoder, 10, projection_dim=6, projection_hidden=8, gather_distributed=False)
    assert model.encoder is encoder
    layers = [type(layer) for layer in model.head.net]
    assert layers == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [layer.out_features for layer in model.head.net if isinstance(layer, nn.Linear)] == [8, 8, 6]
    with pytest.raises(ConfigError, match=r"loss.variance_weight=-1.0 is not allowed: VICRegLoss: variance_weight must be"):
        load_config("quick", [*TINY, "loss.method=vicreg", "loss.variance_weight=-1"])
    with pytest.raises(ConfigError, match=r"loss.projector_hidden_layers=0 is not allowed: vicreg: projector_hidden_layers must be an integer >= 1"):
        load_config("quick", [*TINY, "loss.method=vicreg", "loss.projector_hidden_layers=0"])


def test_the_method_trains_with_three_views(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "data.n_views=3"])
    trainer = _trainer(config, tmp_path / "run")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(epoch_permutation(config.train.seed, 0, len(trainer.dataset.train)), 0)
    assert math.isfinite(trainer.last_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "data.augment=crop-flip", "optim.optimizer=lars",
                                   "optim.lr=0.3", "optim.decay_bias_and_norm=false"])
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
    assert outcome.steps == finished.steps and math.isfinite(outcome.final_loss)
    for name, tensor in finished.model.state_dict().items():
        assert torch.equal(outcome.model.state_dict()[name], tensor), name
    assert outcome.method.state_dict() == finished.method.state_dict() == {}  # every trained part is the model's


def test_an_end_to_end_run_gives_finite_results(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "train.epochs=1", "eval.linear_probe=fast",
                                   "eval.probe_epochs=5"])
    results = run_training(config, tmp_path / "run", quiet=True)
    for key in ("linear_top1", "knn_top1"):
        assert math.isfinite(results[key]) and 0 <= results[key] <= 100
    record = next(r for r in rundir.MetricsLog(tmp_path / "run").read() if "epoch" in r)
    assert math.isfinite(record["loss"]) and record["embedding_spread"] > 0.01


@pytest.mark.parametrize("preset", ["vicreg-fashion-mnist", "vicreg-cifar10-resnet18", "vicreg-cifar100-resnet18"])
def test_the_presets_hold_the_recipe(preset: str) -> None:
    config = load_config(preset)
    assert config.loss.method == "vicreg"
    weights = (config.loss.invariance_weight, config.loss.variance_weight, config.loss.covariance_weight)
    assert weights == (25.0, 25.0, 1.0)
    assert (config.optim.optimizer, config.optim.lr, config.optim.weight_decay) == ("lars", 0.3, 1e-4)
    assert config.train.batch_size == 256 and config.data.n_views == 2
    if "cifar" in preset:
        assert config.model.encoder == "resnet18" and config.model.options["stem"] == "cifar"
        assert (config.model.projection_hidden, config.model.projection_dim) == (2048, 2048)
        assert (config.train.epochs, config.optim.warmup_epochs) == (1000, 10)
