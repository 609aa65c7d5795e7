"""Every registry by the name ``tunedcl list`` shows it under: what a config can name."""

from __future__ import annotations

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
