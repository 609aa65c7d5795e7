"""tunedcl: Tuned Contrastive Learning (TCL) and its relatives, exact and NaN-proof."""

from tunedcl.losses import (
    NTXentLoss,
    SupConLoss,
    TCLLoss,
    create_loss,
    list_losses,
)

__version__ = "0.1.0"

__all__ = ["NTXentLoss", "SupConLoss", "TCLLoss", "create_loss", "list_losses", "__version__"]
