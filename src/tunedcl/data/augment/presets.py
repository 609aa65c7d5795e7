"""Named augmentation recipes (`AUGMENTATIONS`), `make_views` (several augmented views per image), `normalize`.

Recipes (all on uint8 or [0, 1] float batches, output float32 [0, 1] before normalisation), registered in
`AUGMENTATIONS` (a `tunedcl.registry.Registry`, so names are case-insensitive and an unknown one gets a
did-you-mean error):
- `none`: the image as it is.
- `crop-flip`: random crop with zero padding + horizontal flip (p = 0.5), the paper's Fashion-MNIST recipe.
  The padding is `default_crop_padding`: side / 8 rounded, i.e. 4 at both 32 px (CIFAR's RandomCrop(32,
  padding=4)) and 28 px (the same shift of up to 4 pixels for Fashion-MNIST).
- `simaug`: SupCon's SimAugment: RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3) + flip + ColorJitter(0.4,
  0.4, 0.4, 0.1) with p = 0.8 + RandomGrayscale(p = 0.2).
- `autoaug`: crop-flip + AutoAugment's CIFAR-10 policy.
- `randaug`: crop-flip + RandAugment(N = 2, M = 14 on torchvision's 0..30 scale).
One-channel images run the same recipes; the colour-only steps are identities on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tunedcl._checks import bad_argument, check_int
from tunedcl.registry import Registry

from .common import check_images, to_float
from .geometric import random_crop, random_resized_crop
from .jitter import color_jitter, random_grayscale
from .policies import auto_augment, rand_augment

__all__ = [
    "AUGMENTATIONS",
    "default_crop_padding",
    "find_preset",
    "list_presets",
    "apply_preset",
    "make_views",
    "normalize",
]

Preset = Callable[[Tensor, "torch.Generator | None"], Tensor]

AUGMENTATIONS: Registry[Preset] = Registry("augmentation")


def default_crop_padding(height: int, width: int) -> int:
    """Padding for the crop-flip recipes: round(min side / 8), at least 1 (4 at 28 and at 32 px)."""
    return max(1, int(min(height, width) / 8 + 0.5))


@AUGMENTATIONS.register("none")
def no_augmentation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """The images as they are (evaluation, or a run without augmentation)."""
    return x


# Crops and flips are fused: one resampling pass per view instead of a crop and a select.
@AUGMENTATIONS.register("crop-flip")
def crop_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Random crop with zero padding of side/8 + horizontal flip: the paper's Fashion-MNIST recipe."""
    padding = default_crop_padding(x.shape[2], x.shape[3])
    return random_crop(x, padding=padding, hflip_p=0.5, generator=generator)


@AUGMENTATIONS.register("simaug")
def simaug(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """SupCon's SimAugment: resized crop (scale 0.2-1) + flip + colour jitter (p 0.8) + greyscale (p 0.2)."""
    x = random_resized_crop(x, scale=(0.2, 1.0), hflip_p=0.5, generator=generator)
    x = color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=0.8, generator=generator)
    return random_grayscale(x, 0.2, generator=generator)


@AUGMENTATIONS.register("autoaug")
def crop_flip_autoaugment(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """crop-flip, then AutoAugment's CIFAR-10 policy."""
    return auto_augment(crop_flip(x, generator), generator=generator)


@AUGMENTATIONS.register("randaug")
def crop_flip_randaugment(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """crop-flip, then RandAugment with N = 2 ops at M = 14 (of 30, torchvision's scale)."""
    return rand_augment(crop_flip(x, generator), 2, 14, generator=generator)


def list_presets() -> list[str]:
    """Names accepted by `apply_preset` and `make_views`."""
    return AUGMENTATIONS.names()


def find_preset(name: object, argument: str = "preset") -> Preset:
    """The recipe registered as `name`; an unknown name is the registry's did-you-mean error, prefixed by
    `argument` (the caller's parameter that held it)."""
    try:
        return AUGMENTATIONS.get(name)
    except ValueError as err:
        raise ValueError(f"{argument}: {err}") from None


def apply_preset(images: Tensor, preset: str, generator: torch.Generator | None = None) -> Tensor:
    """One augmented view of every image with the named recipe, float32 in [0, 1], not normalised."""
    fn = find_preset(preset)
    return fn(to_float(images), generator)


def _stats(
    mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, channels: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    out = []
    for name, value in (("mean", mean), ("std", std)):
        try:
            t = torch.as_tensor(value, dtype=torch.float32).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise bad_argument(name, value, f"a sequence of {channels} numbers") from None
        if t.numel() != channels:
            raise bad_argument(name, t, f"{channels} values, one per channel")
        if not bool(torch.isfinite(t).all()):
            raise bad_argument(name, value, "finite")
        if name == "std" and bool((t <= 0).any()):
            raise bad_argument(name, value, "> 0 in every channel")
        # Checked on the host copy above, so that no device sync is needed.
        out.append(t.to(device).view(1, channels, 1, 1))
    return out[0], out[1]


def _normalise_(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """`(x - mean) / std` in place, as `x * (1 / std) - mean / std` (in place is the fast path on CPU)."""
    return x.mul_(1.0 / std).sub_(mean / std)


def normalize(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """`(x - mean) / std` per channel on float32 [0, 1] images (uint8 is divided by 255 first).

    For evaluation, where images are only normalised, e.g. `normalize(test_uint8, (0.5,), (0.5,))`.
    """
    x = check_images(images)
    m, s = _stats(mean, std, x.shape[1], x.device)
    y = to_float(x)
    return _normalise_(y.clone() if y.data_ptr() == x.data_ptr() else y, m, s)


def make_views(
    images: Tensor,
    n_views: int,
    preset: str,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    generator: torch.Generator | None = None,
    last_view_preset: str | None = None,
) -> Tensor:
    """`n_views` independently augmented, normalised views of each image: float32 `[B, V, C, H, W]`.

    Every view of every image draws its own random parameters: the batch is repeated image-major
    (image 0 view 0, image 0 view 1, ...) and augmented as one batch of V B images, which is faster than
    V calls and reshapes to `[B, V, ...]` without a copy. With `last_view_preset`, views 0..V-2 use
    `preset` and view V-1 uses `last_view_preset` (two strong views plus one other, the three-view
    self-supervised variant). Deterministic given the state of `generator`.
    """
    x = check_images(images)
    n_views = check_int("n_views", n_views, low=1)
    main = find_preset(preset)
    last = None if last_view_preset is None else find_preset(last_view_preset, "last_view_preset")
    m, s = _stats(mean, std, x.shape[1], x.device)
    b, c, h, w = x.shape
    x = to_float(x)
    if b == 0:
        return torch.empty(0, n_views, c, h, w, dtype=torch.float32, device=x.device)
    if last is None:
        # The repeat is a fresh tensor and every preset returns a new tensor or it, so in place is safe.
        views = main(x.repeat_interleave(n_views, dim=0), generator)
        return _normalise_(views, m, s).view(b, n_views, c, h, w)
    out = torch.empty(b, n_views, c, h, w, dtype=torch.float32, device=x.device)
    if n_views > 1:
        out[:, :-1] = main(x.repeat_interleave(n_views - 1, dim=0), generator).view(b, n_views - 1, c, h, w)
    out[:, -1] = last(x, generator)
    return _normalise_(out, m, s)
