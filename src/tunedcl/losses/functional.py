"""Functional twins of the loss modules: ``tcl_loss(features, labels, mask, temperature=..., ...)``.

Each equals its module called once (``tcl_loss(f, y, k1=50.0) == TCLLoss(k1=50.0)(f, y)``) and is made by
:func:`tunedcl.losses.family.functional_twin`; any registered family has one as ``Family.functional``.
"""

from tunedcl.losses.ntxent import ntxent_loss
from tunedcl.losses.supcon import supcon_loss
from tunedcl.losses.tcl import tcl_loss

__all__ = ["ntxent_loss", "supcon_loss", "tcl_loss"]
