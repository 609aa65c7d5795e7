"""The projection head that maps encoder features to the space the loss sees (and, with other sizes, the
predictor of BYOL / SimSiam)."""

from __future__ import annotations

import torch
from torch import nn

from tunedcl._checks import check_bool, check_int


class ProjectionHead(nn.Module):
    """``Linear(in_dim, hidden_dim) - ReLU - Linear(hidden_dim, out_dim)``, the paper's head.

    The paper (and SupCon) use ``Linear(d, d) - ReLU - Linear(d, 128)`` on the pooled encoder features,
    then L2-normalise. The normalisation is deliberately NOT part of this module: the tunedcl losses
    normalise their inputs themselves, so the head's raw output is what a loss expects, and
    ``projections.norm(dim=-1)`` stays available for diagnostics. If you use the head with another loss,
    apply ``torch.nn.functional.normalize(z, dim=-1)`` yourself.

    Args:
        in_dim: input features (the encoder's ``feature_dim``).
        hidden_dim: hidden units; ``None`` (default) means ``in_dim``, as in the paper.
        out_dim: projection size, 128 in the paper (the projector-dimension study varies it).
        batch_norm: put a BatchNorm1d after each hidden Linear (SimCLR v2, BYOL, SimSiam; off by default,
            as in the paper). BatchNorm needs more than one sample per batch in training mode.
        hidden_layers: hidden Linear (-BN) - ReLU blocks before the output Linear (1: the paper's head;
            SimSiam's projector has 2).
        output_batch_norm: a BatchNorm1d without affine parameters after the output Linear (SimSiam's
            projector).

    Example:
        >>> import torch
        >>> head = ProjectionHead(512)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int | None = None,
        out_dim: int = 128,
        batch_norm: bool = False,
        hidden_layers: int = 1,
        output_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = "ProjectionHead"
        in_dim = check_int("in_dim", in_dim, low=1, owner=owner)
        if hidden_dim is None:
            hidden_dim = in_dim
        hidden_dim = check_int("hidden_dim", hidden_dim, low=1, owner=owner, hint="or None for in_dim")
        out_dim = check_int("out_dim", out_dim, low=1, owner=owner)
        batch_norm = check_bool("batch_norm", batch_norm, owner=owner)
        hidden_layers = check_int("hidden_layers", hidden_layers, low=1, owner=owner)
        output_batch_norm = check_bool("output_batch_norm", output_batch_norm, owner=owner)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        layers: list[nn.Module] = []
        for index in range(hidden_layers):
            # The BatchNorm shift makes the Linear bias redundant (hence bias=not batch_norm).
            layers.append(nn.Linear(in_dim if index == 0 else hidden_dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Linear(hidden_dim, out_dim, bias=not output_batch_norm))
        if output_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim]`` features to unnormalised ``[B, out_dim]`` projections."""
        return self.net(features)
