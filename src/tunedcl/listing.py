"""Every registry by the name ``tunedcl list`` shows it under: what a config can name, and with what options."""

from __future__ import annotations

import inspect

from tunedcl.registry import Registry


def registries() -> dict[str, Registry]:
    """``{"losses": LOSSES, "methods": METHODS, ...}``, in the order ``tunedcl list`` prints them."""
    from tunedcl.data import DATASETS
    from tunedcl.data.augment import AUGMENTATIONS
    from tunedcl.losses import LOSSES
    from tunedcl.methods import METHODS
    from tunedcl.models import MODELS
    from tunedcl.train.config import config_presets

    return {
        "losses": LOSSES,
        "methods": METHODS,
        "models": MODELS,
        "datasets": DATASETS,
        "augmentations": AUGMENTATIONS,
        "presets": config_presets(),
    }


def options_line(kind: str, entry: object) -> str:
    """``name=default, ...`` of what a config may set for ``entry``: a method's hyperparameters (the ``loss``
    section), an encoder's ``model.options``, a dataset's ``data.options``; empty for the other kinds."""
    if kind == "methods":
        specs = entry.hyperparameter_specs()
    elif kind in ("models", "datasets"):
        from tunedcl.train.options import options_of

        specs = options_of(entry)
    else:
        return ""
    return ", ".join(f"{name}={p.default!r}" if p.default is not inspect.Parameter.empty else name
                     for name, p in specs.items())


def listing(kind: str | None = None) -> list[str]:
    """The lines of ``tunedcl list [KIND]``: per registry, each entry with its description and options."""
    lines = []
    for name, registry in registries().items():
        if kind not in (None, name):
            continue
        lines.append(f"{name}:")
        width = max(len(entry) for entry in registry.names())
        for entry, description in registry.describe():
            lines.append(f"  {entry:<{width}}  {description}")
            options = options_line(name, registry.get(entry))
            if options:
                lines.append(f"  {'':<{width}}    {options}")
    return lines

