"""Gaussian blur with a per-image sigma, as a separable depthwise convolution over the whole batch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl._checks import bad_argument, check_probability

from .common import apply_grouped, bernoulli, check_range, expand_param, is_int, to_float, uniform

__all__ = ["default_blur_kernel_size", "gaussian_blur", "random_gaussian_blur"]


def default_blur_kernel_size(height: int, width: int) -> int:
    """About 10% of the smaller side, made odd, at least 3 (SimCLR's choice: 23 at 224 px, 3 at 32 px)."""
    k = max(3, int(0.1 * min(height, width)))
    return k if k % 2 == 1 else k + 1


def _check_kernel_size(kernel_size: int, height: int, width: int) -> int:
    if not is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise bad_argument("kernel_size", kernel_size, "an odd int >= 1")
    if kernel_size // 2 >= min(height, width):
        # Reflect padding by kernel_size // 2 needs that many pixels beyond the border pixel.
        allowed = f"at most {2 * min(height, width) - 1} for {height}x{width} images"
        raise bad_argument("kernel_size", kernel_size, allowed)
    return kernel_size


def gaussian_blur(images: Tensor, sigma: float | Tensor, kernel_size: int | None = None) -> Tensor:
    """Blur image b with the normalised kernel `w_t = exp(-t^2 / (2 sigma_b^2)) / sum_t(...)`, t = -r..r.

    Separable (rows, then columns), reflect padding at the borders as torchvision's GaussianBlur. The batch
    is folded into the channel axis so one grouped convolution blurs every image with its own kernel.
    """
    x = to_float(images)
    n, c, h, w = x.shape
    k = _check_kernel_size(default_blur_kernel_size(h, w) if kernel_size is None else kernel_size, h, w)
    s = expand_param(sigma, n, x.device, "sigma")
    if n == 0 or k == 1:
        return x
    r = k // 2
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    weights = torch.exp(-(t**2) / (2.0 * s.clamp(min=1e-6).unsqueeze(1) ** 2))
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # [n c, k]
    folded = x.reshape(1, n * c, h, w)
    rows = F.conv2d(F.pad(folded, (r, r, 0, 0), mode="reflect"), weights.view(n * c, 1, 1, k), groups=n * c)
    out = F.conv2d(F.pad(rows, (0, 0, r, r), mode="reflect"), weights.view(n * c, 1, k, 1), groups=n * c)
    return out.view(n, c, h, w)


def random_gaussian_blur(
    images: Tensor,
    sigma: Sequence[float] = (0.1, 2.0),
    kernel_size: int | None = None,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """With probability `p` per image, blur with sigma uniform in `sigma` (SimCLR: (0.1, 2.0), p = 0.5).

    `kernel_size` defaults to `default_blur_kernel_size` (about 10% of the image side, odd).
    """
    p = check_probability("p", p)
    s_low, s_high = check_range("sigma", sigma, lower=0.0, lower_inclusive=False)
    x = to_float(images)
    if kernel_size is not None:
        _check_kernel_size(kernel_size, x.shape[2], x.shape[3])
    sigmas = uniform(s_low, s_high, (x.shape[0],), generator, x.device)
    chosen = bernoulli(p, (x.shape[0],), generator, x.device).long()
    ops = [None, lambda t, prm: gaussian_blur(t, prm, kernel_size)]
    return apply_grouped(x, chosen, ops, sigmas)
