"""Argument checks shared by the encoders and heads.

Every check raises ValueError with the owner, the argument, the value given and what is allowed, so a
typo in a config file is reported in terms the user wrote rather than as a shape error deep in a conv.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence


def check_positive_int(owner: str, name: str, value: object, hint: str = "") -> int:
    """Return ``value`` as an int if it is an integer > 0, else raise ValueError."""
    # bool is an Integral in Python; True as a channel count is always a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        suffix = f" ({hint})" if hint else ""
        raise ValueError(f"{owner}: {name} must be a positive integer{suffix}, got {value!r}")
    return int(value)


def check_in_channels(owner: str, value: object) -> int:
    """Input channels: any positive int (1 for grayscale, 3 for RGB are the usual values)."""
    return check_positive_int(owner, "in_channels", value, "1 for grayscale, 3 for RGB, or any other count")


def check_choice(owner: str, name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        allowed = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")
    return value


def check_bool(owner: str, name: str, value: object) -> bool:
    """Reject truthy non-bools such as the string "false" from a hand-written config."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def scaled_channels(owner: str, base: int, width: object) -> int:
    """Channels of the first stage for a width multiplier: ``round(base * width)``, at least 1.

    Later stages double this number, so the feature dimension is an exact multiple of it and equals the
    documented ``base_feature_dim * width`` whenever ``base * width`` is a whole number.
    """
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not math.isfinite(float(width))
        or width <= 0
    ):
        raise ValueError(f"{owner}: width must be a finite number > 0, got {width!r}")
    channels = math.floor(base * float(width) + 0.5)  # round half up, not Python's banker's rounding
    if channels < 1:
        raise ValueError(
            f"{owner}: width={width!r} gives {base}*width < 0.5, i.e. no channels in the first stage; "
            f"width must be at least {0.5 / base:g}"
        )
    return channels
