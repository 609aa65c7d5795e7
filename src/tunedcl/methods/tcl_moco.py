"""``tcl-moco``: TCL's loss in MoCo v2+, instance positives with a momentum encoder and queues of negatives.

Everything is :mod:`tunedcl.methods.mocov2` (online encoder + projector, momentum copy, per-view FIFO queues of
past keys, loss symmetric over the views, cosine momentum schedule) except the loss's k1 and k2
(:class:`tunedcl.losses.moco.MoCoInfoNCELoss`): for query q, its key k and the queue's negatives n,

    L = log D - s_qk / tau,     D = exp(s_qk / tau) + k1 exp(-s_qk) + k2 sum_n exp(s_qn / tau)

k1 = 0, k2 = 1 is MoCo's InfoNCE exactly (``mocov2``).

Defaults and their source: TCL's paper (Animesh & Chandraker, WACV 2025) gives no self-supervised numbers or
recipe this project could use (``../shared/research/tcl.md`` §3 marks them UNKNOWN) and has no queue-based
variant. The defaults are therefore MoCo v2+'s settings (temperature 0.2, momentum 0.99 -> 0.999, queue 65536;
presets from solo-learn scripts/pretrain/cifar/mocov2plus.yaml) plus TCL's reference-code k1 = 5000 and
k2 = 1, with the k1 term untempered as in that code (``k1_uses_temperature=False``). With one positive per
query and tau = 0.2 the k1 term (5000 e^{-s} >= 1839) outweighs the positive's e^{s/tau} <= e^5 = 148, so the
positive's softmax weight shrinks and its pull stays strong (tcl.md §2); the queue's K negatives near s = 0
add about k2 K to D, so with K = 32768 the k1 term is 5% (s = 1) to 30% (s = -1) of D. DDP behaves as in
``mocov2``.
"""

from __future__ import annotations

from tunedcl.losses.family import family_parameters
from tunedcl.losses.tcl import TCLLoss
from tunedcl.methods.base import register_method
from tunedcl.methods.mocov2 import MoCoV2

# TCL's own defaults (k1 = 5000, k2 = 1, untempered), read from TCLLoss: one place holds them.
_TCL = {name: parameter.default for name, parameter in family_parameters(TCLLoss).items()}


@register_method("tcl-moco")
class TCLMoCo(MoCoV2):
    """TCL with a momentum encoder and queues of negatives: MoCo v2+ with TCL's k1 / k2 in the InfoNCE."""

    def __init__(
        self,
        temperature: float = 0.2,
        k1: float = _TCL["k1"],
        k2: float = _TCL["k2"],
        k1_uses_temperature: bool = _TCL["k1_uses_temperature"],
        queue_size: int = 65536,
        base_momentum: float = 0.99,
        final_momentum: float = 0.999,
    ) -> None:
        weights = dict(k1=k1, k2=k2, k1_uses_temperature=k1_uses_temperature)
        self._setup(dict(temperature=temperature, **weights, queue_size=queue_size, base_momentum=base_momentum,
                         final_momentum=final_momentum), weights)
