"""Contrastive losses: TCL, SupCon (L_out, L_in) and NT-Xent, exact and finite for every finite input.

Each loss is an ``nn.Module`` called as ``loss(features, labels=None, mask=None)`` with a functional twin
in :mod:`tunedcl.losses.functional` and a name in :func:`create_loss`. A family is one file: every module
of this package is imported here, so a new family file registers itself (docs/extending.md).
"""

import importlib
import pkgutil

from tunedcl.losses import functional
from tunedcl.losses.family import LOSSES, ContrastiveLoss, create_loss, list_losses, register_loss
from tunedcl.losses.ntxent import NTXentLoss
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.supcon import SupConLoss
from tunedcl.losses.tcl import TCLLoss

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "LOSSES",
    "ContrastiveLoss",
    "MemoryQueue",
    "NTXentLoss",
    "SupConLoss",
    "TCLLoss",
    "create_loss",
    "functional",
    "list_losses",
    "register_loss",
]
