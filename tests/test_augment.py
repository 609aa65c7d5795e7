"""Tests for tunedcl.data.augment: shapes, determinism, rates, identities, and agreement with Pillow."""

from __future__ import annotations

import ast
import colorsys
import gzip
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tunedcl.data import augment as A
from tunedcl.data.augment import policies
from tunedcl.data.augment.common import apply_grouped

try:
    from PIL import Image, ImageEnhance, ImageOps
except ImportError:  # Pillow is a dev dependency; without it only the comparisons with Pillow are skipped
    Image = ImageEnhance = ImageOps = None
needs_pillow = pytest.mark.skipif(Image is None, reason="Pillow is not installed (pip install Pillow)")

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN3, STD3 = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# ----------------------------------------------------------------------------------------------- images
def natural_images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8 images that look like photos more than noise does: smooth gradients, discs, boxes, grain."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g)

    ys = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xs = torch.linspace(0, 1, w).view(1, 1, 1, w)
    img = (r(n, c, 1, 1) * 0.5 + r(n, c, 1, 1) * 0.5 * xs + r(n, c, 1, 1) * 0.4 * ys).expand(n, c, h, w)
    for _ in range(3):
        cy, cx = r(n, 1, 1, 1) * h, r(n, 1, 1, 1) * w
        radius = (0.15 + 0.25 * r(n, 1, 1, 1)) * min(h, w)
        disc = ((ys * (h - 1) - cy) ** 2 + (xs * (w - 1) - cx) ** 2) < radius**2
        img = torch.where(disc, r(n, c, 1, 1), img)
        y0, x0 = (r(n, 1, 1, 1) * h).floor(), (r(n, 1, 1, 1) * w).floor()
        py, px = ys * (h - 1), xs * (w - 1)
        box = (py >= y0) & (py < y0 + h / 4) & (px >= x0) & (px < x0 + w / 3)
        img = torch.where(box, r(n, c, 1, 1), img)
    img = img + 0.03 * torch.randn(n, c, h, w, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def fashion_mnist(n: int) -> torch.Tensor:
    """The first n test images of Fashion-MNIST [n, 1, 28, 28] from the Debian package, or skip."""
    if not FASHION_MNIST.exists():
        pytest.skip(f"Fashion-MNIST not found at {FASHION_MNIST} (Debian package dataset-fashion-mnist)")
    with gzip.open(FASHION_MNIST, "rb") as f:
        raw = f.read(16 + n * 28 * 28)
    return torch.frombuffer(bytearray(raw[16:]), dtype=torch.uint8).view(n, 1, 28, 28).clone()


@pytest.fixture(params=["rgb32", "gray28", "fashion-mnist"])
def photo_batch(request: pytest.FixtureRequest) -> torch.Tensor:
    if request.param == "rgb32":
        return natural_images(12, 3, 32, 32, seed=1)
    if request.param == "gray28":
        return natural_images(12, 1, 28, 28, seed=2)
    return fashion_mnist(12)


def to_pil(img: torch.Tensor) -> Image.Image:
    arr = img.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")


def from_pil(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def pillow_batch(images: torch.Tensor, fn) -> torch.Tensor:
    return torch.stack([from_pil(fn(to_pil(img))) for img in images])


def as_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ shapes, dtypes, ranges
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", A.list_presets())
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_make_views_shape_dtype_range(device: str, preset: str, channels: int, size: int) -> None:
    images = natural_images(16, channels, size, size).to(device)
    mean, std = (0.5,) * channels, (0.25,) * channels
    views = A.make_views(images, 3, preset, mean, std, generator=gen())
    assert views.shape == (16, 3, channels, size, size)
    assert views.dtype == torch.float32 and views.device == images.device and views.is_contiguous()
    raw = views * 0.25 + 0.5  # back to [0, 1]
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5

    one = A.apply_preset(images.float() / 255, preset, generator=gen())
    assert one.shape == images.shape and one.dtype == torch.float32 and one.is_contiguous()
    assert 0.0 <= one.min() and one.max() <= 1.0


@pytest.mark.parametrize("preset", A.list_presets())
def test_uint8_and_float_inputs_agree(preset: str) -> None:
    images = natural_images(8, 3, 32, 32)
    a = A.apply_preset(images, preset, generator=gen(3))
    b = A.apply_preset(images.double() / 255, preset, generator=gen(3))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_normalize_and_none_preset() -> None:
    images = natural_images(4, 3, 32, 32)
    expected = (images.float() / 255 - torch.tensor(MEAN3).view(1, 3, 1, 1)) / torch.tensor(STD3).view(1, 3, 1, 1)
    torch.testing.assert_close(A.normalize(images, MEAN3, STD3), expected, atol=1e-6, rtol=1e-6)
    views = A.make_views(images, 2, "none", MEAN3, STD3)
    torch.testing.assert_close(views, expected.unsqueeze(1).expand(4, 2, 3, 32, 32), atol=1e-6, rtol=1e-6)


def test_last_view_preset_gives_the_three_view_variant() -> None:
    images = natural_images(8, 3, 32, 32)
    views = A.make_views(images, 3, "simaug", MEAN3, STD3, generator=gen(), last_view_preset="none")
    torch.testing.assert_close(views[:, 2], A.normalize(images, MEAN3, STD3), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(views[:, 0], views[:, 1])
    assert not torch.allclose(views[:, 0], views[:, 2])


def test_inputs_are_never_modified() -> None:
    images = natural_images(8, 3, 32, 32).float() / 255
    before = images.clone()
    for preset in A.list_presets():
        A.make_views(images, 2, preset, MEAN3, STD3, generator=gen(), last_view_preset="none")
        A.make_views(images, 1, preset, MEAN3, STD3, generator=gen())
        A.apply_preset(images, preset, generator=gen())
    A.normalize(images, MEAN3, STD3)
    assert torch.equal(images, before)


def test_output_sizes() -> None:
    images = natural_images(4, 3, 32, 32)
    assert A.random_crop(images, size=24, padding=0, generator=gen()).shape == (4, 3, 24, 24)
    assert A.random_crop(images, size=(36, 30), padding=2, generator=gen()).shape == (4, 3, 36, 30)
    assert A.random_resized_crop(images, size=(20, 24), generator=gen()).shape == (4, 3, 20, 24)
    assert A.random_resized_crop(images, size=64, generator=gen()).shape == (4, 3, 64, 64)


def test_empty_batch() -> None:
    images = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    for preset in A.list_presets():
        assert A.make_views(images, 2, preset, MEAN3, STD3).shape == (0, 2, 3, 32, 32)


# ----------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("preset", [p for p in A.list_presets() if p != "none"])
def test_same_seed_same_output_and_global_rng_untouched(preset: str) -> None:
    images = natural_images(32, 3, 32, 32)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = A.make_views(images, 2, preset, MEAN3, STD3, generator=gen(7))
    assert torch.equal(torch.get_rng_state(), state), "a generator was given, the global RNG must not move"
    torch.manual_seed(999)  # a different global state must not matter either
    b = A.make_views(images, 2, preset, MEAN3, STD3, generator=gen(7))
    c = A.make_views(images, 2, preset, MEAN3, STD3, generator=gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_without_generator_uses_global_rng() -> None:
    images = natural_images(16, 3, 32, 32)
    torch.manual_seed(5)
    a = A.apply_preset(images, "autoaug")
    torch.manual_seed(5)
    b = A.apply_preset(images, "autoaug")
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- independence across batch
@pytest.mark.parametrize("preset", [p for p in A.list_presets() if p != "none"])
def test_identical_images_get_different_augmentations(preset: str) -> None:
    images = natural_images(1, 3, 32, 32).expand(64, 3, 32, 32)
    out = A.apply_preset(images, preset, generator=gen())
    distinct = torch.unique(out.flatten(1), dim=0).shape[0]
    # crop-flip has 9 * 9 * 2 = 162 outcomes, so a few of 64 may coincide; the others have many more.
    assert distinct >= 40, f"{preset}: only {distinct} distinct outputs for 64 copies of one image"


# ---------------------------------------------------------------------------------- rates of random ops
def _within_sigmas(count: int, n: int, p: float, k: float = 4.0) -> bool:
    return abs(count - n * p) <= k * math.sqrt(n * p * (1 - p)) + 1


def test_hflip_rate() -> None:
    images = natural_images(1, 3, 32, 32).expand(4000, 3, 32, 32)
    out = as_uint8(A.random_hflip(images, p=0.5, generator=gen()))
    flipped = (out == images.flip(-1)).flatten(1).all(1)
    kept = (out == images).flatten(1).all(1)
    assert bool((flipped ^ kept).all())
    assert _within_sigmas(int(flipped.sum()), 4000, 0.5)


def test_grayscale_rate_and_result() -> None:
    images = natural_images(1, 3, 32, 32).expand(4000, 3, 32, 32)
    out = A.random_grayscale(images, p=0.2, generator=gen())
    gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert _within_sigmas(int(gray.sum()), 4000, 0.2)
    torch.testing.assert_close(out[gray], A.grayscale(images[:1]).expand(int(gray.sum()), 3, 32, 32))


@pytest.mark.parametrize(
    "fn,p",
    [
        (lambda x, g: A.color_jitter(x, 0.5, 0, 0, 0, p=0.8, generator=g), 0.8),
        (lambda x, g: A.random_solarize(x, 0.5, p=0.3, generator=g), 0.3),
        (lambda x, g: A.random_gaussian_blur(x, (0.5, 2.0), p=0.5, generator=g), 0.5),
    ],
    ids=["jitter-p0.8", "solarize-p0.3", "blur-p0.5"],
)
def test_apply_probability_rates(fn, p: float) -> None:
    images = natural_images(1, 3, 32, 32).expand(4000, 3, 32, 32)
    changed = (fn(images, gen()) - images.float() / 255).abs().flatten(1).amax(1) > 1e-6
    assert _within_sigmas(int(changed.sum()), 4000, p)


def test_jitter_order_is_random_per_image() -> None:
    # Brightness x2 then contrast 0 gives the mean of clamp(2 x); the other order gives clamp(2 mean(x)):
    # two distinct constant images, each for about half of the identical inputs.
    images = natural_images(1, 1, 16, 16).expand(2000, 1, 16, 16)
    out = A.color_jitter(images, brightness=(2.0, 2.0), contrast=(0.0, 0.0), saturation=0, hue=0, generator=gen())
    x = images[:1].float() / 255
    brightness_first = (2 * x).clamp(0, 1).mean()
    contrast_first = (2 * x.mean()).clamp(0, 1)
    assert abs(float(brightness_first - contrast_first)) > 0.05
    values = out[:, 0, 0, 0]
    assert bool((out == values.view(-1, 1, 1, 1)).all())  # every output is a constant image
    n_brightness_first = int(torch.isclose(values, brightness_first, atol=1e-5).sum())
    n_contrast_first = int(torch.isclose(values, contrast_first, atol=1e-5).sum())
    assert n_brightness_first + n_contrast_first == 2000
    assert _within_sigmas(n_brightness_first, 2000, 0.5)


def test_crop_offsets_are_uniform_and_flip_rate() -> None:
    # An image whose every pixel is different reveals the offset (and the flip) of each crop.
    h = w = 16
    index = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w) / (h * w + 1)
    out = A.random_crop(index.expand(4000, 1, h, w), padding=2, hflip_p=0.5, generator=gen())
    center = out[:, 0, h // 2, w // 2]
    flipped = out[:, 0, h // 2, w // 2] > out[:, 0, h // 2, w // 2 + 1]
    pos = torch.round(center * (h * w + 1)).long() - 1
    dy, dx = pos // w - h // 2, pos % w - w // 2
    dx = torch.where(flipped, dx + 1, dx)  # a flipped crop reads crop column w - 1 - x at output x
    offsets = (dy + 2) * 5 + (dx + 2)
    counts = torch.bincount(offsets, minlength=25)
    assert counts.numel() == 25 and bool((counts > 0).all())
    assert all(_within_sigmas(int(c), 4000, 1 / 25, k=5) for c in counts)
    assert _within_sigmas(int(flipped.sum()), 4000, 0.5)


def reference_resized_crop_box(h: int, w: int, scale, ratio, rng: random.Random) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params, one image at a time, written from its description."""
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    cw, ch = w, h
    if w / h < ratio[0]:
        ch = round(w / ratio[0])
    elif w / h > ratio[1]:
        cw = round(h * ratio[1])
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@pytest.mark.parametrize("h,w,scale", [(32, 40, (0.2, 1.0)), (28, 28, (0.08, 1.0)), (20, 60, (0.5, 1.0))])
def test_resized_crop_boxes_follow_torchvision_rules(h: int, w: int, scale) -> None:
    n, ratio = 4000, (3 / 4, 4 / 3)
    top, left, ch, cw = A.sample_resized_crop_boxes(n, h, w, scale=scale, ratio=ratio, generator=gen())
    assert bool((top >= 0).all() and (left >= 0).all() and (top + ch <= h).all() and (left + cw <= w).all())
    assert bool((ch == ch.round()).all() and (cw == cw.round()).all() and (top == top.round()).all())
    rng = random.Random(0)
    ref = torch.tensor([reference_resized_crop_box(h, w, scale, ratio, rng) for _ in range(n)], dtype=torch.float32)
    # Same distribution as the one-at-a-time reference: compare means of area, aspect and position.
    for ours, theirs in (
        (ch * cw / (h * w), ref[:, 2] * ref[:, 3] / (h * w)),
        (cw / ch, ref[:, 3] / ref[:, 2]),
        ((top + ch / 2) / h, (ref[:, 0] + ref[:, 2] / 2) / h),
    ):
        se = math.sqrt(ours.var() / n + theirs.var() / n)
        assert abs(float(ours.mean() - theirs.mean())) < 4 * se + 1e-6
    top, left, ch, cw = A.sample_resized_crop_boxes(3, 20, 60, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert ch.tolist() == [20.0] * 3 and cw.tolist() == [20.0] * 3 and left.tolist() == [20.0] * 3


def test_fused_flips_mirror_the_crop() -> None:
    images = natural_images(6, 3, 32, 32)
    boxes = A.sample_resized_crop_boxes(6, 32, 32, generator=gen())
    flip = torch.tensor([True, False, True, True, False, True])
    mirrored = A.resized_crop(images, *boxes, flip=flip)
    plain = A.resized_crop(images, *boxes)
    torch.testing.assert_close(mirrored, torch.where(flip.view(-1, 1, 1, 1), plain.flip(-1), plain))
    # random_crop with hflip_p=1 is the same crop as hflip_p=0, mirrored (same seed, same offsets)
    a = A.random_crop(images, padding=4, hflip_p=1.0, generator=gen(3))
    b = A.random_crop(images, padding=4, hflip_p=0.0, generator=gen(3))
    assert torch.equal(a, b.flip(-1))


def test_resized_crop_matches_interpolate() -> None:
    images = natural_images(4, 3, 32, 32).float() / 255
    boxes = [(3, 5, 10, 20), (0, 0, 32, 32), (10, 2, 22, 13), (7, 9, 5, 5)]
    top, left, h, w = (torch.tensor(v, dtype=torch.float32) for v in zip(*boxes, strict=True))
    out = A.resized_crop(images, top, left, h, w, size=(24, 28))
    for i, (t, l_, hh, ww) in enumerate(boxes):
        crop = images[i : i + 1, :, t : t + hh, l_ : l_ + ww]
        ref = F.interpolate(crop, size=(24, 28), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------ identity at zero strength
IDENTITIES = {
    "crop pad 0": lambda x: A.random_crop(x, padding=0, generator=gen()),
    "crop-flip p 0": lambda x: A.random_crop(x, padding=0, hflip_p=0.0, generator=gen()),
    "resized crop scale 1 ratio 1": lambda x: A.random_resized_crop(x, scale=(1, 1), ratio=(1, 1), generator=gen()),
    "hflip p 0": lambda x: A.random_hflip(x, p=0.0, generator=gen()),
    "jitter 0": lambda x: A.color_jitter(x, 0, 0, 0, 0, generator=gen()),
    "jitter p 0": lambda x: A.color_jitter(x, p=0.0, generator=gen()),
    "grayscale p 0": lambda x: A.random_grayscale(x, p=0.0, generator=gen()),
    "solarize p 0": lambda x: A.random_solarize(x, p=0.0, generator=gen()),
    "blur p 0": lambda x: A.random_gaussian_blur(x, p=0.0, generator=gen()),
    "blur tiny sigma": lambda x: A.gaussian_blur(x, 0.05),
    "rotate 0": lambda x: A.rotate(x, 0.0),
    "shear x 0": lambda x: A.shear_x(x, 0.0),
    "shear y 0": lambda x: A.shear_y(x, 0.0),
    "translate 0": lambda x: A.translate_y(A.translate_x(x, 0), 0),
    "brightness 1": lambda x: A.adjust_brightness(x, 1.0),
    "contrast 1": lambda x: A.adjust_contrast(x, 1.0),
    "saturation 1": lambda x: A.adjust_saturation(x, 1.0),
    "sharpness 1": lambda x: A.adjust_sharpness(x, 1.0),
    "hue 0": lambda x: A.adjust_hue(x, 0.0),
    "posterize 8": lambda x: A.posterize(x, 8),
    "solarize above 1": lambda x: A.solarize(x, 1.01),
    "randaugment 0 ops": lambda x: A.rand_augment(x, num_ops=0, generator=gen()),
    "policy rotate at level 0": lambda x: policies.OPS["Rotate"][0](x, torch.zeros(x.shape[0])),
}


@pytest.mark.parametrize("name", list(IDENTITIES))
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_at_zero_strength(name: str, channels: int) -> None:
    images = natural_images(8, channels, 32, 32)
    out = IDENTITIES[name](images)
    torch.testing.assert_close(out, images.float() / 255, atol=1e-6, rtol=0)


def test_inverse_operations() -> None:
    x = natural_images(8, 3, 32, 32).float() / 255
    torch.testing.assert_close(A.invert(A.invert(x)), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(A.translate_x(A.translate_x(x, 3), -3)[..., 3:-3], x[..., 3:-3])
    torch.testing.assert_close(A.adjust_hue(A.adjust_hue(x, 0.3), -0.3), x, atol=2e-5, rtol=0)


# ------------------------------------------------------------------------------------- against Pillow
EXACT_PILLOW = {
    "hflip": (A.hflip, lambda im: ImageOps.mirror(im)),
    "invert": (A.invert, lambda im: ImageOps.invert(im)),
    "solarize 128": (lambda x: A.solarize(x, 128 / 255), lambda im: ImageOps.solarize(im, 128)),
    "solarize 200": (lambda x: A.solarize(x, 200 / 255), lambda im: ImageOps.solarize(im, 200)),
    "posterize 1": (lambda x: A.posterize(x, 1), lambda im: ImageOps.posterize(im, 1)),
    "posterize 3": (lambda x: A.posterize(x, 3), lambda im: ImageOps.posterize(im, 3)),
    "posterize 6": (lambda x: A.posterize(x, 6), lambda im: ImageOps.posterize(im, 6)),
    "equalize": (A.equalize, lambda im: ImageOps.equalize(im)),
    "translate x +5": (
        lambda x: A.translate_x(x, 5),
        lambda im: im.transform(im.size, Image.AFFINE, (1, 0, -5, 0, 1, 0)),
    ),
    "translate y -7": (
        lambda x: A.translate_y(x, -7),
        lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, 7)),
    ),
}


@needs_pillow
@pytest.mark.parametrize("name", list(EXACT_PILLOW))
def test_exact_ops_match_pillow(name: str, photo_batch: torch.Tensor) -> None:
    ours, pillow = EXACT_PILLOW[name]
    assert torch.equal(as_uint8(ours(photo_batch)), pillow_batch(photo_batch, pillow))


# Pillow computes in 8-bit integers (truncating), these in float: one grey level apart at most.
CLOSE_PILLOW = {
    "autocontrast": (A.autocontrast, lambda im: ImageOps.autocontrast(im)),
    "grayscale": (A.grayscale, lambda im: im.convert("L").convert(im.mode)),
}
for _f in (0.1, 0.6, 1.5, 1.9):
    CLOSE_PILLOW[f"brightness {_f}"] = (
        lambda x, f=_f: A.adjust_brightness(x, f),
        lambda im, f=_f: ImageEnhance.Brightness(im).enhance(f),
    )
    CLOSE_PILLOW[f"contrast {_f}"] = (
        lambda x, f=_f: A.adjust_contrast(x, f),
        lambda im, f=_f: ImageEnhance.Contrast(im).enhance(f),
    )
    CLOSE_PILLOW[f"color {_f}"] = (
        lambda x, f=_f: A.adjust_saturation(x, f),
        lambda im, f=_f: ImageEnhance.Color(im).enhance(f),
    )
    CLOSE_PILLOW[f"sharpness {_f}"] = (
        lambda x, f=_f: A.adjust_sharpness(x, f),
        lambda im, f=_f: ImageEnhance.Sharpness(im).enhance(f),
    )


@needs_pillow
@pytest.mark.parametrize("name", list(CLOSE_PILLOW))
def test_enhance_ops_match_pillow(name: str, photo_batch: torch.Tensor) -> None:
    ours, pillow = CLOSE_PILLOW[name]
    diff = (as_uint8(ours(photo_batch)).int() - pillow_batch(photo_batch, pillow).int()).abs()
    assert diff.max() <= 1, f"{name}: max difference {int(diff.max())} grey levels"


NEAREST_PILLOW = {
    "rotate 17": (lambda x: A.rotate(x, 17.0), lambda im: im.rotate(17.0, resample=Image.NEAREST)),
    "rotate -23": (lambda x: A.rotate(x, -23.0), lambda im: im.rotate(-23.0, resample=Image.NEAREST)),
    "rotate 30": (lambda x: A.rotate(x, 30.0), lambda im: im.rotate(30.0, resample=Image.NEAREST)),
    "shear x 0.3": (
        lambda x: A.shear_x(x, 0.3),
        lambda im: im.transform(im.size, Image.AFFINE, (1, 0.3, 0, 0, 1, 0), resample=Image.NEAREST),
    ),
    "shear y -0.27": (
        lambda x: A.shear_y(x, -0.27),
        lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.27, 1, 0), resample=Image.NEAREST),
    ),
}


@needs_pillow
@pytest.mark.parametrize("name", list(NEAREST_PILLOW))
def test_geometric_ops_match_pillow_on_most_pixels(name: str, photo_batch: torch.Tensor) -> None:
    ours, pillow = NEAREST_PILLOW[name]
    same = as_uint8(ours(photo_batch)) == pillow_batch(photo_batch, pillow)
    # Only points that land exactly on a pixel edge may go to the neighbour (different tie-breaking).
    assert same.float().mean() >= 0.98


# ----------------------------------------------------------------------------------------- colour maths
def test_hue_matches_colorsys_reference() -> None:
    x = natural_images(2, 3, 8, 8).float() / 255
    shifts = torch.tensor([0.23, -0.41])
    out = A.adjust_hue(x, shifts)
    for b in range(2):
        for i in range(8):
            for j in range(8):
                h, s, v = colorsys.rgb_to_hsv(*x[b, :, i, j].tolist())
                ref = colorsys.hsv_to_rgb((h + float(shifts[b])) % 1.0, s, v)
                torch.testing.assert_close(out[b, :, i, j], torch.tensor(ref), atol=1e-5, rtol=0)


def test_hue_of_primaries_and_greys() -> None:
    red_green_grey = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.4, 0.4, 0.4]]).view(3, 3, 1, 1)
    out = A.adjust_hue(red_green_grey, 1 / 3).flatten(1)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.4, 0.4, 0.4]]))


def test_gaussian_blur_matches_direct_convolution() -> None:
    x = natural_images(3, 3, 20, 20).float() / 255
    sigmas = [0.4, 1.0, 2.5]
    out = A.gaussian_blur(x, torch.tensor(sigmas), kernel_size=5)
    for b, sigma in enumerate(sigmas):
        t = torch.arange(-2, 3, dtype=torch.float32)
        k1 = torch.exp(-(t**2) / (2 * sigma**2))
        k2 = torch.outer(k1, k1) / k1.sum() ** 2
        padded = F.pad(x[b : b + 1], (2, 2, 2, 2), mode="reflect")
        ref = F.conv2d(padded, k2.expand(3, 1, 5, 5), groups=3)
        torch.testing.assert_close(out[b : b + 1], ref, atol=1e-5, rtol=0)
    assert A.default_blur_kernel_size(32, 32) == 3 and A.default_blur_kernel_size(224, 224) == 23


def test_one_channel_colour_ops_are_identities() -> None:
    x = natural_images(8, 1, 28, 28)
    xf = x.float() / 255
    for out in (
        A.adjust_saturation(x, 0.1),
        A.adjust_hue(x, 0.4),
        A.random_grayscale(x, p=1.0, generator=gen()),
        A.color_jitter(x, 0, 0, 0.9, 0.5, generator=gen()),
    ):
        assert torch.equal(out, xf)
    assert not torch.equal(A.color_jitter(x, 0.5, 0.5, 0, 0, generator=gen()), xf)


# ----------------------------------------------------------------------------------- policies, grouping
def test_autoaugment_cifar10_table() -> None:
    table = A.AUTOAUGMENT_CIFAR10_POLICY
    assert len(table) == 25 and all(len(sub) == 2 for sub in table)
    no_magnitude = {"AutoContrast", "Equalize", "Invert"}
    for sub in table:
        for name, prob, magnitude in sub:
            assert name in policies.OPS and name != "Identity"
            assert 0.0 <= prob <= 1.0
            assert (magnitude is None) == (name in no_magnitude)
            assert magnitude is None or 0 <= magnitude <= 9
    assert table[0] == (("Invert", 0.1, None), ("Contrast", 0.2, 6))
    assert table[24] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None))
    assert len(A.RANDAUGMENT_OPS) == 14 and set(A.RANDAUGMENT_OPS) <= set(policies.OPS)


def test_policy_magnitudes() -> None:
    x = natural_images(2, 3, 32, 32)
    ops = {name: fn for name, (fn, _) in policies.OPS.items()}
    level = torch.full((2,), 14 / 30)  # RandAugment M = 14
    assert torch.equal(ops["TranslateX"](x, level), A.translate_x(x, 6))  # trunc(150/331 * 32 * 14/30)
    assert torch.equal(ops["TranslateY"](x, -level), A.translate_y(x, -6))
    assert torch.equal(ops["Posterize"](x, level), A.posterize(x, 6))  # 8 - round(4 * 14/30)
    assert torch.equal(ops["Posterize"](x, torch.full((2,), 7 / 9)), A.posterize(x, 5))  # AutoAugment 7
    assert torch.equal(ops["Rotate"](x, level), A.rotate(x, 14.0))
    assert torch.equal(ops["Solarize"](x, level), A.solarize(x, 16 / 30))
    torch.testing.assert_close(ops["Contrast"](x, -level), A.adjust_contrast(x, 1 - 0.9 * 14 / 30))


@pytest.mark.parametrize("name", [n for n in policies.OPS if n != "Identity"])
def test_ops_use_each_images_own_magnitude(name: str) -> None:
    fn, signed = policies.OPS[name]
    x = natural_images(6, 3, 32, 32)
    levels = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0, 0.35]) * (torch.tensor([1, -1, 1, -1, 1, -1]) if signed else 1)
    batched = fn(x, levels)
    for i in range(6):
        assert torch.equal(batched[i : i + 1], fn(x[i : i + 1], levels[i : i + 1])), f"image {i}"


@pytest.mark.parametrize("channels", [1, 3])
def test_apply_ops_matches_each_op_applied_alone(channels: int) -> None:
    # apply_ops runs families of ops together (one warp, one blend); it must equal the ops one by one.
    names = list(policies.OPS)
    x = natural_images(90, channels, 32, 32, seed=4).float() / 255
    op_ids = torch.arange(90) % len(names)
    levels = torch.rand(90, generator=gen()) * 2 - 1
    levels = torch.where(torch.tensor([policies.OPS[names[i]][1] for i in op_ids]), levels, levels.abs())
    out = policies.apply_ops(x, op_ids, levels)
    for i in range(90):
        ref = policies.OPS[names[int(op_ids[i])]][0](x[i : i + 1], levels[i : i + 1])
        assert torch.equal(out[i : i + 1], ref), names[int(op_ids[i])]


def test_apply_grouped_matches_a_loop() -> None:
    x = torch.rand(50, 3, 8, 8, generator=gen())
    choice = torch.randint(0, 4, (50,), generator=gen(1))
    params = torch.rand(50, generator=gen(2))
    ops = [None, lambda t, p: t * p.view(-1, 1, 1, 1), lambda t, p: t + p.view(-1, 1, 1, 1), lambda t, p: -t]
    out = apply_grouped(x, choice, ops, params)
    for i in range(50):
        op = ops[int(choice[i])]
        ref = x[i : i + 1] if op is None else op(x[i : i + 1], params[i : i + 1])
        assert torch.equal(out[i : i + 1], ref)


def test_autoaugment_and_randaugment_change_most_images() -> None:
    images = natural_images(200, 3, 32, 32)
    for out in (A.auto_augment(images, generator=gen()), A.rand_augment(images, 2, 14, generator=gen())):
        changed = (out - images.float() / 255).abs().flatten(1).amax(1) > 1e-6
        assert changed.float().mean() > 0.6
        assert 0.0 <= out.min() and out.max() <= 1.0


# ----------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    "call,words",
    [
        (lambda x: A.random_hflip(x, p=1.5), ["p", "1.5", "[0, 1]"]),
        (lambda x: A.random_grayscale(x, p=-0.1), ["p", "-0.1"]),
        (lambda x: A.color_jitter(x, p=2), ["p", "2"]),
        (lambda x: A.color_jitter(x, hue=0.7), ["hue", "0.5"]),
        (lambda x: A.color_jitter(x, brightness=-1), ["brightness", "-1"]),
        (lambda x: A.make_views(x, 0, "simaug", MEAN3, STD3), ["n_views", "0", ">= 1"]),
        (lambda x: A.make_views(x, 2, "simclr", MEAN3, STD3), ["simclr", "autoaug", "crop-flip", "randaug"]),
        (
            lambda x: A.make_views(x, 2, "none", MEAN3, STD3, last_view_preset="x"),
            ["last_view_preset", "'x'"],
        ),
        (lambda x: A.make_views(x, 2, "none", (0.5,), (0.5,)), ["mean", "3", "1"]),
        (lambda x: A.make_views(x, 2, "none", MEAN3, (0.2, 0.0, 0.2)), ["std", "> 0"]),
        (lambda x: A.make_views(x[0], 2, "none", MEAN3, STD3), ["images", "4-D", "shape (3, 32, 32)"]),
        (lambda x: A.make_views(x.int(), 2, "none", MEAN3, STD3), ["images", "uint8", "torch.int32"]),
        (lambda x: A.normalize(x[:, :2], MEAN3[:2], STD3[:2]), ["images", "1 or 3 channels", "shape (2, 2, 32, 32)"]),
        (lambda x: A.random_crop(x, padding=-1), ["padding", "-1"]),
        (lambda x: A.random_crop(x, size=50, padding=4), ["size", "(50, 50)", "(40, 40)"]),
        (lambda x: A.rand_augment(x, magnitude=31), ["magnitude", "31", "<= 30"]),
        (lambda x: A.rand_augment(x, num_ops=-1), ["num_ops", "-1"]),
        (lambda x: A.random_gaussian_blur(x, kernel_size=4), ["kernel_size", "4", "odd"]),
        (lambda x: A.random_resized_crop(x, scale=(0.0, 1.0)), ["scale", "(0.0, 1.0)"]),
        (lambda x: A.apply_preset(x, "AutoAugment"), ["AutoAugment", "did you mean 'autoaug'", "known augmentations"]),
    ],
)
def test_bad_arguments_raise_value_error(call, words: list[str]) -> None:
    x = natural_images(2, 3, 32, 32)
    with pytest.raises(ValueError) as info:
        call(x)
    message = str(info.value)
    assert all(word in message for word in words), message


def test_list_presets() -> None:
    assert A.list_presets() == ["autoaug", "crop-flip", "none", "randaug", "simaug"]
    assert A.default_crop_padding(32, 32) == 4 and A.default_crop_padding(28, 28) == 4
    described = dict(A.AUGMENTATIONS.describe())
    assert sorted(described) == A.list_presets()
    for name, text in described.items():  # the recipe's whole first docstring line, which says what it is
        assert len(text) > 20 and text == A.AUGMENTATIONS.get(name).__doc__.strip().splitlines()[0], (name, text)


def test_preset_names_are_case_insensitive_like_every_registry() -> None:
    x = natural_images(4, 3, 32, 32)
    assert torch.equal(A.apply_preset(x, "AutoAug", generator=gen()), A.apply_preset(x, "autoaug", generator=gen()))
    assert torch.equal(
        A.make_views(x, 2, "Crop_Flip", MEAN3, STD3, generator=gen()),
        A.make_views(x, 2, "crop-flip", MEAN3, STD3, generator=gen()),
    )


def test_tensor_factories_always_name_a_device() -> None:
    """Static check that nothing is created on the default device: every torch factory call in the
    package passes `device=` (CUDA is not available to every test run, so this guards the GPU path)."""
    factories = {"tensor", "arange", "zeros", "ones", "full", "empty", "rand", "randint", "randn", "linspace"}
    package = Path(A.__file__).parent
    missing, seen = [], 0
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in factories
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                seen += 1
                if not any(k.arg == "device" for k in node.keywords):
                    missing.append(f"{path.name}:{node.lineno} torch.{node.func.attr}")
    assert seen >= 10, "the scan found almost no factory calls: is it looking at the package?"
    assert not missing, missing


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
def test_accelerator_matches_cpu_with_a_cpu_generator(device: str) -> None:
    images = natural_images(16, 3, 32, 32)
    for preset in ("crop-flip", "simaug"):
        cpu = A.make_views(images, 2, preset, MEAN3, STD3, generator=gen())
        acc = A.make_views(images.to(device), 2, preset, MEAN3, STD3, generator=gen())
        assert acc.device.type == device
        torch.testing.assert_close(acc.cpu(), cpu, atol=1e-4, rtol=0)
