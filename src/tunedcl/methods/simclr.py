"""``simclr``: SimCLR (Chen et al., ICML 2020).

Encoder + projection head, instance positives (the other views of the same image), NT-Xent
(:class:`tunedcl.NTXentLoss`; its default temperature is 0.5, SimCLR's CIFAR-10 setting).
"""

from tunedcl.methods.base import ContrastiveMethod, register_method


@register_method("simclr")
class SimCLR(ContrastiveMethod):
    """SimCLR: the other views of an image are its positives (NT-Xent)."""

    loss_name = "ntxent"
    uses_labels = False
    min_views = 2
