"""Argument checks for every layer, with one message format: the argument, what is allowed, what was given.

    >>> check_int("batch_size", 0, low=1)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be an integer >= 1; got 0 (int)

An ``owner`` prefixes the message with where the argument belongs (``ProjectionHead: out_dim must be ...``),
so that a typo in a config file is reported in the terms the user wrote, not as a shape error deep inside
torch. Tensors are described by dtype and shape, never printed whole. ``bool`` is refused wherever a number
is expected (``True`` as a batch size is always a mistake), and ``0``/``1`` or strings wherever a bool is.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

import torch

__all__ = [
    "bad_argument",
    "check_bool",
    "check_choice",
    "check_int",
    "check_probability",
    "check_real",
    "describe",
]


def describe(value: object) -> str:
    """``value`` as an error message shows it: repr and type (``'0.1' (str)`` is then plain to see), dtype and
    shape for tensors."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if value is None:
        return "None"
    return f"{value!r} ({type(value).__name__})"


def bad_argument(name: str, value: object, allowed: str, owner: str | None = None) -> ValueError:
    """The one error shape: ``[owner: ]name must be <allowed>; got <value>``."""
    prefix = f"{owner}: " if owner else ""
    return ValueError(f"{prefix}{name} must be {allowed}; got {describe(value)}")


def check_bool(name: str, value: object, owner: str | None = None) -> bool:
    """``value`` if it is a bool (0/1 and strings such as "false" are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise bad_argument(name, value, "True or False", owner)
    return value


def check_int(
    name: str,
    value: object,
    *,
    low: int | None = None,
    high: int | None = None,
    allow_none: bool = False,
    owner: str | None = None,
    hint: str = "",
) -> int | None:
    """``value`` as an int if it is an integer in ``[low, high]`` (None too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, Integral) and not isinstance(value, bool)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        raise bad_argument(name, value, _bounds("an integer", low, True, high, True, allow_none, hint), owner)
    return int(value)  # type: ignore[arg-type]


def check_real(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    low_inclusive: bool = True,
    high: float = math.inf,
    high_inclusive: bool = True,
    allow_none: bool = False,
    owner: str | None = None,
    hint: str = "",
) -> float | None:
    """``value`` as a float if it is a finite real number within the bounds (None too with ``allow_none``)."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        number = float(value)  # type: ignore[arg-type]
        above = number >= low if low_inclusive else number > low
        ok = above and (number <= high if high_inclusive else number < high)
    if not ok:
        allowed = _bounds("a finite number", low, low_inclusive, high, high_inclusive, allow_none, hint)
        raise bad_argument(name, value, allowed, owner)
    return float(value)  # type: ignore[arg-type]


def check_probability(name: str, value: object, owner: str | None = None) -> float:
    """``value`` as a float if it is a number in [0, 1] (the chance that a random step happens)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0  # NaN fails too
    if not ok:
        raise bad_argument(name, value, "a probability in [0, 1]", owner)
    return float(value)  # type: ignore[arg-type]


def check_choice(name: str, value: object, choices: Collection[object], owner: str | None = None) -> object:
    """``value`` if it is one of ``choices``."""
    if isinstance(value, bool) or value not in choices or type(value) is not type(_matching(value, choices)):
        allowed = ", ".join("None" if c is None else repr(c) for c in choices)
        raise bad_argument(name, value, f"one of {allowed}", owner)
    return value


def _matching(value: object, choices: Collection[object]) -> object:
    # ``1 in (True, ...)`` and ``1.0 in (1, ...)`` are true in Python; the type must match as well.
    return next(c for c in choices if c == value)


def _bounds(
    kind: str, low: float | None, low_inclusive: bool, high: float | None, high_inclusive: bool, allow_none: bool,
    hint: str,
) -> str:
    parts = []
    if low is not None and low != -math.inf:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None and high != math.inf:
        parts.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    text = kind + (" " + " and ".join(parts) if parts else "")
    if allow_none:
        text += ", or None"
    return text + (f" ({hint})" if hint else "")
