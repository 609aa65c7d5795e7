"""Dtypes, extreme values, autocast, non-finite inputs: the loss is finite for every finite input."""

from __future__ import annotations

import pytest
import torch

from loss_reference import reference_losses
from tunedcl import NTXentLoss, SupConLoss, TCLLoss

# Inputs are rounded to the dtype first; the reference sees the rounded values in fp64, so the only
# error left is the loss's own arithmetic (fp32 for half inputs).
TOLERANCES = {
    torch.float16: dict(rtol=2e-5, atol=2e-5),
    torch.bfloat16: dict(rtol=2e-5, atol=2e-5),
    torch.float32: dict(rtol=2e-5, atol=2e-5),
    torch.float64: dict(rtol=1e-12, atol=1e-12),
}
OUTPUT_DTYPE = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}
MODULES = {
    "tcl": (TCLLoss(temperature=0.1, k1=5000.0, k2=2.0), dict(loss="tcl", temperature=0.1, k1=5000.0,
                                                             k2=2.0)),
    "supcon": (SupConLoss(temperature=0.1), dict(loss="supcon-out", temperature=0.1)),
    "ntxent": (NTXentLoss(temperature=0.5), dict(loss="ntxent", temperature=0.5)),
}


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("name", sorted(MODULES))
def test_dtype_matrix(dtype: torch.dtype, name: str) -> None:
    module, reference_kwargs = MODULES[name]
    g = torch.Generator().manual_seed(20)
    features = torch.randn(8, 2, 16, generator=g).to(dtype).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4])
    value = module(features, labels)
    assert value.dtype == OUTPUT_DTYPE[dtype]
    per_anchor = reference_losses(features.detach().double(), labels, None, **reference_kwargs)
    expected = per_anchor.sum() / (per_anchor != 0).sum()
    torch.testing.assert_close(value.double(), expected, **TOLERANCES[dtype])
    value.backward()
    assert features.grad.dtype == dtype
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_half_gradients_match_fp64_gradients(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(21)
    base = torch.randn(16, 2, 32, generator=g).to(dtype)
    labels = torch.randint(0, 4, (16,), generator=g)
    low = base.clone().requires_grad_(True)
    high = base.double().requires_grad_(True)
    TCLLoss()(low, labels).backward()
    TCLLoss()(high, labels).backward()
    # The gradient itself is computed in fp32 and rounded once to the input dtype.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(low.grad.double(), high.grad, rtol=4 * eps, atol=4 * eps * high.grad.abs().max())


EXTREMES = {
    "k1=1e8": dict(k1=1e8),
    "tau=0.01": dict(temperature=0.01),
    "tau=0.01,k1=1e8,tempered": dict(temperature=0.01, k1=1e8, k1_uses_temperature=True),
    "k2=1e-6": dict(k2=1e-6),
    "k2=1e6": dict(k2=1e6),
}


@pytest.mark.parametrize("setting", sorted(EXTREMES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
@pytest.mark.parametrize("normalize", [True, False])
def test_extremes_stay_finite(setting: str, dtype: torch.dtype, scale: float, normalize: bool) -> None:
    g = torch.Generator().manual_seed(22)
    base = (torch.randn(12, 2, 8, generator=g) * scale).to(dtype)
    base[0, 0] = base[1, 1]  # an exact duplicate across samples
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7])
    loss = TCLLoss(normalize=normalize, **EXTREMES[setting])
    features = base.clone().requires_grad_(True)
    value = loss(features, labels)
    value.backward()
    assert torch.isfinite(value), value
    # The gradient is computed in fp32 and rounded to the input dtype once: it is finite wherever that
    # fp32 gradient fits the dtype (without normalisation at tau = 0.01 and |x| = 1e4 single entries
    # reach ~1e6, beyond fp16's 65504, and no implementation can return them in fp16).
    wide = base.float().requires_grad_(True)
    loss(wide, labels).backward()
    assert torch.isfinite(wide.grad).all()
    representable = wide.grad.abs() < torch.finfo(dtype).max
    assert torch.isfinite(features.grad[representable]).all()
    torch.testing.assert_close(features.grad.float()[representable], wide.grad[representable].to(dtype).float())
    if normalize:  # well conditioned: the value also agrees with fp64 arithmetic on the same inputs
        torch.testing.assert_close(value.double(), loss(base.double(), labels), rtol=1e-4, atol=1e-4)


def test_largest_half_values_without_normalisation_stay_finite() -> None:
    half = torch.full((4, 2, 8), 65504.0, dtype=torch.float16)
    half[::2] *= -1
    loss = TCLLoss(normalize=False, temperature=0.01, k1=1e8)
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.isfinite(loss(half, labels))
    # Its gradient (~6.5e6 per entry) only fits an fp32 leaf: check it there.
    leaf = half.float().requires_grad_(True)
    loss(leaf, labels).backward()
    assert torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("loss", [TCLLoss(), SupConLoss(), SupConLoss(variant="in"), NTXentLoss()])
def test_zero_vectors_and_no_negatives_stay_finite(loss: torch.nn.Module) -> None:
    features = torch.zeros(4, 2, 8, requires_grad=True)
    value = loss(features, torch.zeros(4, dtype=torch.long))  # one class: no negatives at all
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(features.grad).all()


def test_half_overflow_that_breaks_the_naive_formula_is_handled() -> None:
    """The reference code's exp-then-sum in fp16 overflows at these logits; ours does not."""
    features = torch.randn(32, 2, 16).half()
    z = torch.nn.functional.normalize(features.reshape(64, 16), dim=1)
    naive_denominator = torch.exp(z @ z.T / 0.01).sum(1)  # what an fp16 implementation would do
    assert not torch.isfinite(naive_denominator).all()
    assert torch.isfinite(TCLLoss(temperature=0.01)(features, torch.randint(0, 3, (32,))))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_enclosing_autocast_does_not_lower_precision(dtype: torch.dtype) -> None:
    features = torch.randn(16, 2, 64)
    labels = torch.randint(0, 4, (16,))
    outside = TCLLoss()(features, labels)
    with torch.autocast(device_type="cpu", dtype=dtype):
        inside = TCLLoss()(features, labels)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_raise_and_count_rows(bad: float) -> None:
    features = torch.randn(5, 2, 4)
    features[1, 0, 2] = bad
    features[3, 1, 0] = bad
    features[3, 1, 1] = bad  # same row twice: still one bad row
    with pytest.raises(ValueError, match=r"2 of 10 rows"):
        TCLLoss()(features)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [0, None])
def test_every_magnitude_from_1e_minus_30_to_1e30_gives_the_fp64_value(dtype: torch.dtype, chunk_size) -> None:
    """Rows of any finite magnitude are normalised exactly: the squared norm of a 1e30 row (or a 1e-30 one)
    would overflow (underflow) fp32, which once turned such rows into zero vectors."""
    from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss

    g = torch.Generator().manual_seed(3)
    for _ in range(40):
        scales = 10 ** (torch.rand(10, 1, 1, generator=g, dtype=torch.float64) * 60 - 30)
        features = (torch.randn(10, 2, 6, generator=g, dtype=torch.float64) * scales).to(dtype)
        labels = torch.randint(0, 3, (10,), generator=g)
        for loss in (tcl_loss, supcon_loss, ntxent_loss):
            got = loss(features, labels, chunk_size=chunk_size, reduction="none")
            expected = loss(features.double(), labels, chunk_size=chunk_size, reduction="none")
            torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_unnormalised_rows_whose_similarities_overflow_are_refused() -> None:
    from tunedcl.losses.functional import tcl_loss

    with pytest.raises(ValueError, match=r"features with normalize=False must have row norms below .* the largest"):
        tcl_loss(torch.randn(4, 2, 8) * 1e30, normalize=False)
    assert torch.isfinite(tcl_loss(torch.randn(4, 2, 8) * 1e3, normalize=False))
