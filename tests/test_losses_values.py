"""Loss values against the loop-by-loop reference, the degenerate identities and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from loss_cases import CASES
from loss_reference import reference_losses
from tunedcl import NTXentLoss, SupConLoss, TCLLoss
from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss

# Layouts: (name, features shape, how positives are given). Labels include singleton classes.
LAYOUTS = ["labels-2d", "labels-v1", "labels-v2", "labels-v3", "instance-v2", "instance-v3",
           "mask-2d", "mask-3d"]


def make_case(layout: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    if layout == "labels-2d":
        features = torch.randn(11, 6, generator=g)
        labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 4, 4, 1, 5])  # 3, 5 are singletons
        return features, labels, None
    if layout.startswith("labels-v"):
        views = int(layout[-1])
        features = torch.randn(6, views, 5, generator=g)
        labels = torch.tensor([3, 1, 3, 7, 1, 2])  # 7 and 2 are singletons
        return features, labels, None
    if layout.startswith("instance-v"):
        views = int(layout[-1])
        return torch.randn(5, views, 7, generator=g), None, None
    if layout == "mask-2d":
        features = torch.randn(9, 4, generator=g)
        mask = torch.rand(9, 9, generator=g) < 0.3
        mask = mask | mask.T
        mask[4, :] = False  # row 4 has no positive
        mask[:, 4] = False
        return features, None, mask
    if layout == "mask-3d":
        features = torch.randn(5, 2, 6, generator=g)
        mask = torch.rand(5, 5, generator=g) < 0.4  # deliberately not symmetric
        return features, None, mask
    raise ValueError(layout)


TCL_SETTINGS = [  # (tau, k1, k2)
    (0.1, 5000.0, 1.0),
    (0.1, 0.0, 1.0),
    (0.5, 10.0, 3.0),
    (0.07, 1e5, 0.5),
    (1.0, 1.0, 1.0),
    (0.2, 50000.0, 2.0),
]


# chunk_size 0 is the dense autograd path, None the automatic chunked path, 4 small chunks.
PATHS = [0, None, 4]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tau,k1,k2", TCL_SETTINGS)
@pytest.mark.parametrize("tempered", [False, True])
@pytest.mark.parametrize("chunk_size", PATHS)
def test_tcl_matches_reference(layout: str, tau: float, k1: float, k2: float, tempered: bool,
                               chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout)
    features = features.double()
    kwargs = dict(temperature=tau, k1=k1, k2=k2, k1_uses_temperature=tempered, chunk_size=chunk_size)
    expected = reference_losses(features, labels, mask, loss="tcl", temperature=tau, k1=k1, k2=k2,
                                k1_uses_temperature=tempered)
    got = tcl_loss(features, labels, mask, reduction="none", **kwargs)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("chunk_size", PATHS)
def test_supcon_matches_reference(layout: str, variant: str, tau: float, chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout, seed=1)
    features = features.double()
    expected = reference_losses(features, labels, mask, loss=f"supcon-{variant}", temperature=tau)
    got = supcon_loss(features, labels, mask, temperature=tau, variant=variant, reduction="none",
                      chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("chunk_size", PATHS)
def test_ntxent_matches_reference(layout: str, tau: float, chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout, seed=2)
    features = features.double()
    expected = reference_losses(features, labels, mask, loss="ntxent", temperature=tau)
    got = ntxent_loss(features, labels, mask, temperature=tau, reduction="none", chunk_size=chunk_size)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk_size", PATHS)
def test_every_case_of_the_shared_table_matches_its_equation(case, layout: str, chunk_size: int | None) -> None:
    features, labels, mask = make_case(layout, seed=12)
    features = features.double()
    got = case(features, labels, mask, reduction="none", chunk_size=chunk_size)
    torch.testing.assert_close(got, case.reference(features, labels, mask), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reductions_are_consistent(layout: str) -> None:
    features, labels, mask = make_case(layout, seed=3)
    per_anchor = tcl_loss(features, labels, mask, reduction="none")
    expected_rows = features.shape[0] * (features.shape[1] if features.ndim == 3 else 1)
    assert per_anchor.shape == (expected_rows,)
    reference = reference_losses(features.double(), labels, mask, loss="tcl", temperature=0.1,
                                 k1=5000.0)
    has_positive = torch.tensor([bool(v != 0) for v in reference])
    torch.testing.assert_close(tcl_loss(features, labels, mask, reduction="sum"), per_anchor.sum())
    torch.testing.assert_close(
        tcl_loss(features, labels, mask), per_anchor.sum() / has_positive.sum()
    )


def test_rows_are_sample_major_for_views() -> None:
    features, labels, _ = make_case("labels-v3")
    as_views = tcl_loss(features, labels, reduction="none")
    flat = tcl_loss(features.reshape(-1, features.shape[-1]), labels.repeat_interleave(3),
                    reduction="none")
    torch.testing.assert_close(as_views, flat)


def test_instance_identity_equals_instance_labels_and_diagonal_mask() -> None:
    features = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(4))
    by_identity = tcl_loss(features, reduction="none")
    by_labels = tcl_loss(features, torch.arange(6), reduction="none")
    by_mask = tcl_loss(features, mask=torch.eye(6, dtype=torch.bool), reduction="none")
    by_empty_mask = tcl_loss(features, mask=torch.zeros(6, 6, dtype=torch.bool), reduction="none")
    torch.testing.assert_close(by_identity, by_labels)
    torch.testing.assert_close(by_identity, by_mask)
    torch.testing.assert_close(by_identity, by_empty_mask)


def test_float_01_mask_is_accepted_like_bool() -> None:
    features, _, mask = make_case("mask-2d")
    torch.testing.assert_close(tcl_loss(features, mask=mask.float()), tcl_loss(features, mask=mask))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_tcl_with_k1_0_k2_1_is_supcon_out(layout: str) -> None:
    features, labels, mask = make_case(layout, seed=5)
    for tau in (0.05, 0.1, 0.7):
        tcl = tcl_loss(features, labels, mask, temperature=tau, k1=0.0, k2=1.0, reduction="none")
        supcon = supcon_loss(features, labels, mask, temperature=tau, reduction="none")
        torch.testing.assert_close(tcl, supcon, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_two_view_instance_losses_coincide_with_simclr(tau: float) -> None:
    """With one positive per anchor, NT-Xent, SupCon L_out, L_in and TCL(0, 1) are the same loss."""
    views = torch.randn(9, 2, 16, generator=torch.Generator().manual_seed(6))
    ntxent = ntxent_loss(views, temperature=tau, reduction="none")
    for other in (
        supcon_loss(views, temperature=tau, reduction="none"),
        supcon_loss(views, temperature=tau, variant="in", reduction="none"),
        tcl_loss(views, temperature=tau, k1=0.0, k2=1.0, reduction="none"),
    ):
        torch.testing.assert_close(other, ntxent, rtol=0, atol=1e-6)


def test_ntxent_two_view_closed_form() -> None:
    """SimCLR's definition, written with an explicit [2B, 2B] softmax over z = cat(view0, view1)."""
    tau, batch = 0.5, 7
    views = torch.randn(batch, 2, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    z = torch.nn.functional.normalize(torch.cat([views[:, 0], views[:, 1]]), dim=1)
    logits = z @ z.T / tau
    logits.fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)])
    expected = torch.nn.functional.cross_entropy(logits, partner)
    torch.testing.assert_close(NTXentLoss(temperature=tau)(views), expected)


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_collapsed_embeddings_closed_forms(tau: float) -> None:
    batch, views = 8, 2
    n = batch * views
    features = torch.ones(batch, views, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3])
    # SupCon L_out and L_in: every logit is 1/tau, so L = ln(N - 1).
    for variant in ("out", "in"):
        value = SupConLoss(temperature=tau, variant=variant)(features, labels)
        torch.testing.assert_close(value, torch.tensor(math.log(n - 1), dtype=torch.float64))
    # NT-Xent, instance positives, 2 views: ln(2B - 1).
    torch.testing.assert_close(
        NTXentLoss(temperature=tau)(features), torch.tensor(math.log(2 * batch - 1), dtype=torch.float64)
    )
    # TCL: D = |P| e^{1/tau} + k1 |P| e^{-1} + k2 |N| e^{1/tau}, L = ln D - 1/tau, per anchor.
    k1, k2 = 5000.0, 2.0
    per_anchor = TCLLoss(temperature=tau, k1=k1, k2=k2, reduction="none")(features, labels)
    n_pos = (torch.bincount(labels)[labels] * views - 1).repeat_interleave(views).double()
    n_neg = n - 1 - n_pos
    expected = torch.log(
        n_pos * math.exp(1 / tau) + k1 * n_pos * math.exp(-1) + k2 * n_neg * math.exp(1 / tau)
    ) - 1 / tau
    torch.testing.assert_close(per_anchor, expected)


def test_orthogonal_embeddings_closed_form() -> None:
    """Orthonormal rows: every similarity is 0, so TCL is ln(|P| + k1|P| + k2|N|) exactly."""
    n, k1, k2 = 6, 100.0, 3.0
    features = torch.eye(n, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    per_anchor = TCLLoss(temperature=0.1, k1=k1, k2=k2, reduction="none")(features, labels)
    n_pos = torch.tensor([2, 2, 2, 1, 1, 0], dtype=torch.float64)
    expected = torch.where(n_pos > 0, torch.log(n_pos + k1 * n_pos + k2 * (n - 1 - n_pos)), 0.0)
    torch.testing.assert_close(per_anchor, expected)


def test_k1_term_raises_the_loss_and_k2_scales_negatives() -> None:
    features, labels, _ = make_case("labels-v2", seed=8)
    base = TCLLoss(k1=0.0)(features, labels)
    assert TCLLoss(k1=5000.0)(features, labels) > base
    assert TCLLoss(k1=0.0, k2=3.0)(features, labels) > base
    assert TCLLoss(k1=0.0, k2=0.3)(features, labels) < base


def test_normalize_false_uses_raw_dot_products() -> None:
    features, labels, _ = make_case("labels-2d", seed=9)
    features = features.double() * 0.3
    expected = reference_losses(features, labels, None, loss="tcl", temperature=0.1, k1=5000.0,
                                normalize=False)
    got = tcl_loss(features, labels, normalize=False, reduction="none")
    torch.testing.assert_close(got, expected)
