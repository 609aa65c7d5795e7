"""Colour and tone operations with one parameter per image (a float or a tensor `[B]`).

All take uint8 or float images and return float32 in [0, 1]. Semantics follow Pillow's ImageOps and
ImageEnhance (and torchvision, which copies them), computed in float rather than in 8-bit integers, so
results agree with Pillow to about one grey level. Ops that need colour act as identity on one-channel
images: a grey image is its own greyscale, has no saturation and no hue.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .common import expand_param, map_cpu_chunks, to_float

__all__ = [
    "rgb_to_grayscale",
    "grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "adjust_sharpness",
    "smoothed",
    "invert",
    "solarize",
    "posterize",
    "autocontrast",
    "equalize",
]

# ITU-R BT.601 luma, the weights of Pillow's convert("L") and torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


def _per_image(value: float | Tensor, x: Tensor, name: str) -> Tensor:
    return expand_param(value, x.shape[0], x.device, name).view(-1, 1, 1, 1)


def _blend(x: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """`clamp(f x + (1 - f) degenerate, 0, 1)`: f = 0 gives the degenerate image, f = 1 the input exactly."""
    return (factor * x + (1.0 - factor) * degenerate).clamp_(0.0, 1.0)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma `0.299 R + 0.587 G + 0.114 B` as `[B, 1, H, W]`; a one-channel image is returned as is."""
    x = to_float(images)
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def grayscale(images: Tensor) -> Tensor:
    """Greyscale with the input's channel count (luma repeated in R, G and B)."""
    x = to_float(images)
    return rgb_to_grayscale(x).expand_as(x).contiguous()


def adjust_brightness(images: Tensor, factor: float | Tensor) -> Tensor:
    """`clamp(f x)`: blend with black (ImageEnhance.Brightness)."""
    x = to_float(images)
    return (x * _per_image(factor, x, "factor")).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with the image's mean luma, a constant grey (ImageEnhance.Contrast)."""
    x = to_float(images)
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, _per_image(factor, x, "factor"))


def adjust_saturation(images: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with the image's own greyscale (ImageEnhance.Color); identity for one channel."""
    x = to_float(images)
    if x.shape[1] == 1:
        return x
    return _blend(x, rgb_to_grayscale(x), _per_image(factor, x, "factor"))


def _hue_sextant(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """HSV of RGB images as (6 h, v s, v), with 6 h in [-1, 5] (taken mod 6 by the caller).

    `v = max`, `v s = d = max - min`, and 6 h is `(g - b) / d`, `(b - r) / d + 2` or `(r - g) / d + 4`
    when the max is r, g or b (first one wins ties). The cases are selected with 0/1 float masks made by
    `1 + sign(c - max)` (1 where c is the max, else 0) rather than with comparisons and `torch.where`:
    bool tensors cost several times more per element on CPU.
    """
    r, g, b = x.unbind(1)
    v = x.amax(dim=1)
    delta = v - x.amin(dim=1)
    is_r = torch.sign(r - v).add_(1.0)
    is_g = torch.sign(g - v).add_(1.0).mul_(1.0 - is_r)
    is_b = 1.0 - is_r - is_g
    inv = 1.0 / (delta + (1.0 - torch.sign(delta)))  # 1 / d, or 1 for grey pixels (numerators are 0)
    h6 = (is_r * (g - b) + is_g * (b - r) + is_b * (r - g)).mul_(inv).add_(2.0 * is_g + 4.0 * is_b)
    return h6, delta, v


def _rotate_hue(x: Tensor, shift: Tensor) -> Tensor:
    h6, vs, v = _hue_sextant(x)
    h6 = h6 + 6.0 * shift.view(-1, 1, 1)
    out = torch.empty_like(x)
    # One channel at a time on contiguous [B, H, W] tensors, written into a contiguous result: broadcasting
    # over the channel axis (or torch.stack) lets TensorIterator pick a channels-last layout, which makes
    # this and every later op several times slower on CPU.
    for channel, n in enumerate((5.0, 3.0, 1.0)):
        k = h6 + n
        k = k - 6.0 * torch.floor(k * (1.0 / 6.0))
        ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        out[:, channel] = v - vs * ramp
    return out.clamp_(0.0, 1.0)


def adjust_hue(images: Tensor, shift: float | Tensor) -> Tensor:
    """Rotate the hue by `shift` turns (in [-0.5, 0.5]), keeping saturation and value.

    In HSV: `(h, s, v) -> ((h + shift) mod 1, s, v)`, the definition of torchvision's adjust_hue. Back to
    RGB with the case-free formula: channel n in (R, G, B) = (5, 3, 1) is
    `v - v s clamp(min(k, 4 - k), 0, 1)` with `k = (n + 6 h) mod 6`.
    Grey pixels (s = 0) are unchanged; one-channel images are returned as they are.
    """
    x = to_float(images)
    if x.shape[1] == 1:
        return x
    shift = expand_param(shift, x.shape[0], x.device, "shift")
    return map_cpu_chunks(lambda xs, p: _rotate_hue(xs, p[0]), x, (shift,))


def smoothed(x: Tensor) -> Tensor:
    """Pillow's ImageFilter.SMOOTH (3x3 kernel, 5 in the centre, 1 around, /13); border pixels unchanged.

    Computed as (3x3 box sum + 4 centre) / 13 with shifted slices: on CPU this is several times faster than
    a depthwise conv2d or avg_pool2d on small images.
    """
    if x.shape[2] < 3 or x.shape[3] < 3:
        return x
    rows = x[:, :, :, :-2] + x[:, :, :, 1:-1] + x[:, :, :, 2:]
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = (box + 4.0 * x[:, :, 1:-1, 1:-1]) * (1.0 / 13.0)
    return out


def adjust_sharpness(images: Tensor, factor: float | Tensor) -> Tensor:
    """Blend with a smoothed copy (ImageEnhance.Sharpness): f < 1 blurs, f > 1 sharpens."""
    x = to_float(images)
    return _blend(x, smoothed(x), _per_image(factor, x, "factor"))


def invert(images: Tensor) -> Tensor:
    """`1 - x` (ImageOps.invert)."""
    return 1.0 - to_float(images)


def solarize(images: Tensor, threshold: float | Tensor) -> Tensor:
    """Invert the pixels at or above `threshold` (in [0, 1]; ImageOps.solarize uses threshold / 255).

    As `|m - x|` with m = 1 where x >= threshold, else 0 (exactly 1 - x or x, without torch.where).
    """
    x = to_float(images)
    return ((x >= _per_image(threshold, x, "threshold")).to(x.dtype) - x).abs_()


def _levels(x: Tensor) -> Tensor:
    """Nearest of the 256 8-bit levels, as float (exact for images that came from uint8)."""
    return torch.round(x * 255.0).clamp_(0.0, 255.0)


def posterize(images: Tensor, bits: int | Tensor) -> Tensor:
    """Keep the `bits` (0..8) most significant bits of each 8-bit level q (ImageOps.posterize).

    `floor(q / 2^(8 - bits)) 2^(8 - bits)`, exact in float since the divisor is a power of two.
    """
    x = to_float(images)
    b = expand_param(bits, x.shape[0], x.device, "bits").round().clamp(0, 8).view(-1, 1, 1, 1)
    step = torch.pow(2.0, 8.0 - b)
    return torch.floor(_levels(x) / step).mul_(step / 255.0)


def autocontrast(images: Tensor) -> Tensor:
    """Stretch each channel of each image to span [0, 1]: `(x - min) / (max - min)` (ImageOps.autocontrast).

    A constant channel is left as it is.
    """
    x = to_float(images)
    low = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - low
    flat = span <= 0
    scale = 1.0 / torch.where(flat, torch.ones_like(span), span)
    low = torch.where(flat, torch.zeros_like(low), low)
    return ((x - low) * scale).clamp_(0.0, 1.0)


def equalize(images: Tensor) -> Tensor:
    """Histogram equalisation of each channel of each image, Pillow's ImageOps.equalize.

    On the 8-bit levels q with histogram h (N pixels, the largest present level holding h_last of them):
    `step = floor((N - h_last) / 255)`; if step = 0 (e.g. a constant channel) the channel is unchanged,
    otherwise `q -> min(255, floor((cumsum_{<q} h + floor(step / 2)) / step))`. Histograms of all channels
    are built at once with scatter_add, and the lookup is one gather from the per-channel tables.
    """
    x = to_float(images)
    n, c, h, w = x.shape
    q = _levels(x).long().view(n, c, h * w)
    hist = torch.zeros(n, c, 256, dtype=torch.int64, device=x.device)
    hist.scatter_add_(2, q, torch.ones_like(q))
    h_last = hist.gather(2, q.amax(dim=2, keepdim=True))
    step = torch.div(h * w - h_last, 255, rounding_mode="floor")
    below = hist.cumsum(dim=2) - hist
    half = torch.div(step, 2, rounding_mode="floor")
    lut = torch.div(below + half, step.clamp(min=1), rounding_mode="floor").clamp_(max=255)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    lut = torch.where(step > 0, lut, identity).to(torch.float32).div_(255.0)
    return lut.gather(2, q).view(n, c, h, w)
