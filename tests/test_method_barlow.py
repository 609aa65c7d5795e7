"""Barlow Twins (``loss.method=barlow``): the loss against a slow float64 loop written from the paper's equations
(values and gradients, two and more views), hand-computed cases, finiteness, argument checks; the method's
projector and config keys; exact resume; an end-to-end run.

DDP: Barlow Twins is not batch-decomposable (the loss standardises each feature over the batch and correlates
the views over the batch; the projector's BatchNorm uses batch statistics), so a 2-process gloo DDP run does
not equal one process. What holds instead, with ``gather_distributed``: every rank computes the loss of the
gathered global batch of projections (the one-process loss of those projections) and its gradient is the
global loss's; BatchNorm still normalises per rank. Only the single-process path is tested here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import method_harness as harness
import tunedcl.losses.barlow as barlow_module
from tunedcl import create_loss
from tunedcl.losses.barlow import BarlowTwinsLoss
from tunedcl.methods import METHODS, create_method
from tunedcl.train.config import ConfigError, load_config

TINY = [*harness.TINY_DIGITS, "model.projection_dim=64", "model.projection_hidden=64"]


# --- the paper's equations, as plain loops in float64 ----------------------------------------------------------
def standardised_columns(z: torch.Tensor, eps: float) -> list[list[torch.Tensor]]:
    """columns[i][b] = (z_bi - mean_b z_bi) / sqrt(var_b z_bi + eps), the biased variance over the batch."""
    rows, dim = z.shape
    columns = []
    for i in range(dim):
        column = [z[b, i] for b in range(rows)]
        mean = sum(column) / rows
        var = sum((x - mean) ** 2 for x in column) / rows
        columns.append([(x - mean) / torch.sqrt(var + eps) for x in column])
    return columns


def barlow_reference(za: torch.Tensor, zb: torch.Tensor, *, lam: float = 0.0051, scale: float = 1.0,
                     eps: float = 1e-5) -> torch.Tensor:
    """L = scale [sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2],  C_ij = (1/B) sum_b zhat^A_bi zhat^B_bj."""
    rows, dim = za.shape
    a, b = standardised_columns(za, eps), standardised_columns(zb, eps)
    total = torch.zeros((), dtype=za.dtype)
    for i in range(dim):
        for j in range(dim):
            c = sum(a[i][n] * b[j][n] for n in range(rows)) / rows
            total = total + ((1 - c) ** 2 if i == j else lam * c**2)
    return scale * total


def paper_equation_2(za: torch.Tensor, zb: torch.Tensor, *, lam: float) -> torch.Tensor:
    """The paper's eq. (2) without eps: C_ij = sum_b a_bi b_bj / (sqrt(sum_b a_bi^2) sqrt(sum_b b_bj^2)), centred."""
    a, b = za - za.mean(0), zb - zb.mean(0)
    rows, dim = za.shape
    total = torch.zeros((), dtype=za.dtype)
    for i in range(dim):
        for j in range(dim):
            num = sum(a[n, i] * b[n, j] for n in range(rows))
            den = torch.sqrt(sum(a[n, i] ** 2 for n in range(rows))) * torch.sqrt(sum(b[n, j] ** 2 for n in range(rows)))
            c = num / den
            total = total + ((1 - c) ** 2 if i == j else lam * c**2)
    return total


def projections(rows: int, views: int, dim: int, seed: int, dtype=torch.float64, spread: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(rows, 1, dim, generator=generator, dtype=dtype)
    noise = torch.randn(rows, views, dim, generator=generator, dtype=dtype)
    return spread * (shared + 0.7 * noise) + 0.3  # correlated views, off-centre columns


# --- the loss ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rows", "dim", "lam", "scale", "eps"), [
    (2, 3, 0.0051, 1.0, 1e-5),
    (6, 5, 0.0051, 1.0, 1e-5),
    (7, 4, 0.3, 0.1, 1e-3),
    (5, 6, 0.0, 2.0, 0.5),
])
def test_the_loss_and_its_gradient_match_the_paper_loop(rows: int, dim: int, lam: float, scale: float,
                                                        eps: float) -> None:
    z = projections(rows, 2, dim, seed=rows * dim).requires_grad_(True)
    loss = BarlowTwinsLoss(off_diagonal_weight=lam, loss_scale=scale, eps=eps)
    got = loss(z[:, 0], z[:, 1])
    harness.assert_value_and_gradient_match(got, barlow_reference(z[:, 0], z[:, 1], lam=lam, scale=scale, eps=eps), z)
    torch.testing.assert_close(loss(z), got, rtol=0, atol=0)  # [B, 2, D] is the same as the two views


@pytest.mark.parametrize("views", [3, 4])
def test_more_views_average_the_loss_over_pairs(views: int) -> None:
    z = projections(5, views, 4, seed=views).requires_grad_(True)
    got = BarlowTwinsLoss(off_diagonal_weight=0.1)(z)
    harness.assert_value_and_gradient_match(got, harness.mean_over_view_pairs(barlow_reference, z, lam=0.1), z)


def test_the_standardisation_is_the_papers_correlation_when_eps_vanishes() -> None:
    z = projections(6, 2, 4, seed=3)
    got = BarlowTwinsLoss(off_diagonal_weight=0.2, eps=1e-300)(z)
    torch.testing.assert_close(got, paper_equation_2(z[:, 0], z[:, 1], lam=0.2), rtol=1e-12, atol=1e-12)


def test_gradcheck_in_float64_and_symmetry() -> None:
    z = projections(4, 2, 3, seed=11).requires_grad_(True)
    harness.assert_gradcheck_and_symmetry(BarlowTwinsLoss(off_diagonal_weight=0.5), z)


@pytest.mark.parametrize("spread", [1e-3, 1.0, 50.0])
def test_float32_is_close_to_float64(spread: float) -> None:
    harness.assert_float32_close_to_float64(BarlowTwinsLoss(), projections(16, 2, 8, seed=5, spread=spread))


def test_hand_computed_cases() -> None:
    eps, lam = 1e-5, 0.0051
    loss = BarlowTwinsLoss()
    # One feature, two rows of +-1: zhat = +-1 / sqrt(1 + eps). Identical views: C = 1 / (1 + eps).
    one = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    torch.testing.assert_close(loss(one, one.clone()), torch.tensor((eps / (1 + eps)) ** 2, dtype=torch.float64))
    # Opposite views: C = -1 / (1 + eps), so (1 + 1 / (1 + eps))^2, about 4.
    torch.testing.assert_close(loss(one, -one), torch.tensor((1 + 1 / (1 + eps)) ** 2, dtype=torch.float64))
    # Two features: a = [[1, 2], [-1, -2]], b = [[1, -3], [-1, 3]]; every column is a multiple of [1, -1], so
    # C_ij = +-s_i t_j with s = (1, 2) / sqrt(var + eps) and t = (1, 3) / sqrt(var + eps).
    a = torch.tensor([[1.0, 2.0], [-1.0, -2.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, -3.0], [-1.0, 3.0]], dtype=torch.float64)
    s1, s2 = 1 / math.sqrt(1 + eps), 2 / math.sqrt(4 + eps)
    t1, t2 = 1 / math.sqrt(1 + eps), 3 / math.sqrt(9 + eps)
    expected = (1 - s1 * t1) ** 2 + (1 + s2 * t2) ** 2 + lam * ((s1 * t2) ** 2 + (s2 * t1) ** 2)
    torch.testing.assert_close(loss(a, b), torch.tensor(expected, dtype=torch.float64))  # about 4 + 2 lambda
    terms = loss.terms(a, b)
    torch.testing.assert_close(terms["off_diagonal"], torch.tensor((s1 * t2) ** 2 + (s2 * t1) ** 2, dtype=torch.float64))
    # The scale multiplies everything.
    torch.testing.assert_close(BarlowTwinsLoss(loss_scale=0.1)(a, b), 0.1 * loss(a, b))


def test_a_constant_column_is_finite_and_counts_one() -> None:
    z = projections(6, 2, 3, seed=2)
    z[:, :, 1] = 4.0  # feature 1 is the same for every image of both views
    z.requires_grad_(True)
    value = BarlowTwinsLoss()(z)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value, barlow_reference(z[:, 0], z[:, 1]), rtol=1e-12, atol=1e-12)
    # Its standardised column is 0, so C_11 = 0: it adds (1 - 0)^2 = 1 to the loss.
    assert float(BarlowTwinsLoss().terms(z.detach()[:, :, 1:2])["on_diagonal"]) == 1.0


@pytest.mark.parametrize("case", ["zeros", "constant", "huge", "tiny", "mixed", "two-rows", "max-float"])
def test_finite_for_every_finite_input(case: str) -> None:
    z = torch.randn(8, 2, 6, generator=torch.Generator().manual_seed(0))
    z = {
        "zeros": torch.zeros(8, 2, 6),
        "constant": torch.full((8, 2, 6), 3.0),
        "huge": z * 1e30,
        "tiny": z * 1e-30,
        "mixed": z * torch.tensor([1e-30, 1e-3, 1.0, 1e3, 1e20, 1e36]),
        "two-rows": z[:2],
        "max-float": torch.where(z > 0, torch.finfo(torch.float32).max, -torch.finfo(torch.float32).max),
    }[case].requires_grad_(True)
    value = BarlowTwinsLoss()(z)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value), case
    assert torch.isfinite(grad).all(), case
    if case == "huge":  # standardising is scale-free: the same loss as at scale 1
        torch.testing.assert_close(value, BarlowTwinsLoss()(z.detach() / 1e30), rtol=1e-4, atol=1e-4)


def test_autocast_does_not_lower_the_precision() -> None:
    harness.assert_autocast_keeps_float32(BarlowTwinsLoss(), projections(32, 2, 16, seed=4, dtype=torch.float32))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(off_diagonal_weight=-0.1), r"^BarlowTwinsLoss: off_diagonal_weight must be a finite number >= 0; got -0.1 \(float\)$"),
    (dict(off_diagonal_weight=float("nan")), r"off_diagonal_weight must be a finite number >= 0; got nan \(float\)"),
    (dict(off_diagonal_weight="0.1"), r"off_diagonal_weight must be a finite number >= 0; got '0.1' \(str\)"),
    (dict(loss_scale=0.0), r"^BarlowTwinsLoss: loss_scale must be a finite number > 0; got 0.0 \(float\)$"),
    (dict(loss_scale=True), r"loss_scale must be a finite number > 0; got True \(bool\)"),
    (dict(eps=0), r"^BarlowTwinsLoss: eps must be a finite number > 0 \(it keeps a constant column finite\); got 0 \(int\)$"),
])
def test_bad_hyperparameters_say_what_is_allowed(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BarlowTwinsLoss(**kwargs)


@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(1, 2, 4),), r"^BarlowTwinsLoss: projections must be a batch of B >= 2 rows .*; got a torch.float32 tensor of shape \(1, 2, 4\)$"),
    ((torch.zeros(1, 4), torch.zeros(1, 4)), r"projections must be a batch of B >= 2 rows .*; got a torch.float32 tensor of shape \(1, 4\)"),
    ((torch.zeros(4, 1, 8),), r"^BarlowTwinsLoss: projections must be a \[B, V, D\] tensor with V >= 2 views, or the first of two \[B, D\] tensors; got a torch.float32 tensor of shape \(4, 1, 8\)$"),
    ((torch.zeros(4, 8),), r"projections must be a \[B, V, D\] tensor .*; got a torch.float32 tensor of shape \(4, 8\)"),
    ((torch.zeros(4, 8), torch.zeros(4, 7)), r"^BarlowTwinsLoss: other must be a tensor of the shape of projections, \(4, 8\); got a torch.float32 tensor of shape \(4, 7\)$"),
    ((torch.zeros(4, 2, 8), torch.zeros(4, 2, 8)), r"projections must be a \[B, D\] tensor when other is given; got a torch.float32 tensor of shape \(4, 2, 8\)"),
    ((torch.zeros(4, 2, 8, dtype=torch.long),), r"projections must be a floating-point tensor; got a torch.int64 tensor"),
])
def test_bad_inputs_say_what_is_allowed(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BarlowTwinsLoss()(*args)


def test_registered_and_docstring_example_runs() -> None:
    loss = create_loss("barlow", off_diagonal_weight=0.01, loss_scale=0.1)
    assert isinstance(loss, BarlowTwinsLoss) and loss.off_diagonal_weight == 0.01 and loss.loss_scale == 0.1
    with pytest.raises(ValueError, match=r"barlow loss got unknown argument\(s\) lamb; allowed: off_diagonal_weight, loss_scale, eps"):
        create_loss("barlow", lamb=0.1)
    harness.assert_doctests_pass(barlow_module)


# --- the method ------------------------------------------------------------------------------------------------
def test_the_method_builds_solo_learns_projector_and_takes_its_keys() -> None:
    config = load_config("quick", [*TINY, "loss.method=barlow", "loss.loss_scale=0.1"])
    assert config.loss.hyperparameters == dict(off_diagonal_weight=0.0051, loss_scale=0.1, eps=1e-5,
                                               projector_hidden_layers=2)
    method = create_method("barlow", **config.loss.hyperparameters)
    assert METHODS.get("barlow") is type(method) and not method.uses_labels and method.min_views == 2
    harness.assert_builds_the_solo_learn_projector(method)
    with pytest.raises(ConfigError, match=r"loss.eps=0.0 is not allowed: BarlowTwinsLoss: eps must be a finite number > 0"):
        load_config("quick", [*TINY, "loss.method=barlow", "loss.eps=0"])
    with pytest.raises(ConfigError, match=r"loss.projector_hidden_layers=0 is not allowed: barlow: projector_hidden_layers must be an integer >= 1"):
        load_config("quick", [*TINY, "loss.method=barlow", "loss.projector_hidden_layers=0"])


def test_the_method_trains_with_three_views(tmp_path: Path) -> None:
    config = load_config("quick", [*TINY, "loss.method=barlow", "data.n_views=3"])
    harness.assert_a_step_trains(config, tmp_path / "run")


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    harness.assert_resumes_exactly_with_lars([*TINY, "loss.method=barlow", "loss.loss_scale=0.1"], tmp_path)


def test_an_end_to_end_run_gives_finite_results(tmp_path: Path) -> None:
    results, saved = harness.run_end_to_end([*TINY, "loss.method=barlow", "loss.loss_scale=0.1"], tmp_path / "run")
    harness.assert_top1_finite(results, saved)
    record = harness.first_epoch_record(tmp_path / "run")
    assert math.isfinite(record["loss"]) and record["embedding_spread"] > 0.01


@pytest.mark.parametrize("preset", ["barlow-fashion-mnist", "barlow-cifar10-resnet18", "barlow-cifar100-resnet18"])
def test_the_presets_hold_the_recipe(preset: str) -> None:
    config = load_config(preset)
    assert config.loss.method == "barlow" and config.loss.loss_scale == 0.1 and config.loss.off_diagonal_weight == 0.0051
    harness.assert_the_lars_recipe(config, preset)
