"""The chunked path against the dense path: any chunk size, saved or recomputed logits, repeated
backward, bf16 similarities, and the argument checks of the path options."""

from __future__ import annotations

import pytest
import torch

from loss_cases import BY_NAME
from test_losses_values import LAYOUTS, make_case
from tunedcl import TCLLoss
from tunedcl.losses.chunked import per_anchor_chunked
from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss
from tunedcl.losses.inputs import prepare
from tunedcl.losses.tcl import TCLKernel

FAMILIES = BY_NAME  # the shared table (tests/loss_cases.py): one row per family


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk_size", [1, 2, 5, 1000])
def test_chunked_equals_dense_fp32(name: str, layout: str, chunk_size: int) -> None:
    features, labels, mask = make_case(layout, seed=40)
    dense_leaf = features.clone().requires_grad_(True)
    chunk_leaf = features.clone().requires_grad_(True)
    weights = torch.rand(features.numel() // features.shape[-1], generator=torch.Generator().manual_seed(1))
    dense = FAMILIES[name](dense_leaf, labels, mask, chunk_size=0, reduction="none")
    chunked = FAMILIES[name](chunk_leaf, labels, mask, chunk_size=chunk_size, reduction="none")
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=1e-5)
    (dense * weights).sum().backward()
    (chunked * weights).sum().backward()
    torch.testing.assert_close(chunk_leaf.grad, dense_leaf.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("save_logits_bytes", [0, 2**40])
def test_saved_and_recomputed_logits_give_the_same_gradients(save_logits_bytes: int) -> None:
    features, labels, _ = make_case("labels-v2", seed=41)
    batch = prepare(features.double(), labels, None)
    z = torch.nn.functional.normalize(batch.rows, dim=1).requires_grad_(True)
    ids, index = batch.positives.ids, torch.arange(z.shape[0])
    kernel = TCLKernel(0.1, 5000.0, 2.0, False)
    losses, _ = per_anchor_chunked(z, z, ids, ids, index, batch.positives, 0.1, kernel, chunk_size=3,
                                   save_logits_bytes=save_logits_bytes)
    (grad,) = torch.autograd.grad(losses.sum(), z)
    reference = z.detach().clone().requires_grad_(True)
    expected = tcl_loss(reference, labels.repeat_interleave(2), normalize=False, k2=2.0, chunk_size=0,
                        reduction="sum")
    (expected_grad,) = torch.autograd.grad(expected, reference)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_backward_twice_with_retain_graph_accumulates_exactly(chunk_size: int | None) -> None:
    features, labels, _ = make_case("labels-v3", seed=42)
    leaf = features.double().requires_grad_(True)
    loss = tcl_loss(leaf, labels, chunk_size=chunk_size)
    loss.backward(retain_graph=True)
    once = leaf.grad.clone()
    loss.backward()
    torch.testing.assert_close(leaf.grad, 2 * once)


def test_large_batch_matches_dense_in_float64() -> None:
    g = torch.Generator().manual_seed(43)
    features = torch.randn(300, 2, 32, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 20, (300,), generator=g)
    dense = tcl_loss(features, labels, chunk_size=0)
    for chunk_size in (None, 7, 64):
        torch.testing.assert_close(tcl_loss(features, labels, chunk_size=chunk_size), dense, rtol=1e-12, atol=0)


@pytest.mark.parametrize("chunk_size", [0, None])
def test_bf16_similarities_stay_close_and_finite(chunk_size: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tunedcl.hardware.fast_bf16", lambda device: True)  # the bf16 path on every CPU
    g = torch.Generator().manual_seed(44)
    features = torch.randn(256, 2, 128, generator=g)
    labels = torch.randint(0, 10, (256,), generator=g)
    exact_leaf, low_leaf = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    exact = TCLLoss(chunk_size=chunk_size)(exact_leaf, labels)
    low = TCLLoss(chunk_size=chunk_size, similarity_dtype=torch.bfloat16)(low_leaf, labels)
    assert low.dtype == torch.float32
    # bf16 keeps 8 bits of mantissa: similarities are off by ~2^-9, logits by ~2^-9 / tau.
    assert abs(low.item() - exact.item()) < 5e-3 * exact.item()
    exact.backward()
    low.backward()
    assert torch.isfinite(low_leaf.grad).all()
    cosine = torch.nn.functional.cosine_similarity(low_leaf.grad.flatten(), exact_leaf.grad.flatten(), dim=0)
    assert cosine > 0.99


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(chunk_size=-1), r"chunk_size must be None \(automatic\), 0 \(dense autograd path\) or an integer >= 1 .*got -1"),
        (dict(chunk_size=2.5), r"chunk_size must be .*got 2\.5 \(float\)"),
        (dict(similarity_dtype=torch.int8), r"similarity_dtype must be None, torch\.bfloat16, torch\.float16 or torch\.float32"),
        (dict(similarity_dtype="half"), r"similarity_dtype must be .*got 'half'"),
        (dict(gather_distributed=1), r"gather_distributed must be True or False; got 1"),
    ],
)
def test_bad_path_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TCLLoss(**kwargs)
    with pytest.raises(ValueError, match=message):
        tcl_loss(torch.randn(4, 2, 3), **kwargs)


def test_similarity_dtype_accepts_names() -> None:
    assert TCLLoss(similarity_dtype="bfloat16").similarity_dtype == torch.bfloat16


def test_gather_distributed_without_process_group_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"gather_distributed=True needs torch.distributed to be initialised"):
        TCLLoss(gather_distributed=True)(torch.randn(4, 2, 3))


AT_TAU_001 = {
    "tcl": lambda f, lab, **kw: tcl_loss(f, lab, temperature=0.01, k1=5000.0, k2=2.0, **kw),
    "tcl-tempered": lambda f, lab, **kw: tcl_loss(f, lab, temperature=0.01, k1=1e-30, k1_uses_temperature=True, **kw),
    "supcon-out": lambda f, lab, **kw: supcon_loss(f, lab, temperature=0.01, **kw),
    "supcon-in": lambda f, lab, **kw: supcon_loss(f, lab, temperature=0.01, variant="in", **kw),
    "ntxent": lambda f, lab, **kw: ntxent_loss(f, lab, temperature=0.01, **kw),
}


@pytest.mark.parametrize("name", sorted(AT_TAU_001))
def test_a_dominant_positive_does_not_push_the_negatives_into_underflow(name: str) -> None:
    """tau = 0.01, one positive at s = 1 (logit 100) and everything else at s = -0.2 (logit -20): a row
    shift taken over the positives too would underflow every negative term (found in review)."""
    sims = [1.0, -0.2] + [-0.2] * 100
    rows = torch.zeros(len(sims) + 1, 2)  # fp32: exp(-120) underflows there (not in fp64)
    rows[0, 0] = 1.0
    for j, s in enumerate(sims, start=1):
        rows[j] = torch.tensor([s, (1 - s * s) ** 0.5])
    labels = torch.tensor([0, 0, 0] + list(range(1, 101)))
    results = []
    for chunk_size in (0, None):
        leaf = rows.clone().requires_grad_(True)
        values = AT_TAU_001[name](leaf, labels, chunk_size=chunk_size, reduction="none", normalize=False)
        values[0].backward()
        results.append((values.detach(), leaf.grad))
    (dense, dense_grad), (chunked, chunked_grad) = results
    assert torch.isfinite(chunked).all() and torch.isfinite(chunked_grad).all()
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked_grad, dense_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [0, None])
def test_bf16_similarities_fall_back_to_fp32_where_bf16_is_emulated(
    chunk_size: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU without AVX512-BF16 / AMX, bf16 similarities are emulated (21x slower than fp32 on an AVX2
    EPYC): the loss warns once and computes in fp32, so its value is the fp32 one exactly."""
    import warnings

    from tunedcl import hardware

    g = torch.Generator().manual_seed(45)
    features = torch.randn(64, 2, 16, generator=g)
    labels = torch.randint(0, 5, (64,), generator=g)
    exact = TCLLoss(chunk_size=chunk_size)(features, labels)
    monkeypatch.setattr(hardware, "fast_bf16", lambda device: True)
    assert TCLLoss(chunk_size=chunk_size, similarity_dtype=torch.bfloat16)(features, labels) != exact  # bf16 used
    monkeypatch.setattr(hardware, "fast_bf16", lambda device: False)
    monkeypatch.setattr(hardware, "_warned", set())
    with pytest.warns(RuntimeWarning, match=r"similarity_dtype=torch.bfloat16 on cpu: this device has no "
                                            r"AVX512-BF16 or AMX.*float32 instead"):
        fallback = TCLLoss(chunk_size=chunk_size, similarity_dtype=torch.bfloat16)(features, labels)
    assert fallback == exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per device type and dtype, not at every step
        TCLLoss(chunk_size=chunk_size, similarity_dtype=torch.bfloat16)(features, labels)
