"""``tcl``: supervised Tuned Contrastive Learning (Animesh & Chandraker, WACV 2025).

Encoder + projection head, positives by class label, :class:`tunedcl.TCLLoss` (its hyperparameters and
defaults: temperature 0.1, k1 5000, k2 1, the paper's reference code).
"""

from tunedcl.methods.base import ContrastiveMethod, register_method


@register_method("tcl")
class TCL(ContrastiveMethod):
    """Supervised TCL: same-label views are positives (TCLLoss)."""

    loss_name = "tcl"
    uses_labels = True
