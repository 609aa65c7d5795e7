"""Gradients: float64 gradcheck, the reference's autograd, and the analytic c_p, c_n of tcl.md §2."""

from __future__ import annotations

import math

import pytest
import torch

from loss_cases import BY_NAME
from loss_reference import reference_coefficients
from test_losses_values import LAYOUTS, make_case
from tunedcl.losses.functional import tcl_loss

LOSSES = BY_NAME  # the shared table (tests/loss_cases.py): one row per family


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("layout", ["labels-2d", "labels-v3", "instance-v2", "mask-2d"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk_size", [0, None, 4])
def test_gradcheck_float64(name: str, layout: str, normalize: bool, chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout, seed=10)
    features = (features * 0.5).double().requires_grad_(True)
    loss = LOSSES[name]

    def fn(x: torch.Tensor) -> torch.Tensor:
        return loss(x, labels, mask, normalize=normalize, reduction="none", chunk_size=chunk_size)

    assert torch.autograd.gradcheck(fn, (features,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk_size", [0, None, 4])
def test_gradients_match_reference_autograd(name: str, layout: str, chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout, seed=11)
    ours = features.double().requires_grad_(True)
    theirs = features.double().requires_grad_(True)
    weights = torch.rand(ours.numel() // ours.shape[-1], generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    (LOSSES[name](ours, labels, mask, reduction="none", chunk_size=chunk_size) * weights).sum().backward()
    (LOSSES[name].reference(theirs, labels, mask) * weights).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-9, atol=1e-10)


def _anchor_gradients(
    similarities: list[float], n_pos: int, **loss_kwargs: float
) -> list[float]:
    """dL_0/ds_0j for an anchor z_0 = e_0 and contrast rows z_j with z_0 . z_j = s_j exactly.

    With normalize=False, dL_0/dz_j = c_j z_0, so c_j is the first coordinate of that gradient.
    """
    n = len(similarities) + 1
    rows = torch.zeros(n, 2, dtype=torch.float64)
    rows[0, 0] = 1.0
    for j, s in enumerate(similarities, start=1):
        rows[j, 0] = s
        rows[j, 1] = math.sqrt(1.0 - s * s)
    labels = torch.tensor([0] * (1 + n_pos) + list(range(1, n - n_pos)))
    rows.requires_grad_(True)
    per_anchor = tcl_loss(rows, labels, normalize=False, reduction="none", **loss_kwargs)
    (grad,) = torch.autograd.grad(per_anchor[0], rows)
    return grad[1:, 0].tolist()


@pytest.mark.parametrize(
    "tau,k1,k2,tempered",
    [(0.1, 0.0, 1.0, False), (0.1, 5000.0, 1.0, False), (0.2, 1e5, 3.0, False),
     (0.5, 2.0, 0.5, True), (0.1, 1e-3, 2.0, True)],
)
def test_autograd_matches_analytic_coefficients(tau: float, k1: float, k2: float,
                                                tempered: bool) -> None:
    g = torch.Generator().manual_seed(12)
    sims_pos = (torch.rand(4, generator=g, dtype=torch.float64) * 1.8 - 0.9).tolist()
    sims_neg = (torch.rand(9, generator=g, dtype=torch.float64) * 1.8 - 0.9).tolist()
    got = _anchor_gradients(sims_pos + sims_neg, len(sims_pos), temperature=tau, k1=k1, k2=k2,
                            k1_uses_temperature=tempered)
    c_p, c_n = reference_coefficients(sims_pos, sims_neg, temperature=tau, k1=k1, k2=k2,
                                      k1_uses_temperature=tempered)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(c_p + c_n), rtol=1e-9, atol=1e-12)


# tcl.md §2 worked example: tau = 0.1; 3 easy positives (s = 0.9), 1 hard (s = -0.5),
# 60 negatives at s = 0 and 4 hard negatives at s = 0.8. Values as printed there (3 significant digits).
WORKED_EXAMPLE = [
    # k1, k2, c_p easy, c_p hard, c_n (s=0), c_n hard
    (0.0, 1.0, -0.267, -2.500, 2.76e-4, 0.821),
    (5000.0, 1.0, -0.940, -2.663, 1.97e-4, 0.589),
    (5000.0, 2.0, -1.238, -2.632, 3.19e-4, 0.952),
    (1e5, 1.0, -2.375, -3.010, 3.09e-5, 0.092),
]


@pytest.mark.parametrize("k1,k2,easy,hard,neg,hard_neg", WORKED_EXAMPLE)
def test_worked_example_of_the_research_notes(k1: float, k2: float, easy: float, hard: float,
                                              neg: float, hard_neg: float) -> None:
    sims = [0.9, 0.9, 0.9, -0.5] + [0.0] * 60 + [0.8] * 4
    c = _anchor_gradients(sims, 4, temperature=0.1, k1=k1, k2=k2)
    for got, printed in [(c[0], easy), (c[3], hard), (c[4], neg), (c[-1], hard_neg)]:
        assert got == pytest.approx(printed, rel=5e-3, abs=5e-4 * abs(printed))


def test_anchor_without_positive_gets_zero_gradient() -> None:
    features = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])  # rows 4 and 5 have no positive
    per_anchor = tcl_loss(features, labels, reduction="none")
    assert per_anchor[4] == 0 and per_anchor[5] == 0
    (grad,) = torch.autograd.grad(per_anchor[4] + per_anchor[5], features)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_no_anchor_with_a_positive_gives_zero_and_backward_works(name: str) -> None:
    features = torch.randn(5, 8, requires_grad=True)
    value = LOSSES[name](features, torch.arange(5), None)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
