"""Contrastive losses: TCL, SupCon (L_out, L_in) and NT-Xent, exact and finite for every finite input.

Each loss is an ``nn.Module`` called as ``loss(features, labels=None, mask=None)`` with a functional twin
in :mod:`tunedcl.losses.functional` and a name in :func:`create_loss`.
"""

from tunedcl.losses import functional
from tunedcl.losses.ntxent import NTXentLoss
from tunedcl.losses.queue import MemoryQueue
from tunedcl.losses.registry import create_loss, list_losses
from tunedcl.losses.supcon import SupConLoss
from tunedcl.losses.tcl import TCLLoss

__all__ = [
    "MemoryQueue",
    "NTXentLoss",
    "SupConLoss",
    "TCLLoss",
    "create_loss",
    "functional",
    "list_losses",
]
