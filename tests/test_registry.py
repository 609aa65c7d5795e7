"""The one Registry class and the one argument-check module: lookup, aliases, did-you-mean, listing, messages."""

from __future__ import annotations

import doctest

import pytest

import tunedcl._checks
import tunedcl.methods
import tunedcl.registry
from tunedcl._checks import check_choice, check_int, check_real
from tunedcl.registry import Registry, first_line


def test_register_look_up_alias_list_and_remove() -> None:
    shapes: Registry = Registry("shape")

    @shapes.register("square", aliases=("box",))
    def square() -> str:
        """Four equal sides.

        More text that is not the description."""
        return "square"

    shapes.add("circle", object(), description="round")
    assert shapes.get("Square") is square and shapes.get("BOX") is square and shapes.key("box") == "square"
    assert shapes.names() == ["circle", "square"] and "box" in shapes and len(shapes) == 2
    assert shapes.describe() == [("circle", "round"), ("square", "Four equal sides.")]
    with pytest.raises(ValueError, match=r"a shape named 'box' is already registered"):
        shapes.add("box", object())
    with pytest.raises(ValueError, match=r"unknown shape 'sqaure'; did you mean 'square'\? known shapes: circle, square"):
        shapes.get("sqaure")
    with pytest.raises(ValueError, match=r"unknown shape 'triangle'; known shapes: circle, square"):
        shapes.get("triangle")
    with pytest.raises(ValueError, match=r"unknown shape None"):
        shapes.get(None)
    assert shapes.remove("box") is square and shapes.names() == ["circle"] and "box" not in shapes


def test_a_description_is_the_first_sentence_of_the_first_paragraph() -> None:
    assert first_line("\n  One line. Then more.\n  Second line.\n\n  Body.") == "One line."
    assert first_line("Wraps over\n two lines, no stop") == "Wraps over two lines, no stop"
    assert first_line(None) == ""


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: check_int("batch_size", 0, low=1), r"^batch_size must be an integer >= 1; got 0 \(int\)$"),
        (lambda: check_int("k", True, low=1), r"^k must be an integer >= 1; got True \(bool\)$"),
        (lambda: check_real("lr", float("nan"), low=0.0, low_inclusive=False), r"^lr must be a finite number > 0; got nan"),
        (lambda: check_real("p", 1.5, low=0.0, high=1.0, owner="Jitter"), r"^Jitter: p must be a finite number >= 0 and <= 1"),
        (lambda: check_choice("mode", 1, ("a", True)), r"^mode must be one of 'a', True; got 1 \(int\)$"),
        (lambda: check_int("n", None, low=0), r"^n must be an integer >= 0; got None$"),
    ],
)
def test_one_message_format(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("module", [tunedcl.registry, tunedcl._checks, tunedcl.methods])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, raise_on_error=False, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_tunedcl_list_shows_each_method_s_hyperparameters_with_their_default() -> None:
    from tunedcl.listing import listing

    lines = listing("methods")
    tcl = lines.index(next(line for line in lines if line.strip().startswith("tcl ")))
    assert "temperature=0.1, k1=5000.0, k2=1.0" in lines[tcl + 1]
    assert any("off_diagonal_weight=0.0051" in line for line in listing("methods"))
    assert any("stem='cifar', width=1.0" in line for line in listing("models"))
