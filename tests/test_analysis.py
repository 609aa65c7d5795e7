"""tunedcl.analysis against hand-computed cases, the worked example of tcl.md §2, and autograd."""

from __future__ import annotations

import math

import pytest
import torch

from tunedcl import TCLLoss
from tunedcl.analysis import (
    alignment,
    denominator_shares,
    gradient_coefficients,
    mean_gradient_magnitudes,
    tolerance,
    uniformity,
)


def anchor_batch(sims: list[float], n_pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z_0 = e_0 and rows z_j with z_0 . z_j = s_j exactly (unit norm), labels: 0 for z_0 and n_pos rows."""
    rows = torch.zeros(len(sims) + 1, 2, dtype=torch.float64)
    rows[0, 0] = 1.0
    for j, s in enumerate(sims, start=1):
        rows[j] = torch.tensor([s, math.sqrt(1 - s * s)], dtype=torch.float64)
    labels = torch.tensor([0] * (1 + n_pos) + list(range(1, len(sims) - n_pos + 1)))
    return rows, labels


@pytest.mark.parametrize(
    "k1,k2,easy,hard,neg,hard_neg",
    [(0.0, 1.0, -0.267, -2.500, 2.76e-4, 0.821), (5000.0, 1.0, -0.940, -2.663, 1.97e-4, 0.589),
     (5000.0, 2.0, -1.238, -2.632, 3.19e-4, 0.952), (1e5, 1.0, -2.375, -3.010, 3.09e-5, 0.092)],
)
def test_worked_example_of_the_research_notes(k1, k2, easy, hard, neg, hard_neg) -> None:
    rows, labels = anchor_batch([0.9, 0.9, 0.9, -0.5] + [0.0] * 60 + [0.8] * 4, 4)
    c = gradient_coefficients(rows, labels, temperature=0.1, k1=k1, k2=k2).values[0]
    for got, printed in [(c[1], easy), (c[4], hard), (c[5], neg), (c[-1], hard_neg)]:
        assert float(got) == pytest.approx(printed, rel=5e-3)


@pytest.mark.parametrize("k1,k2,tempered", [(0.0, 1.0, False), (5000.0, 2.0, False), (3.0, 0.5, True)])
def test_coefficients_are_the_loss_gradient(k1: float, k2: float, tempered: bool) -> None:
    """dL_i/dz_j = c_ij z_i (j != i), and dL_i/dz_i = sum_p c_p z_p + sum_n c_n z_n."""
    g = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(12, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 5])
    kwargs = dict(temperature=0.2, k1=k1, k2=k2, k1_uses_temperature=tempered)
    coefficients = gradient_coefficients(rows, labels, **kwargs, normalize=False)
    for i in (0, 4, 11):
        leaf = rows.clone().requires_grad_(True)
        per_anchor = TCLLoss(normalize=False, reduction="none", **kwargs)(leaf, labels)
        (grad,) = torch.autograd.grad(per_anchor[i], leaf)
        c = coefficients.values[i]
        others = [j for j in range(12) if j != i]
        torch.testing.assert_close(grad[others], c[others, None] * rows[i][None, :])
        from_pos = (c * coefficients.positive[i]) @ rows
        from_neg = (c * coefficients.negative[i]) @ rows
        torch.testing.assert_close(grad[i], from_pos + from_neg)


def test_tcl_strengthens_the_pull_from_positives_and_k2_restores_the_push() -> None:
    rows, labels = anchor_batch([0.9, 0.9, 0.9, -0.5] + [0.0] * 60 + [0.8] * 4, 4)
    supcon = mean_gradient_magnitudes(gradient_coefficients(rows, labels, k1=0.0))
    tcl = mean_gradient_magnitudes(gradient_coefficients(rows, labels, k1=5000.0))
    tcl_k2 = mean_gradient_magnitudes(gradient_coefficients(rows, labels, k1=5000.0, k2=2.0))
    assert tcl["grad_from_positives"] > supcon["grad_from_positives"]
    assert tcl["grad_from_negatives"] < supcon["grad_from_negatives"]
    assert tcl_k2["grad_from_negatives"] > tcl["grad_from_negatives"]


def test_denominator_shares_and_hardest_similarities() -> None:
    rows = torch.eye(4, dtype=torch.float64)  # every similarity 0
    labels = torch.tensor([0, 0, 1, 2])
    shares = denominator_shares(rows, labels, temperature=0.1, k1=2.0, k2=3.0)
    # Anchors 0 and 1: 1 positive, 2 negatives -> terms 1, 2, 3*2 (all e^0): shares 1/9, 2/9, 6/9.
    assert shares["share_positives"] == pytest.approx(1 / 9)
    assert shares["share_k1"] == pytest.approx(2 / 9)
    assert shares["share_negatives"] == pytest.approx(6 / 9)
    assert shares["hardest_positive_similarity"] == 0 and shares["hardest_negative_similarity"] == 0
    assert denominator_shares(rows, labels, k1=0.0)["share_k1"] == 0.0


def test_geometry_hand_computed() -> None:
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    same = torch.tensor([0, 0])
    assert alignment(orthogonal, same) == pytest.approx(2.0)  # ||e1 - e2||^2
    assert uniformity(orthogonal) == pytest.approx(-4.0)  # log exp(-2 * 2)
    assert tolerance(orthogonal, same) == pytest.approx(0.0)
    identical = torch.tensor([[3.0, 4.0], [6.0, 8.0]])  # exactly collinear
    assert alignment(identical, same) == pytest.approx(0.0)
    assert tolerance(identical, same) == pytest.approx(1.0)
    assert uniformity(identical) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"need features \[N, D\]"):
        alignment(torch.randn(3), torch.tensor([0, 0, 0]))
