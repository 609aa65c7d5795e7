"""``supcon``: supervised contrastive learning (Khosla et al., NeurIPS 2020).

Encoder + projection head, positives by class label, :class:`tunedcl.SupConLoss` (L_out by default;
``variant: in`` for L_in).
"""

from tunedcl.methods.base import ContrastiveMethod, register_method


@register_method("supcon")
class SupCon(ContrastiveMethod):
    """Supervised contrastive learning: same-label views are positives (SupConLoss)."""

    loss_name = "supcon"
    uses_labels = True
