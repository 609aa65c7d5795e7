"""Turn the user's ``(features, labels, mask)`` into rows and a positive relation.

Two layouts are accepted (SupContrast's and pytorch-metric-learning's):

* ``features [N, D]`` with ``labels [N]`` or ``mask [N, N]``;
* ``features [B, V, D]`` (V views of each of B samples) with ``labels [B]`` or ``mask [B, B]``.

Views are flattened sample-major: row ``b * V + v`` is view ``v`` of sample ``b`` (the order of
``features.reshape(-1, D)``), which is also the order of per-anchor losses with ``reduction="none"``.

The positive relation is never materialised as an N x N float matrix. It is described by one integer
*group id* per row, plus (only when the user passes a mask) a boolean matrix over groups:

    positive(i, j)  =  i != j  and  ( ids[i] == ids[j]  or  group_mask[ids[i], ids[j]] )

Labels give ``ids = labels``; instance identity gives ``ids = sample index``; a mask gives
``ids = sample index`` and ``group_mask = mask``. With ``[B, V, D]`` features the other views of a
sample are therefore always positives of it, whatever the mask says about ``mask[b, b]``: a view of
the same image is never a sensible negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Positives:
    """Who is a positive of whom, for N rows. See the module docstring for the rule."""

    ids: Tensor  # [N] int64 group id of each row
    group_mask: Tensor | None = None  # [G, G] bool over group ids, or None

    def block(self, anchor_ids: Tensor, contrast_ids: Tensor, out: Tensor | None = None) -> Tensor:
        """Boolean ``[len(anchor_ids), len(contrast_ids)]`` relation (self pairs not removed), written
        into ``out`` when given (a reused buffer saves an allocation per chunk)."""
        same = torch.eq(anchor_ids[:, None], contrast_ids[None, :], out=out)
        if self.group_mask is None:
            return same
        return same | self.group_mask[anchor_ids][:, contrast_ids]


@dataclass(frozen=True)
class Batch:
    """Validated loss input: rows in the compute dtype and their positive relation."""

    rows: Tensor  # [N, D], float32 or float64, not yet normalised
    positives: Positives


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp16/bf16 inputs are computed in fp32 (exp of logits overflows fp16); fp64 stays fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_features(features: object) -> Tensor:
    if not isinstance(features, Tensor):
        raise ValueError(f"features must be a torch.Tensor; got {type(features).__name__}")
    if features.ndim not in (2, 3):
        raise ValueError(
            f"features must have 2 dimensions [N, D] or 3 dimensions [B, V, D]; "
            f"got {features.ndim} dimensions with shape {_shape(features)}"
        )
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor; got dtype {features.dtype}")
    if features.numel() == 0:
        raise ValueError(f"features must not be empty; got shape {_shape(features)}")
    return features


def check_finite(rows: Tensor) -> None:
    """Raise if any row holds NaN or Inf, saying how many rows are bad (one host sync)."""
    bad_rows = int((~torch.isfinite(rows)).any(dim=1).sum())
    if bad_rows:
        raise ValueError(
            f"features has {bad_rows} of {rows.shape[0]} rows containing NaN or Inf; the loss needs "
            "finite inputs (a diverging encoder or a too-high learning rate usually causes this)"
        )


def _check_labels(labels: object, expected: int, layout: str, device: torch.device) -> Tensor:
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a torch.Tensor or None; got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(
            f"labels must have an integer or bool dtype (class indices); got dtype {labels.dtype}"
        )
    if labels.ndim != 1 or labels.shape[0] != expected:
        raise ValueError(
            f"labels must have shape [{expected}] for features {layout}; got shape {_shape(labels)}"
        )
    return labels.to(device=device, dtype=torch.long)


def _check_mask(mask: object, expected: int, layout: str, device: torch.device) -> Tensor:
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a boolean torch.Tensor or None; got {type(mask).__name__}")
    if mask.shape != (expected, expected):
        raise ValueError(
            f"mask must have shape [{expected}, {expected}] for features {layout}; "
            f"got shape {_shape(mask)}"
        )
    if mask.dtype != torch.bool:
        # SupContrast passes 0/1 float masks: accept them, but nothing else (0.5 has no meaning).
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                f"mask must be boolean, or numeric with values 0 and 1 only; got dtype {mask.dtype} "
                "with other values"
            )
        mask = mask != 0
    return mask.to(device)


def prepare(
    features: Tensor,
    labels: Tensor | None,
    mask: Tensor | None,
    *,
    check_inputs_finite: bool = True,
    require_positives_possible: bool = True,
) -> Batch:
    """Validate the call and return rows ``[N, D]`` (compute dtype) and their positive relation.

    ``require_positives_possible``: with neither labels nor mask, a single view per sample has no
    positive at all, which is almost always a mistake (a loss of 0 that trains nothing); it is refused.
    """
    features = _check_features(features)
    if labels is not None and mask is not None:
        raise ValueError(
            "labels and mask were both given; pass labels (positives share a label) or mask "
            "(an explicit positive relation), not both"
        )
    device = features.device
    if features.ndim == 3:
        batch, views, dim = features.shape
        layout, groups = f"[B, V, D] = {_shape(features)}", batch
        sample = torch.arange(batch, device=device).repeat_interleave(views)
    else:
        (n_rows, dim), views = features.shape, 1
        layout, groups = f"[N, D] = {_shape(features)}", n_rows
        sample = torch.arange(n_rows, device=device)

    if labels is not None:
        ids = _check_labels(labels, groups, layout, device)
        positives = Positives(ids=ids[sample] if features.ndim == 3 else ids)
    elif mask is not None:
        positives = Positives(ids=sample, group_mask=_check_mask(mask, groups, layout, device))
    else:
        if require_positives_possible and views < 2:
            raise ValueError(
                f"features {layout} with labels=None and mask=None has no positives: instance "
                "identity needs at least 2 views per sample as [B, V, D] with V >= 2; otherwise "
                "pass labels or mask"
            )
        positives = Positives(ids=sample)

    rows = features.reshape(-1, dim).to(compute_dtype(features.dtype))
    if check_inputs_finite:
        check_finite(rows)
    return Batch(rows=rows, positives=positives)


# Vectors whose largest entry lies outside [2^-60, 2^60] are rescaled before their squared norm is taken: the
# square of such a vector would under- or overflow fp32 (2^+-126), and F.normalize would then treat a tiny
# vector as zero and a huge one as zero too. Vectors inside the range are not touched, so results on them are
# the same bits as a plain F.normalize. The divisor is detached: the direction does not depend on it.
_SAFE_LOW, _SAFE_HIGH = 2.0**-60, 2.0**60


def unit_vectors(x: Tensor, dim: int = -1) -> Tensor:
    """``x / ||x||`` along ``dim``, exact for every finite ``x`` in every dtype; zero vectors stay zero."""
    largest = x.detach().abs().amax(dim=dim, keepdim=True)
    outside = (largest > _SAFE_HIGH) | ((largest < _SAFE_LOW) & (largest > 0))
    return torch.nn.functional.normalize(x / torch.where(outside, largest, torch.ones_like(largest)), dim=dim)

