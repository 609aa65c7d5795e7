"""The shared table of loss cases: one row per registered loss family (and per setting worth its own row).

A new loss family is one file in src/tunedcl/losses/ plus one row here: its registered name, the arguments
to test it with and its per-anchor equation written plainly (from the similarities of one anchor to its
positives and to its negatives, in float64). Every row is then checked against that equation (values and
gradients, dense and chunked paths), by gradcheck, and the chunked path against the dense one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import Tensor

from loss_reference import AnchorLoss, ntxent_anchor, per_anchor_reference, supcon_in_anchor, tcl_anchor
from tunedcl.losses import LOSSES


@dataclass(frozen=True)
class LossCase:
    name: str  # the test id
    family: str  # the registered loss name
    arguments: dict[str, Any] = field(default_factory=dict)  # the family's hyperparameters for this row
    anchor_loss: AnchorLoss | None = None  # L_i from (s_pos, s_neg), the slow reference

    def __call__(self, features: Tensor, labels: Tensor | None, mask: Tensor | None, **options: Any) -> Tensor:
        """The loss through its functional twin, with this row's arguments and ``options``."""
        return LOSSES.get(self.family).functional(features, labels, mask, **self.arguments, **options)

    def reference(self, features: Tensor, labels: Tensor | None, mask: Tensor | None,
                  normalize: bool = True) -> Tensor:
        return per_anchor_reference(features, labels, mask, self.anchor_loss, normalize)


CASES = [
    LossCase("tcl", "tcl", dict(temperature=0.2, k1=50.0, k2=2.0),
             partial(tcl_anchor, temperature=0.2, k1=50.0, k2=2.0)),
    LossCase("tcl-tempered", "tcl", dict(temperature=0.5, k1=3.0, k2=0.5, k1_uses_temperature=True),
             partial(tcl_anchor, temperature=0.5, k1=3.0, k2=0.5, k1_uses_temperature=True)),
    LossCase("supcon-out", "supcon", dict(temperature=0.2), partial(tcl_anchor, temperature=0.2)),
    LossCase("supcon-in", "supcon", dict(temperature=0.2, variant="in"), partial(supcon_in_anchor, temperature=0.2)),
    LossCase("ntxent", "ntxent", dict(temperature=0.3), partial(ntxent_anchor, temperature=0.3)),
]
BY_NAME = {case.name: case for case in CASES}
