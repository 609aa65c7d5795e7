"""Geometric augmentations on a batch, each image with its own parameters.

Everything is one `grid_sample` call with one affine map per image: crops with padding (optionally
mirrored in the same pass), shears, translations and rotations with nearest interpolation (pixels whose
source falls outside the image take `fill`), resized crops with bilinear interpolation. A flip on its own
is `flip` + a per-image select.

Coordinates follow Pillow's convention, so that results can be compared with `PIL.Image.transform`: an
output pixel (x, y) has its centre at (x + 0.5, y + 0.5); an affine `matrix` (a, b, c, d, e, f) maps that
centre to the input point (a x' + b y' + c, d x' + e y' + f), and nearest interpolation takes the input
pixel that contains the point (floor of each coordinate; see `affine_nearest` on exact ties).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl._checks import bad_argument, check_int, check_probability

from .common import check_range, constant, expand_param, is_int, randint, to_float, uniform

__all__ = [
    "hflip",
    "random_hflip",
    "random_crop",
    "resized_crop",
    "random_resized_crop",
    "sample_resized_crop_boxes",
    "affine_nearest",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "shear_matrix",
    "translation_matrix",
    "rotation_matrix",
]


def _size_pair(size: int | Sequence[int] | None, images: Tensor, name: str = "size") -> tuple[int, int]:
    if size is None:
        return int(images.shape[-2]), int(images.shape[-1])
    pair = (size, size) if is_int(size) else size
    if not (isinstance(pair, Sequence) and len(pair) == 2 and all(is_int(s) and s >= 1 for s in pair)):
        raise bad_argument(name, size, "an int >= 1 or a (height, width) pair of ints >= 1")
    return int(pair[0]), int(pair[1])


def _warp(
    images: Tensor,
    matrix: Tensor,
    out_h: int,
    out_w: int,
    mode: str = "nearest",
    padding_mode: str = "zeros",
    fill: float = 0.0,
    clip: Tensor | None = None,
) -> Tensor:
    """Resample `[B, C, H, W]` images with per-image pixel matrices `[B, 2, 3]` (Pillow convention).

    The input point for output pixel (x, y) is `(a (x + .5) + b (y + .5) + c, d (x + .5) + ...)`, in
    pixel-corner units; grid_sample (align_corners=False) wants it as `2 point / size - 1`, so the
    scale and offset are folded into the coefficients and the grid costs two broadcast adds.
    Nearest mode picks the pixel containing the point; points outside give `fill` ("zeros" padding,
    shifted by `fill`) or the border pixel ("border"). `clip` `[B, 4]` = (x_low, x_high, y_low, y_high)
    clamps the points per image (in the same pixel-corner units) before sampling.
    """
    b, _, h, w = images.shape
    dev = images.device
    xs = (torch.arange(out_w, device=dev, dtype=torch.float32) + 0.5).view(1, 1, out_w)
    ys = (torch.arange(out_h, device=dev, dtype=torch.float32) + 0.5).view(1, out_h, 1)
    scale = constant((2.0 / w, 2.0 / h), dev).view(1, 2, 1, 1, 1)
    coef = matrix.to(device=dev, dtype=torch.float32).view(b, 2, 3, 1, 1) * scale
    # Written into the interleaved [B, H, W, 2] grid directly (torch.stack is several times slower here).
    grid = torch.empty(b, out_h, out_w, 2, dtype=torch.float32, device=dev)
    grid[..., 0] = coef[:, 0, 0] * xs + (coef[:, 0, 1] * ys + (coef[:, 0, 2] - 1.0))
    grid[..., 1] = coef[:, 1, 0] * xs + (coef[:, 1, 1] * ys + (coef[:, 1, 2] - 1.0))
    if clip is not None:
        bounds = clip.to(device=dev, dtype=torch.float32).view(b, 2, 2, 1, 1) * scale - 1.0
        grid[..., 0] = torch.clamp(grid[..., 0], bounds[:, 0, 0], bounds[:, 0, 1])
        grid[..., 1] = torch.clamp(grid[..., 1], bounds[:, 1, 0], bounds[:, 1, 1])
    if fill == 0.0 or padding_mode != "zeros":
        return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    out = F.grid_sample(images - fill, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out + fill


def _identity_matrices(n: int, device: torch.device) -> Tensor:
    eye = torch.zeros(n, 2, 3, dtype=torch.float32, device=device)
    eye[:, 0, 0] = 1.0
    eye[:, 1, 1] = 1.0
    return eye


def hflip(images: Tensor) -> Tensor:
    """Mirror every image left-right."""
    return to_float(images).flip(-1)


def random_hflip(images: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right independently with probability `p`."""
    p = check_probability("p", p)
    x = to_float(images)
    flip = uniform(0.0, 1.0, (x.shape[0],), generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _random_flips(p: float, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return uniform(0.0, 1.0, (n,), generator, device) < check_probability("hflip_p", p)


def random_crop(
    images: Tensor,
    size: int | Sequence[int] | None = None,
    padding: int = 4,
    fill: float = 0.0,
    hflip_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pad by `padding` pixels with `fill` on every side, then cut a `size` window at a random position.

    Each image gets its own offset, uniform over the `(H + 2 padding - h + 1) x (W + 2 padding - w + 1)`
    positions, as torchvision's `RandomCrop(size, padding)` (constant padding). `size` defaults to the input
    size, so `padding=4` at 32 px shifts each image by -4..4 pixels in x and y, filling with zeros.
    With `hflip_p`, the crop is then mirrored with that probability, in the same resampling pass: the
    mirrored crop reads input column `(out_w - x') + left - padding` at output x' (pixel-corner units).
    """
    check_int("padding", padding, low=0)
    x = to_float(images)
    b, _, h, w = x.shape
    out_h, out_w = _size_pair(size, x)
    padded = (h + 2 * padding, w + 2 * padding)
    if out_h > padded[0] or out_w > padded[1]:
        raise bad_argument("size", (out_h, out_w), f"at most the padded image size, {padded}")
    flip = _random_flips(hflip_p, b, generator, x.device)
    top = randint(0, h + 2 * padding - out_h + 1, (b,), generator, x.device)
    left = randint(0, w + 2 * padding - out_w + 1, (b,), generator, x.device)
    m = _identity_matrices(b, x.device)
    m[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    m[:, 0, 2] = left - padding + torch.where(flip, float(out_w), 0.0)
    m[:, 1, 2] = top - padding
    return _warp(x, m, out_h, out_w, fill=fill)


def resized_crop(
    images: Tensor,
    top: Tensor,
    left: Tensor,
    height: Tensor,
    width: Tensor,
    size: int | Sequence[int] | None = None,
    flip: Tensor | None = None,
) -> Tensor:
    """Cut box `[top, top + height) x [left, left + width)` of image b and resize it to `size` (bilinear).

    Same sampling as `F.interpolate(crop, size, mode="bilinear", align_corners=False)` (no antialiasing),
    which is what torchvision's resized_crop does: output pixel u reads input column
    `left + (u + 0.5) * width / out_w - 0.5` (pixel-centre units) clamped to the box's first and last
    columns, i.e. the pixel matrix `(width / out_w, 0, left; 0, height / out_h, top)` with a per-image clip.
    Where `flip` (bool `[B]`) is True the result is mirrored left-right (x' -> out_w - x' in the same map).
    """
    x = to_float(images)
    b = x.shape[0]
    out_h, out_w = _size_pair(size, x)
    top, left, height, width = (
        expand_param(t, b, x.device, name)
        for t, name in ((top, "top"), (left, "left"), (height, "height"), (width, "width"))
    )
    m = torch.zeros(b, 2, 3, dtype=torch.float32, device=x.device)
    m[:, 0, 0] = width / out_w
    m[:, 0, 2] = left
    if flip is not None:
        m[:, 0, 0] = torch.where(flip, -m[:, 0, 0], m[:, 0, 0])
        m[:, 0, 2] = torch.where(flip, left + width, left)
    m[:, 1, 1] = height / out_h
    m[:, 1, 2] = top
    # Upsampling reads up to half a pixel beyond the box; interpolate clamps to the box's edge pixels, so
    # clip to the centres of the first and last rows and columns of the box (border padding then never acts).
    clip = torch.stack([left + 0.5, left + width - 0.5, top + 0.5, top + height - 0.5], dim=1)
    return _warp(x, m, out_h, out_w, mode="bilinear", padding_mode="border", clip=clip)


def sample_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.2, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision's RandomResizedCrop box sampler for `n` images at once: (top, left, h, w), float32 `[n]`.

    Per image: up to 10 tries of area `A = H W U(scale)` and aspect `r = exp(U(log ratio))`, box
    `w = round(sqrt(A r))`, `h = round(sqrt(A / r))`; the first try that fits is used, at a uniform position.
    When none fits, the fallback is the central crop of the whole image with the ratio clamped to `ratio`.
    """
    s_low, s_high = check_range("scale", scale, lower=0.0, lower_inclusive=False)
    r_low, r_high = check_range("ratio", ratio, lower=0.0, lower_inclusive=False)
    dev = torch.device("cpu") if device is None else torch.device(device)
    h, w, tries = height, width, 10
    area = uniform(s_low, s_high, (n, tries), generator, dev) * (h * w)
    aspect = torch.exp(uniform(math.log(r_low), math.log(r_high), (n, tries), generator, dev))
    cw = torch.round(torch.sqrt(area * aspect))
    ch = torch.round(torch.sqrt(area / aspect))
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    cw = cw.gather(1, first).squeeze(1)
    ch = ch.gather(1, first).squeeze(1)

    in_ratio = w / h
    if in_ratio < r_low:
        fb_w, fb_h = w, int(round(w / r_low))
    elif in_ratio > r_high:
        fb_w, fb_h = int(round(h * r_high)), h
    else:
        fb_w, fb_h = w, h
    any_fit = fits.any(dim=1)
    cw = torch.where(any_fit, cw, float(fb_w))
    ch = torch.where(any_fit, ch, float(fb_h))
    # A position uniform over the H - h + 1 admissible rows: floor(U (H - h + 1)); the fallback is centred.
    u_top, u_left = uniform(0.0, 1.0, (2, n), generator, dev)
    top = torch.where(any_fit, torch.floor(u_top * (h - ch + 1)), torch.floor((h - ch) / 2))
    left = torch.where(any_fit, torch.floor(u_left * (w - cw + 1)), torch.floor((w - cw) / 2))
    return top, left, ch, cw


def random_resized_crop(
    images: Tensor,
    size: int | Sequence[int] | None = None,
    scale: Sequence[float] = (0.2, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    hflip_p: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's RandomResizedCrop with every image's own box; output `size` (default: input size).

    Boxes as `sample_resized_crop_boxes`, then `resized_crop` (bilinear, no antialiasing: with the default
    output size a box is never larger than the output, so there is nothing to antialias). With `hflip_p`,
    each crop is then mirrored with that probability, in the same resampling pass.
    """
    x = to_float(images)
    flip = _random_flips(hflip_p, x.shape[0], generator, x.device)
    boxes = sample_resized_crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return resized_crop(x, *boxes, size=size, flip=flip)


def affine_nearest(images: Tensor, matrix: Tensor, fill: float = 0.0) -> Tensor:
    """Per-image inverse affine warp with nearest interpolation, Pillow's `Image.transform(AFFINE)`.

    `matrix` is `[B, 2, 3]` (or `[2, 3]` for all): the output pixel centre (x + 0.5, y + 0.5) reads the
    input pixel containing `(a x' + b y' + c, d x' + e y' + f)`; points outside the image give `fill`.
    A point exactly on a pixel edge (e.g. every fifth row of a 0.2 shear) is a tie that grid_sample breaks
    half-to-even and Pillow by its fixed-point rounding, so the two may pick neighbouring pixels there.
    """
    x = to_float(images)
    b, _, h, w = x.shape
    m = torch.as_tensor(matrix, dtype=torch.float32, device=x.device)
    if m.shape == (2, 3):
        m = m.expand(b, 2, 3)
    if m.shape != (b, 2, 3):
        raise bad_argument("matrix", m, f"a tensor of shape [{b}, 2, 3] or [2, 3]")
    return _warp(x, m, h, w, mode="nearest", fill=fill)


def shear_matrix(factor_x: Tensor, factor_y: Tensor) -> Tensor:
    """Pixel matrices `[n, 2, 3]` of shears about the top-left corner: (x, y) reads (x + fx y, y + fy x)."""
    m = _identity_matrices(factor_x.shape[0], factor_x.device)
    m[:, 0, 1] = factor_x
    m[:, 1, 0] = factor_y
    return m


def translation_matrix(dx: Tensor, dy: Tensor) -> Tensor:
    """Pixel matrices `[n, 2, 3]` moving the content by (dx, dy): output (x, y) reads (x - dx, y - dy)."""
    m = _identity_matrices(dx.shape[0], dx.device)
    m[:, 0, 2] = -dx
    m[:, 1, 2] = -dy
    return m


def rotation_matrix(degrees: Tensor, height: int, width: int) -> Tensor:
    """Pixel matrices `[n, 2, 3]` of counter-clockwise rotations about the centre, as `PIL.Image.rotate`.

    With a = -radians(degrees) and centre c = (W/2, H/2), output point p reads input
    `[[cos a, sin a], [-sin a, cos a]] (p - c) + c`.
    """
    a = -torch.deg2rad(degrees)
    cos, sin = torch.cos(a), torch.sin(a)
    cx, cy = width / 2.0, height / 2.0
    rows = [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy]
    return torch.stack(rows, dim=1).view(-1, 2, 3)


def _warp_each(
    images: Tensor, value: float | Tensor, name: str, matrices: Callable[[Tensor, Tensor], Tensor], fill: float
) -> Tensor:
    """`affine_nearest` with `matrices(x, v)`, v the per-image `[B]` parameter `value` (named `name`)."""
    x = to_float(images)
    v = expand_param(value, x.shape[0], x.device, name)
    return affine_nearest(x, matrices(x, v), fill)


def shear_x(images: Tensor, factor: float | Tensor, fill: float = 0.0) -> Tensor:
    """Horizontal shear about the top edge: output (x, y) reads input (x + factor y, y)."""
    return _warp_each(images, factor, "factor", lambda x, f: shear_matrix(f, torch.zeros_like(f)), fill)


def shear_y(images: Tensor, factor: float | Tensor, fill: float = 0.0) -> Tensor:
    """Vertical shear about the left edge: output (x, y) reads input (x, y + factor x)."""
    return _warp_each(images, factor, "factor", lambda x, f: shear_matrix(torch.zeros_like(f), f), fill)


def translate_x(images: Tensor, pixels: float | Tensor, fill: float = 0.0) -> Tensor:
    """Move the content `pixels` to the right (negative: left): output x reads input x - pixels."""
    return _warp_each(images, pixels, "pixels", lambda x, d: translation_matrix(d, torch.zeros_like(d)), fill)


def translate_y(images: Tensor, pixels: float | Tensor, fill: float = 0.0) -> Tensor:
    """Move the content `pixels` down (negative: up): output y reads input y - pixels."""
    return _warp_each(images, pixels, "pixels", lambda x, d: translation_matrix(torch.zeros_like(d), d), fill)


def rotate(images: Tensor, degrees: float | Tensor, fill: float = 0.0) -> Tensor:
    """Rotate counter-clockwise by `degrees` about the image centre (W/2, H/2), as `PIL.Image.rotate`."""
    return _warp_each(images, degrees, "degrees", lambda x, d: rotation_matrix(d, x.shape[2], x.shape[3]), fill)
