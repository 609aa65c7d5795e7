"""Every bad input gives a ValueError naming the argument, the value given and what is allowed."""

from __future__ import annotations

import doctest

import pytest
import torch

import tunedcl
from tunedcl import NTXentLoss, SupConLoss, TCLLoss, create_loss, list_losses
from tunedcl.losses import ntxent, supcon, tcl
from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss

BAD_CONSTRUCTOR_ARGUMENTS = [
    (TCLLoss, dict(temperature=0.0), r"temperature must be a finite number > 0; got 0\.0"),
    (TCLLoss, dict(temperature=-0.1), r"temperature must be .*> 0; got -0\.1"),
    (TCLLoss, dict(temperature=float("nan")), r"temperature must be a finite number"),
    (TCLLoss, dict(temperature="0.1"), r"temperature must be .*got '0\.1' \(str\)"),
    (TCLLoss, dict(k1=-1.0), r"k1 must be a finite number >= 0; got -1\.0"),
    (TCLLoss, dict(k1=float("inf")), r"k1 must be a finite number >= 0; got inf"),
    (TCLLoss, dict(k2=0.0), r"k2 must be a finite number > 0; got 0\.0"),
    (TCLLoss, dict(k2=-2), r"k2 must be a finite number > 0; got -2"),
    (TCLLoss, dict(k1_uses_temperature=1), r"k1_uses_temperature must be True or False; got 1"),
    (TCLLoss, dict(normalize="yes"), r"normalize must be True or False; got 'yes'"),
    (TCLLoss, dict(reduction="avg"), r"reduction must be one of 'mean', 'sum', 'none'; got 'avg'"),
    (SupConLoss, dict(variant="both"), r"variant must be one of 'out', 'in'; got 'both'"),
    (SupConLoss, dict(temperature=0), r"temperature must be .*> 0; got 0"),
    (SupConLoss, dict(reduction=None), r"reduction must be one of .*got None"),
    (NTXentLoss, dict(temperature=-1.0), r"temperature must be .*got -1\.0"),
    (NTXentLoss, dict(reduction="max"), r"reduction must be one of .*got 'max'"),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD_CONSTRUCTOR_ARGUMENTS)
def test_bad_constructor_arguments(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize("fn", [tcl_loss, supcon_loss, ntxent_loss])
def test_functional_twins_validate_too(fn) -> None:
    with pytest.raises(ValueError, match=r"temperature must be"):
        fn(torch.randn(4, 2, 3), temperature=-1.0)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        fn(torch.randn(4, 2, 3), reduction="avg")


def test_module_attributes_changed_after_construction_are_still_checked() -> None:
    loss = TCLLoss()
    loss.k1 = -5.0
    with pytest.raises(ValueError, match=r"k1 must be .*got -5\.0"):
        loss(torch.randn(4, 2, 3))


BAD_CALLS = [
    (lambda: torch.randn(8).tolist(), None, None, r"features must be a torch\.Tensor; got list"),
    (lambda: torch.randn(8), None, None, r"2 dimensions \[N, D\] or 3 dimensions \[B, V, D\]; got 1 "),
    (lambda: torch.randn(2, 3, 4, 5), None, None, r"got 4 dimensions with shape \[2, 3, 4, 5\]"),
    (lambda: torch.randint(0, 5, (4, 3)), torch.arange(4), None, r"floating-point tensor; got dtype torch\.int64"),
    (lambda: torch.randn(0, 3), torch.zeros(0, dtype=torch.long), None, r"must not be empty; got shape \[0, 3\]"),
    (lambda: torch.randn(6, 3), torch.arange(5), None, r"labels must have shape \[6\] for features \[N, D\] = \[6, 3\]; got shape \[5\]"),
    (lambda: torch.randn(4, 2, 3), torch.arange(8), None, r"labels must have shape \[4\] for features \[B, V, D\] = \[4, 2, 3\]; got shape \[8\]"),
    (lambda: torch.randn(6, 3), torch.arange(6).reshape(2, 3), None, r"labels must have shape \[6\].*got shape \[2, 3\]"),
    (lambda: torch.randn(6, 3), torch.rand(6), None, r"labels must have an integer or bool dtype .*got dtype torch\.float32"),
    (lambda: torch.randn(6, 3), [0, 1, 0, 1, 0, 1], None, r"labels must be a torch\.Tensor or None; got list"),
    (lambda: torch.randn(6, 3), None, torch.ones(5, 5, dtype=torch.bool), r"mask must have shape \[6, 6\] for features \[N, D\] = \[6, 3\]; got shape \[5, 5\]"),
    (lambda: torch.randn(3, 2, 4), None, torch.ones(6, 6, dtype=torch.bool), r"mask must have shape \[3, 3\] for features \[B, V, D\]"),
    (lambda: torch.randn(3, 4), None, torch.full((3, 3), 0.5), r"mask must be boolean, or numeric with values 0 and 1 only"),
    (lambda: torch.randn(3, 4), None, [[True] * 3] * 3, r"mask must be a boolean torch\.Tensor or None; got list"),
    (lambda: torch.randn(4, 3), torch.arange(4), torch.eye(4, dtype=torch.bool), r"labels and mask were both given"),
    (lambda: torch.randn(6, 3), None, None, r"labels=None and mask=None has no positives.*V >= 2"),
    (lambda: torch.randn(6, 1, 3), None, None, r"labels=None and mask=None has no positives"),
]


@pytest.mark.parametrize("loss", [TCLLoss(), SupConLoss(), NTXentLoss()], ids=["tcl", "supcon", "ntxent"])
@pytest.mark.parametrize("features,labels,mask,message", BAD_CALLS)
def test_bad_calls(loss, features, labels, mask, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loss(features(), labels, mask)


def test_registry_builds_every_loss_and_refuses_unknowns() -> None:
    assert {"ntxent", "supcon", "tcl"} <= set(list_losses()) and list_losses() == sorted(list_losses())
    assert isinstance(create_loss("tcl", k1=50.0), TCLLoss)
    assert create_loss("tcl", k1=50.0).k1 == 50.0
    assert isinstance(create_loss("supcon", variant="in"), SupConLoss)
    assert isinstance(create_loss("simclr"), NTXentLoss)
    with pytest.raises(ValueError, match=r"unknown loss 'triplet'; known losses: .*ntxent, .*supcon, .*tcl"):
        create_loss("triplet")
    with pytest.raises(ValueError, match=r"tcl loss got unknown argument\(s\) k3; allowed: temperature, k1"):
        create_loss("tcl", k3=1.0)
    with pytest.raises(ValueError, match=r"k1 must be"):
        create_loss("tcl", k1=-1)


def test_public_api_is_reexported() -> None:
    for name in ("TCLLoss", "SupConLoss", "NTXentLoss", "create_loss", "list_losses", "__version__"):
        assert hasattr(tunedcl, name)


@pytest.mark.parametrize("module", [tcl, supcon, ntxent])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0
