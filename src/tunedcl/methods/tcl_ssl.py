"""``tcl-ssl``: self-supervised TCL, the paper's extension to the self-supervised setting.

Encoder + projection head, instance positives (the other views of the same image), :class:`tunedcl.TCLLoss`.
With 2 views each anchor has one positive; k1 = 0, k2 = 1 is then SimCLR's NT-Xent.
"""

from tunedcl.methods.base import ContrastiveMethod, register_method


@register_method("tcl-ssl")
class TCLSelfSupervised(ContrastiveMethod):
    """Self-supervised TCL: the other views of an image are its positives (TCLLoss)."""

    loss_name = "tcl"
    uses_labels = False
    min_views = 2
