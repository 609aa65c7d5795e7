"""Batched data augmentation on the training device.

Every function takes a batch `[B, C, H, W]` (C = 1 or 3) of uint8 images or floats in [0, 1], on any
device, and returns float32 in [0, 1] on the same device (`make_views` and `normalize` return normalised
floats). Random transforms draw separate parameters for every image, with no per-image Python loop, and
are reproducible: pass `generator=torch.Generator(...).manual_seed(s)` and the same seed gives the same
output (the draws happen on the generator's device, so a CPU generator also drives CUDA images, and the
global RNG is left alone); without a generator the global RNG of the images' device is used.

Main entry point::

    views = make_views(images_uint8, n_views=2, preset="simaug", mean=MEAN, std=STD, generator=g)
    # -> [B, 2, C, H, W], normalised

Presets (`list_presets()`, described by `AUGMENTATIONS.describe()`): `none`, `crop-flip`, `simaug`, `autoaug`,
`randaug`; see `presets`.

Choices where the recipes leave room:
- Colour jitter applies its four adjustments in a random order drawn per image, as torchvision does.
- RandAugment's M is on torchvision's scale, 31 bins (M in 0..30): M = 14 is 14/30 of each maximum.
- AutoAugment/RandAugment magnitudes and fill follow torchvision (stronger magnitude = stronger op;
  geometric ops use nearest interpolation and fill with black).
- crop-flip pads by round(side / 8): 4 pixels at 32 px (CIFAR) and at 28 px (Fashion-MNIST).
- One-channel images: saturation, hue, greyscale and AutoAugment's Color are identities.
- Float inputs are taken to be in [0, 1] (not checked, to avoid a pass and a device sync); ops that work
  on 8-bit levels (posterize, equalize) round to the nearest of 256 levels, exact for uint8 inputs.
- An op that changes nothing (p = 0, a one-channel colour op) may return its float32 input itself.

Modules: `geometric` (crops, flips, affine warps), `color` (per-image colour and tone ops), `jitter`
(random colour transforms), `blur` (Gaussian blur), `policies` (AutoAugment, RandAugment), `presets`
(named recipes, `make_views`, `normalize`), `common` (image checks and the random draws all of them use).
"""

from .blur import default_blur_kernel_size, gaussian_blur, random_gaussian_blur
from .color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    grayscale,
    invert,
    posterize,
    rgb_to_grayscale,
    solarize,
)
from .geometric import (
    affine_nearest,
    hflip,
    random_crop,
    random_hflip,
    random_resized_crop,
    resized_crop,
    rotate,
    sample_resized_crop_boxes,
    shear_x,
    shear_y,
    translate_x,
    translate_y,
)
from .jitter import color_jitter, random_grayscale, random_solarize
from .policies import AUTOAUGMENT_CIFAR10_POLICY, RANDAUGMENT_OPS, auto_augment, rand_augment
from .presets import AUGMENTATIONS, apply_preset, default_crop_padding, find_preset, list_presets, make_views, normalize

__all__ = [
    "AUGMENTATIONS",
    "AUTOAUGMENT_CIFAR10_POLICY",
    "RANDAUGMENT_OPS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "adjust_sharpness",
    "affine_nearest",
    "apply_preset",
    "auto_augment",
    "autocontrast",
    "color_jitter",
    "default_blur_kernel_size",
    "default_crop_padding",
    "equalize",
    "find_preset",
    "gaussian_blur",
    "grayscale",
    "hflip",
    "invert",
    "list_presets",
    "make_views",
    "normalize",
    "posterize",
    "rand_augment",
    "random_crop",
    "random_gaussian_blur",
    "random_grayscale",
    "random_hflip",
    "random_resized_crop",
    "random_solarize",
    "resized_crop",
    "rgb_to_grayscale",
    "rotate",
    "sample_resized_crop_boxes",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
]
