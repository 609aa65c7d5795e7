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

import math
from pathlib import Path

import pytest
import torch

import method_harness as harness
import tunedcl.losses.vicreg as vicreg_module
from tunedcl import create_loss
from tunedcl.losses.vicreg import VICRegLoss
from tunedcl.methods import METHODS, create_method
from tunedcl.train.config import ConfigError, load_config

TINY = [*harness.TINY_DIGITS, "model.projection_dim=64", "model.projection_hidden=64"]
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
    harness.assert_value_and_gradient_match(got, vicreg_reference(z[:, 0], z[:, 1], **hyper), z)
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
    expected = harness.mean_over_view_pairs(vicreg_reference, z, **DEFAULTS)
    harness.assert_value_and_gradient_match(VICRegLoss()(z), expected, z)


def test_gradcheck_in_float64_and_symmetry() -> None:
    z = projections(4, 2, 3, seed=11).requires_grad_(True)
    loss = VICRegLoss(invariance_weight=1.0, variance_weight=1.0, covariance_weight=1.0)
    harness.assert_gradcheck_and_symmetry(loss, z)


@pytest.mark.parametrize("spread", [1e-3, 1.0, 50.0])
def test_float32_is_close_to_float64(spread: float) -> None:
    harness.assert_float32_close_to_float64(VICRegLoss(), projections(16, 2, 8, seed=5, spread=spread))


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
    harness.assert_autocast_keeps_float32(VICRegLoss(), projections(32, 2, 16, seed=4, dtype=torch.float32))


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
    harness.assert_doctests_pass(vicreg_module)


# --- the method ------------------------------------------------------------------------------------------------
def test_the_method_builds_solo_learns_projector_and_takes_its_keys() -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "loss.covariance_weight=2.0"])
    assert config.loss.hyperparameters == dict(invariance_weight=25.0, variance_weight=25.0, covariance_weight=2.0,
                                               variance_target=1.0, eps=1e-4, projector_hidden_layers=2)
    method = create_method("vicreg", **config.loss.hyperparameters)
    assert METHODS.get("vicreg") is type(method) and not method.uses_labels and method.min_views == 2
    assert method.loss.covariance_weight == 2.0
    harness.assert_builds_the_solo_learn_projector(method)
    with pytest.raises(ConfigError, match=r"loss.variance_weight=-1.0 is not allowed: VICRegLoss: variance_weight must be"):
        load_config("quick", [*TINY, "loss.method=vicreg", "loss.variance_weight=-1"])
    with pytest.raises(ConfigError, match=r"loss.projector_hidden_layers=0 is not allowed: vicreg: projector_hidden_layers must be an integer >= 1"):
        load_config("quick", [*TINY, "loss.method=vicreg", "loss.projector_hidden_layers=0"])


def test_the_method_trains_with_three_views(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=vicreg", "data.n_views=3"])
    harness.assert_a_step_trains(config, tmp_path / "run")


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    harness.assert_resumes_exactly_with_lars([*TINY, "loss.method=vicreg"], tmp_path)


def test_an_end_to_end_run_gives_finite_results(tmp_path: Path) -> None:
    results, _ = harness.run_end_to_end([*TINY, "loss.method=vicreg"], tmp_path / "run")
    for key in ("linear_top1", "knn_top1"):
        assert math.isfinite(results[key]) and 0 <= results[key] <= 100
    record = harness.first_epoch_record(tmp_path / "run")
    assert math.isfinite(record["loss"]) and record["embedding_spread"] > 0.01


@pytest.mark.parametrize("preset", ["vicreg-fashion-mnist", "vicreg-cifar10-resnet18", "vicreg-cifar100-resnet18"])
def test_the_presets_hold_the_recipe(preset: str) -> None:
    config = load_config(preset)
    assert config.loss.method == "vicreg"
    weights = (config.loss.invariance_weight, config.loss.variance_weight, config.loss.covariance_weight)
    assert weights == (25.0, 25.0, 1.0)
    harness.assert_the_lars_recipe(config, preset)
