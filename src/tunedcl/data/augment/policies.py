"""AutoAugment (CIFAR-10 policy) and RandAugment on a batch.

Every op takes the images and a per-image *level* in [-1, 1], the fraction of its maximum magnitude (the
sign, drawn at random for the signed ops, picks the direction). Maximum magnitudes are the standard ones
(AutoAugment paper, as implemented by torchvision): shear 0.3, translate 150/331 of the image side
(truncated to whole pixels), rotate 30 degrees, enhancement factors 1 +- 0.9, posterize down to 4 bits,
solarize threshold down to 0. Geometric ops use nearest interpolation and fill with black.

An op's magnitude index m out of `bins` gives level m / (bins - 1): AutoAugment uses 10 bins (0..9);
RandAugment uses torchvision's 31 bins (M in 0..30), so M = 14 is 14/30 of the maximum.

Images are grouped by the op they drew and each op runs once on its group (see `apply_grouped`); ops
of one family share the call: every geometric op is one warp with per-image matrices, every enhancement
one blend with per-image degenerate images (`apply_ops`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tunedcl._checks import check_int

from . import color, geometric
from .common import apply_grouped, constant, randint, signs, to_float, uniform

__all__ = [
    "OPS",
    "AUTOAUGMENT_CIFAR10_POLICY",
    "RANDAUGMENT_OPS",
    "apply_ops",
    "auto_augment",
    "rand_augment",
]

_MAX_SHEAR = 0.3
_MAX_TRANSLATE = 150.0 / 331.0
_MAX_ROTATE = 30.0
_MAX_ENHANCE = 0.9


def _pixels(level: Tensor, side: int) -> Tensor:
    # torchvision converts the translation to int, i.e. truncates towards zero.
    return torch.trunc(_MAX_TRANSLATE * side * level)


_OpFn = Callable[[Tensor, Tensor], Tensor]

# name -> (fn(images, level), signed). Insertion order defines the op ids used internally.
OPS: dict[str, tuple[_OpFn, bool]] = {
    "Identity": (lambda x, lv: x, False),
    "ShearX": (lambda x, lv: geometric.shear_x(x, _MAX_SHEAR * lv), True),
    "ShearY": (lambda x, lv: geometric.shear_y(x, _MAX_SHEAR * lv), True),
    "TranslateX": (lambda x, lv: geometric.translate_x(x, _pixels(lv, x.shape[-1])), True),
    "TranslateY": (lambda x, lv: geometric.translate_y(x, _pixels(lv, x.shape[-2])), True),
    "Rotate": (lambda x, lv: geometric.rotate(x, _MAX_ROTATE * lv), True),
    "Brightness": (lambda x, lv: color.adjust_brightness(x, 1.0 + _MAX_ENHANCE * lv), True),
    "Color": (lambda x, lv: color.adjust_saturation(x, 1.0 + _MAX_ENHANCE * lv), True),
    "Contrast": (lambda x, lv: color.adjust_contrast(x, 1.0 + _MAX_ENHANCE * lv), True),
    "Sharpness": (lambda x, lv: color.adjust_sharpness(x, 1.0 + _MAX_ENHANCE * lv), True),
    # 8 bits at level 0 down to 4 bits at level 1 (torchvision's rounding of 4 * level).
    "Posterize": (lambda x, lv: color.posterize(x, 8 - torch.round(4.0 * lv)), False),
    "Solarize": (lambda x, lv: color.solarize(x, 1.0 - lv), False),
    "AutoContrast": (lambda x, lv: color.autocontrast(x), False),
    "Equalize": (lambda x, lv: color.equalize(x), False),
    "Invert": (lambda x, lv: color.invert(x), False),
}
_NAMES = list(OPS)
_ID = {name: i for i, name in enumerate(_NAMES)}
_SIGNED = [OPS[name][1] for name in _NAMES]


def _select(op: Tensor, name: str) -> Tensor:
    return op == float(_ID[name])


def _geometric_family(x: Tensor, params: Tensor) -> Tensor:
    """ShearX/Y, TranslateX/Y and Rotate for a mixed group: one per-image matrix, one warp."""
    op, lv = params[:, 0], params[:, 1]
    zero = torch.zeros_like(lv)
    shear, h, w = _MAX_SHEAR * lv, x.shape[2], x.shape[3]
    candidates = {
        "ShearX": geometric.shear_matrix(shear, zero),
        "ShearY": geometric.shear_matrix(zero, shear),
        "TranslateX": geometric.translation_matrix(_pixels(lv, w), zero),
        "TranslateY": geometric.translation_matrix(zero, _pixels(lv, h)),
        "Rotate": geometric.rotation_matrix(_MAX_ROTATE * lv, h, w),
    }
    m = candidates["Rotate"]
    for name in ("ShearX", "ShearY", "TranslateX", "TranslateY"):
        m = torch.where(_select(op, name).view(-1, 1, 1), candidates[name], m)
    return geometric.affine_nearest(x, m)


def _blend_family(x: Tensor, params: Tensor) -> Tensor:
    """Brightness, Color, Contrast and Sharpness for a mixed group in one blend `clamp(f x + (1 - f) D)`:
    D is black, the luma image, the mean luma or the smoothed image, per image (as in `color`)."""
    op, lv = params[:, 0], params[:, 1]
    n = x.shape[0]
    factor = 1.0 + _MAX_ENHANCE * lv
    if x.shape[1] == 1:  # Color is the identity on one channel
        factor = torch.where(_select(op, "Color"), 1.0, factor)
    luma = color.rgb_to_grayscale(x)
    mean = luma.mean(dim=(1, 2, 3), keepdim=True)
    degenerate = _select(op, "Color").view(n, 1, 1, 1) * luma + _select(op, "Contrast").view(n, 1, 1, 1) * mean
    sharp = _select(op, "Sharpness")
    if bool(sharp.any()):
        degenerate = degenerate + sharp.view(n, 1, 1, 1) * color.smoothed(x)
    f = factor.view(n, 1, 1, 1)
    return (f * x + (1.0 - f) * degenerate).clamp_(0.0, 1.0)


def _unary(name: str) -> _OpFn:
    fn = OPS[name][0]
    return lambda x, params: fn(x, params[:, 1])


# How a stage runs: images grouped by family, each family one call. Slot 0 is the identity.
_FAMILIES: list[tuple[tuple[str, ...], _OpFn | None]] = [
    (("Identity",), None),
    (("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"), _geometric_family),
    (("Brightness", "Color", "Contrast", "Sharpness"), _blend_family),
    *[((name,), _unary(name)) for name in ("Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")],
]
_FAMILY_OF = [next(i for i, (names, _) in enumerate(_FAMILIES) if name in names) for name in _NAMES]


def apply_ops(images: Tensor, op_ids: Tensor, levels: Tensor) -> Tensor:
    """Image b gets op `list(OPS)[op_ids[b]]` at signed level `levels[b]` (the sign already drawn).

    Ops of one family run together: all geometric ops are one warp, all enhancements one blend.
    """
    x = to_float(images)
    family = constant(tuple(_FAMILY_OF), x.device)[op_ids]
    params = torch.stack([op_ids.to(torch.float32), levels.to(torch.float32)], dim=1)
    return apply_grouped(x, family, [fn for _, fn in _FAMILIES], params)


# Cubuk et al. (2019), "AutoAugment", the 25 sub-policies found on reduced CIFAR-10:
# ((op, probability, magnitude index 0..9 or None), (op, probability, magnitude index)).
AUTOAUGMENT_CIFAR10_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)
_AUTOAUGMENT_BINS = 10

# RandAugment's op list as in torchvision (14 ops; no Invert).
RANDAUGMENT_OPS: tuple[str, ...] = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # fmt: skip


def _signed_levels(op_ids: Tensor, levels: Tensor, coin: Tensor) -> Tensor:
    signed = constant(tuple(_SIGNED), op_ids.device)[op_ids]
    return torch.where(signed, levels * coin, levels)


def auto_augment(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """AutoAugment with the CIFAR-10 policy: each image draws one of the 25 sub-policies uniformly, then
    applies its two ops in turn, each with its own probability, magnitude and a random sign."""
    x = to_float(images)
    b, dev = x.shape[0], x.device
    table = AUTOAUGMENT_CIFAR10_POLICY
    op_table = constant(tuple(tuple(_ID[name] for name, _, _ in sub) for sub in table), dev)
    prob_table = constant(tuple(tuple(prob for _, prob, _ in sub) for sub in table), dev)
    level_table = constant(tuple(tuple((m or 0) / (_AUTOAUGMENT_BINS - 1) for _, _, m in sub) for sub in table), dev)
    chosen = randint(0, len(table), (b,), generator, dev)
    draws = uniform(0.0, 1.0, (2, b), generator, dev)
    coins = signs((2, b), generator, dev)
    for stage in range(2):
        op_ids = op_table[chosen, stage]
        levels = _signed_levels(op_ids, level_table[chosen, stage], coins[stage])
        applied = draws[stage] < prob_table[chosen, stage]
        x = apply_ops(x, torch.where(applied, op_ids, torch.zeros_like(op_ids)), levels)
    return x


def rand_augment(
    images: Tensor,
    num_ops: int = 2,
    magnitude: int = 9,
    num_magnitude_bins: int = 31,
    generator: torch.Generator | None = None,
) -> Tensor:
    """RandAugment(N = num_ops, M = magnitude): each image applies `num_ops` ops drawn uniformly (with
    replacement) from `RANDAUGMENT_OPS`, all at level `M / (num_magnitude_bins - 1)` with a random sign.

    The default scale is torchvision's (31 bins, M in 0..30); M = 14 is 14/30 of each op's maximum.
    """
    num_ops = check_int("num_ops", num_ops, low=0)
    num_magnitude_bins = check_int("num_magnitude_bins", num_magnitude_bins, low=2)
    bins = f"num_magnitude_bins={num_magnitude_bins}"
    magnitude = check_int("magnitude", magnitude, low=0, high=num_magnitude_bins - 1, hint=bins)
    x = to_float(images)
    b, dev = x.shape[0], x.device
    level = magnitude / (num_magnitude_bins - 1)
    candidates = constant(tuple(_ID[name] for name in RANDAUGMENT_OPS), dev)
    picks = randint(0, len(RANDAUGMENT_OPS), (num_ops, b), generator, dev)
    coins = signs((num_ops, b), generator, dev)
    for i in range(num_ops):
        op_ids = candidates[picks[i]]
        levels = _signed_levels(op_ids, torch.full((b,), level, device=dev), coins[i])
        x = apply_ops(x, op_ids, levels)
    return x
