"""Random photometric transforms: colour jitter, random greyscale, random solarize.

Each image draws its own parameters (and, for colour jitter, its own order of the four adjustments);
nothing loops over images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tunedcl._checks import check_probability, check_real

from . import color
from .common import bernoulli, check_range, constant, map_cpu_chunks, to_float, uniform

__all__ = ["color_jitter", "random_grayscale", "random_solarize"]

_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE, _SKIP = range(5)


def _mixed_blend(x: Tensor, op: Tensor, factor: Tensor, use_gray: bool) -> Tensor:
    """Brightness, contrast or saturation, whichever each image drew, in one pass over the batch.

    All three are `clamp(f x + (1 - f) D)` and differ only in the degenerate image D: black, the mean luma,
    or the luma image. So `(1 - f) D = a luma + c` with per-image `a = (1 - f) [op = saturation]` and
    `c = (1 - f) [op = contrast] mean(luma)`; images that drew another op (or none) get f = 1, which returns
    them exactly (a = c = 0).
    """
    b = x.shape[0]
    f = torch.where(op <= _SATURATION, factor, 1.0)
    out = x * f.view(b, 1, 1, 1)
    if use_gray:
        luma = color.rgb_to_grayscale(x)
        a = ((1.0 - f) * (op == _SATURATION)).view(b, 1, 1, 1)
        c = (1.0 - f) * (op == _CONTRAST) * luma.mean(dim=(1, 2, 3))
        out += luma * a + c.view(b, 1, 1, 1)
    return out.clamp_(0.0, 1.0)


def color_jitter(
    images: Tensor,
    brightness: float | Sequence[float] = 0.4,
    contrast: float | Sequence[float] = 0.4,
    saturation: float | Sequence[float] = 0.4,
    hue: float | Sequence[float] = 0.1,
    p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's ColorJitter, applied to each image with probability `p` (RandomApply).

    Factors are uniform per image: brightness, contrast and saturation in `[max(0, 1 - s), 1 + s]` for a
    number s (or the given `(low, high)`), hue shift in `[-s, s]` with s <= 0.5 turns. As in torchvision,
    each image applies the four adjustments in its own random order (a uniform permutation), and an
    adjustment whose range is the identity (s = 0) is skipped. On one-channel images saturation and hue are
    identities, so only brightness and contrast act.

    At each of the four positions, the images that drew brightness, contrast or saturation there are
    handled by one fused blend, and those that drew hue by `adjust_hue` on just their subset.
    """
    p = check_probability("p", p)
    ranges = [
        check_range("brightness", brightness, center=1.0, lower=0.0),
        check_range("contrast", contrast, center=1.0, lower=0.0),
        check_range("saturation", saturation, center=1.0, lower=0.0),
        check_range("hue", hue, center=0.0, lower=-0.5, upper=0.5),
    ]
    x = to_float(images)
    b, channels, dev = x.shape[0], x.shape[1], x.device
    factors = torch.stack([uniform(lo, hi, (b,), generator, dev) for lo, hi in ranges], dim=1)
    order = torch.argsort(uniform(0.0, 1.0, (b, 4), generator, dev), dim=1)
    applied = bernoulli(p, (b,), generator, dev)

    active = [not (lo == hi == neutral) for (lo, hi), neutral in zip(ranges, (1.0, 1.0, 1.0, 0.0), strict=True)]
    if channels == 1:
        active[_SATURATION] = active[_HUE] = False
    if b == 0 or p == 0.0 or not any(active):
        return x
    # ops[i, position]: what image i does at that position (_SKIP when not applied or disabled).
    enabled = constant((*active, False), dev)
    ops = torch.where(applied.unsqueeze(1), order, _SKIP)
    ops = torch.where(enabled[ops], ops, _SKIP)
    chosen = factors.gather(1, ops.clamp(max=_HUE))
    return map_cpu_chunks(lambda xs, p: _jitter(xs, p[0], p[1], active), x, (ops, chosen))


def _jitter(x: Tensor, ops: Tensor, factors: Tensor, active: list[bool]) -> Tensor:
    """The four positions of colour jitter: `ops[i, j]` and `factors[i, j]` are image i's j-th step."""
    blends = active[_BRIGHTNESS] or active[_CONTRAST] or active[_SATURATION]
    for position in range(4):
        op, factor = ops[:, position], factors[:, position]
        if blends:
            x = _mixed_blend(x, op, factor, use_gray=active[_CONTRAST] or active[_SATURATION])
        if active[_HUE]:
            idx = torch.nonzero(op == _HUE).squeeze(1)
            if idx.numel() > 0:
                x = x.index_copy(0, idx, color.adjust_hue(x.index_select(0, idx), factor[idx]))
    return x


def random_grayscale(images: Tensor, p: float = 0.1, generator: torch.Generator | None = None) -> Tensor:
    """Replace each image by its greyscale (channel count kept) with probability `p`; identity for C = 1."""
    p = check_probability("p", p)
    x = to_float(images)
    chosen = bernoulli(p, (x.shape[0],), generator, x.device)
    if x.shape[1] == 1:
        return x
    return torch.where(chosen.view(-1, 1, 1, 1), color.rgb_to_grayscale(x), x)


def random_solarize(
    images: Tensor, threshold: float = 0.5, p: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    """Solarize each image (invert pixels >= `threshold`, in [0, 1]) with probability `p`."""
    p = check_probability("p", p)
    # Any number works (>= 1 solarizes nothing but pure white); [0, 1] is where the levels are.
    check_real("threshold", threshold, hint="a level in [0, 1]")
    x = to_float(images)
    chosen = bernoulli(p, (x.shape[0],), generator, x.device)
    # An image that is not chosen gets a threshold no pixel reaches, instead of a select afterwards.
    return color.solarize(x, torch.where(chosen, float(threshold), 2.0))
