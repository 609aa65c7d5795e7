"""Training methods: one file each (``tcl``, ``supcon``, ``simclr``, ``tcl-ssl``, ``ce``), registered in
:data:`METHODS`. Every module of this package is imported here, so a new method file registers itself
(docs/extending.md).

    >>> from tunedcl.methods import METHODS
    >>> METHODS.names()
    ['ce', 'simclr', 'supcon', 'tcl', 'tcl-ssl']
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
