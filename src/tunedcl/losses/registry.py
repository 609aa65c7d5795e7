"""A registry of losses by name, and ``create_loss`` (timm-style factory)."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from tunedcl.losses.ntxent import NTXentLoss
from tunedcl.losses.supcon import SupConLoss
from tunedcl.losses.tcl import TCLLoss

_LOSSES: dict[str, type[nn.Module]] = {
    "tcl": TCLLoss,
    "supcon": SupConLoss,
    "ntxent": NTXentLoss,
}
_ALIASES = {"simclr": "ntxent", "nt-xent": "ntxent", "nt_xent": "ntxent"}


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss` (aliases excluded)."""
    return sorted(_LOSSES)


def create_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name: ``create_loss("tcl", k1=5000.0)``.

    Names: ``tcl``, ``supcon``, ``ntxent`` (alias ``simclr``). Unknown names and unknown keyword
    arguments raise ``ValueError`` listing what is allowed.
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _LOSSES:
        raise ValueError(f"loss name must be one of {', '.join(list_losses())}; got {name!r}")
    cls = _LOSSES[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{key} loss got unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(accepted)}"
        )
    return cls(**kwargs)
