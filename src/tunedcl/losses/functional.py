"""Functional twins of the loss modules: ``tcl_loss(features, labels, mask, temperature=..., ...)``."""

from tunedcl.losses.ntxent import ntxent_loss
from tunedcl.losses.supcon import supcon_loss
from tunedcl.losses.tcl import tcl_loss

__all__ = ["ntxent_loss", "supcon_loss", "tcl_loss"]
