"""Encoders by name: ``create_model("resnet18", in_channels=1, width=0.5)``, timm-style.

Builders register themselves with ``@register_model(name)`` into ``MODELS``, a ``tunedcl.registry.Registry``
(so unknown names get its did-you-mean error, and ``MODELS.describe()`` lists every encoder with the first
line of its builder's docstring). ``create_model`` checks the keyword arguments against the builder's
signature before calling it, so a misspelt option in a config file is a ValueError naming it and listing
the allowed ones, not a TypeError from deep inside a constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from tunedcl.models.base import Encoder
from tunedcl.registry import Registry, named_parameters

Builder = Callable[..., Encoder]
B = TypeVar("B", bound=Builder)

MODELS: Registry[Builder] = Registry("model")


def register_model(name: str) -> Callable[[B], B]:
    """Decorator adding an encoder builder to ``MODELS`` under ``name``.

    The builder must accept ``in_channels`` and keyword options, and return an ``Encoder``; the first line
    of its docstring is the model's description.
    """

    def decorator(builder: B) -> B:
        if "in_channels" not in inspect.signature(builder).parameters:
            raise ValueError(f"register_model: builder for {name!r} must accept an in_channels argument")
        MODELS.add(name, builder)
        return builder

    return decorator


def list_models() -> list[str]:
    """Names accepted by ``create_model``, sorted."""
    return MODELS.names()


def model_options(name: str) -> dict[str, object]:
    """The keyword options of model ``name`` (besides ``in_channels``) and their defaults."""
    return {key: p.default for key, p in named_parameters(MODELS.get(name), skip=("in_channels",)).items()}


def create_model(name: str, in_channels: int = 3, **kwargs: object) -> Encoder:
    """Build the encoder registered as ``name``.

    Args:
        name: one of ``list_models()`` (case-insensitive; ``_`` and ``-`` are interchangeable).
        in_channels: image channels, 1 for grayscale, 3 for RGB (any positive int).
        **kwargs: the model's options, e.g. ``stem``, ``width``, ``zero_init_residual`` for ResNets,
            ``width`` for ``small-cnn`` (see ``model_options(name)``).

    Returns:
        An ``Encoder`` mapping ``[B, in_channels, H, W]`` to ``[B, encoder.feature_dim]``.

    Raises:
        ValueError: unknown name, unknown option, or an invalid option value.

    Example:
        >>> from tunedcl.models import create_model
        >>> enc = create_model("resnet18", in_channels=1, width=0.25)
        >>> enc.feature_dim
        128
    """
    key = MODELS.key(name)
    allowed = model_options(key)
    for option, value in kwargs.items():
        if option not in allowed:
            raise ValueError(
                f"create_model({key!r}): unknown argument {option}={value!r}; "
                f"allowed: in_channels, {', '.join(allowed)}"
            )
    return MODELS.get(key)(in_channels=in_channels, **kwargs)
