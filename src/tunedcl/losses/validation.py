"""Argument checks shared by every loss: one place for the error messages users see.

Every check raises ``ValueError`` naming the argument, the value given and what is allowed, so that a
mistake is reported where it is made instead of surfacing as a shape error deep inside torch.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Real

REDUCTIONS = ("mean", "sum", "none")


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_real(name: str, value: object, *, low: float, low_inclusive: bool) -> float:
    """Return ``value`` as a float if it is a finite real number above ``low``; raise otherwise."""
    allowed = f"a finite number {'>=' if low_inclusive else '>'} {low:g}"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be {allowed}; got {_describe(value)}")
    number = float(value)
    too_low = number < low if low_inclusive else number <= low
    if not math.isfinite(number) or too_low:
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return number


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``; raise otherwise."""
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {_describe(value)}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool; raise otherwise (0/1 and strings are refused: they hide typos)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {_describe(value)}")
    return value


def check_optional_positive_int(name: str, value: object) -> int | None:
    """Return ``value`` if it is None or an int >= 1; raise otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be None or an integer >= 1; got {_describe(value)}")
    return value


SIMILARITY_DTYPES = (None, "float32", "bfloat16", "float16")


def check_chunk_size(value: object) -> int | None:
    """None (automatic), 0 (dense autograd path) or a positive number of anchor rows per chunk."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            "chunk_size must be None (automatic), 0 (dense autograd path) or an integer >= 1 "
            f"(anchor rows per chunk); got {_describe(value)}"
        )
    return value


def check_similarity_dtype(value: object):
    """None (the compute dtype), or torch.bfloat16 / torch.float16 / torch.float32 (or their names)."""
    import torch

    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if value is None:
        return None
    if isinstance(value, str) and value in names:
        return names[value]
    if value in names.values():
        return value
    raise ValueError(
        "similarity_dtype must be None, torch.bfloat16, torch.float16 or torch.float32 (or their "
        f"names); got {_describe(value)}"
    )
