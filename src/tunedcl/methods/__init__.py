"""Training methods, one file each, registered in :data:`METHODS`: supervised (``tcl``, ``supcon``, ``ce``)
and self-supervised (``tcl-ssl``, ``simclr``, ``mocov2``, ``tcl-moco``, ``byol``, ``simsiam``, ``barlow``,
``vicreg``, ``swav``). Every module of this package is imported here, so a new method file registers itself
(docs/extending.md).

    >>> from tunedcl.methods import METHODS
    >>> METHODS.names()
    ['barlow', 'byol', 'ce', 'mocov2', 'simclr', 'simsiam', 'supcon', 'swav', 'tcl', 'tcl-moco', 'tcl-ssl', 'vicreg']
"""

import importlib
import pkgutil

from tunedcl.methods.base import (
    METHODS,
    Batch,
    ContrastiveMethod,
    Method,
    StepOutput,
    create_method,
    register_method,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "Batch", "ContrastiveMethod", "Method", "StepOutput", "create_method", "register_method"]
