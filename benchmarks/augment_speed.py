"""Throughput of tunedcl's batched augmentations against a per-image Pillow pipeline, and their cost
relative to a small-CNN training step.

    python benchmarks/augment_speed.py [--batch 512] [--threads 2] [--repeats 7] [--pillow-views 512]

For every preset and for 28x28x1 (Fashion-MNIST-like) and 32x32x3 (CIFAR-like) images it prints views
per second of `make_views(batch, 2 views)` and of the same recipe done one image at a time with Pillow,
the way a Dataset + DataLoader pipeline does it (uint8 array -> PIL image -> transforms -> float tensor
-> normalise -> stack). The Pillow baseline lives here only as a yardstick. Timings are medians after a
warm-up; on a machine shared with other work they are indicative only.

Then it alternates, as a training loop does, `make_views` and a training step (fwd + bwd + SGD) of the
small CNN encoder (tunedcl.models "small-cnn" when importable, otherwise an equivalent 4-block conv net
defined below) on those 2 x batch views with bf16 autocast and channels_last, and prints each preset's
augmentation time as a percentage of the step.

glibc's malloc hands big freed blocks back to the OS, so a loop that only augments pays page faults on
every fresh tensor; a training process with a warm heap does not (the second table measures inside such a
loop). `MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296` (or jemalloc/tcmalloc)
removes that cost from the first table too.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import statistics
from collections.abc import Callable

import numpy as np
import torch
from _device import add_device_argument, resolve_device, timed
from PIL import Image, ImageEnhance, ImageOps
from torch import nn

from tunedcl.data.augment import (
    AUTOAUGMENT_CIFAR10_POLICY,
    RANDAUGMENT_OPS,
    default_crop_padding,
    list_presets,
    make_views,
)

N_VIEWS = 2


# --------------------------------------------------------------------------------------------- inputs
def natural_images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 `[n, c, size, size]` images with gradients, discs and grain (not noise, not constant)."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.linspace(0, 1, size)
    ys, xs = coords.view(1, 1, size, 1), coords.view(1, 1, 1, size)
    img = (torch.rand(n, c, 1, 1, generator=g) * 0.5 + torch.rand(n, c, 1, 1, generator=g) * 0.5 * xs).expand(
        n, c, size, size
    )
    for _ in range(3):
        cy, cx = torch.rand(2, n, 1, 1, 1, generator=g)
        radius = 0.15 + 0.25 * torch.rand(n, 1, 1, 1, generator=g)
        disc = (ys - cy) ** 2 + (xs - cx) ** 2 < radius**2
        img = torch.where(disc, torch.rand(n, c, 1, 1, generator=g), img)
    img = img + 0.03 * torch.randn(n, c, size, size, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


# ------------------------------------------------------------------------------ per-image Pillow recipes
SIGNED = {
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
}


def _signed(name: str, level: float, rng: random.Random) -> float:
    return level * rng.choice((-1, 1)) if name in SIGNED else level


def pil_op(im: Image.Image, name: str, level: float) -> Image.Image:
    """One AutoAugment/RandAugment op at signed `level` in [-1, 1] (the magnitudes tunedcl uses)."""
    w, h = im.size
    if name == "ShearX":
        return im.transform(im.size, Image.AFFINE, (1, 0.3 * level, 0, 0, 1, 0), Image.NEAREST)
    if name == "ShearY":
        return im.transform(im.size, Image.AFFINE, (1, 0, 0, 0.3 * level, 1, 0), Image.NEAREST)
    if name == "TranslateX":
        t = int(150 / 331 * w * level)
        return im.transform(im.size, Image.AFFINE, (1, 0, -t, 0, 1, 0), Image.NEAREST)
    if name == "TranslateY":
        t = int(150 / 331 * h * level)
        return im.transform(im.size, Image.AFFINE, (1, 0, 0, 0, 1, -t), Image.NEAREST)
    if name == "Rotate":
        return im.rotate(30 * level, Image.NEAREST)
    enhancers = {
        "Brightness": ImageEnhance.Brightness,
        "Color": ImageEnhance.Color,
        "Contrast": ImageEnhance.Contrast,
        "Sharpness": ImageEnhance.Sharpness,
    }
    if name in enhancers:
        return enhancers[name](im).enhance(1 + 0.9 * level)
    if name == "Posterize":
        return ImageOps.posterize(im, 8 - round(4 * level))
    if name == "Solarize":
        return ImageOps.solarize(im, 255 * (1 - level))
    if name == "AutoContrast":
        return ImageOps.autocontrast(im)
    if name == "Equalize":
        return ImageOps.equalize(im)
    if name == "Invert":
        return ImageOps.invert(im)
    return im  # Identity


def pil_crop_flip(im: Image.Image, rng: random.Random) -> Image.Image:
    w, h = im.size
    pad = default_crop_padding(h, w)
    padded = ImageOps.expand(im, border=pad, fill=0)
    top, left = rng.randint(0, 2 * pad), rng.randint(0, 2 * pad)
    im = padded.crop((left, top, left + w, top + h))
    return ImageOps.mirror(im) if rng.random() < 0.5 else im


def pil_resized_crop(im: Image.Image, rng: random.Random, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    w, h = im.size
    box = (0, 0, w, h)
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
            box = (left, top, left + cw, top + ch)
            break
    return im.resize((w, h), Image.BILINEAR, box=box)


def pil_hue(im: Image.Image, shift: float) -> Image.Image:
    hue, sat, val = im.convert("HSV").split()
    offset = int(round(shift * 255))
    hue = hue.point(lambda p: (p + offset) % 256)
    return Image.merge("HSV", (hue, sat, val)).convert("RGB")


def pil_simaug(im: Image.Image, rng: random.Random) -> Image.Image:
    im = pil_resized_crop(im, rng)
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    if rng.random() < 0.8:
        for k in rng.sample(range(4), 4):
            if k == 0:
                im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.6, 1.4))
            elif k == 1:
                im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.6, 1.4))
            elif im.mode == "RGB" and k == 2:
                im = ImageEnhance.Color(im).enhance(rng.uniform(0.6, 1.4))
            elif im.mode == "RGB" and k == 3:
                im = pil_hue(im, rng.uniform(-0.1, 0.1))
    if im.mode == "RGB" and rng.random() < 0.2:
        im = im.convert("L").convert("RGB")
    return im


def pil_autoaug(im: Image.Image, rng: random.Random) -> Image.Image:
    im = pil_crop_flip(im, rng)
    for name, prob, magnitude in rng.choice(AUTOAUGMENT_CIFAR10_POLICY):
        if rng.random() < prob:
            im = pil_op(im, name, _signed(name, (magnitude or 0) / 9, rng))
    return im


def pil_randaug(im: Image.Image, rng: random.Random) -> Image.Image:
    im = pil_crop_flip(im, rng)
    for _ in range(2):
        name = rng.choice(RANDAUGMENT_OPS)
        im = pil_op(im, name, _signed(name, 14 / 30, rng))
    return im


PIL_RECIPES: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "none": lambda im, rng: im,
    "crop-flip": pil_crop_flip,
    "simaug": pil_simaug,
    "autoaug": pil_autoaug,
    "randaug": pil_randaug,
}


def pillow_views(images: np.ndarray, recipe, mean: torch.Tensor, std: torch.Tensor, rng: random.Random):
    """One view per image, one image at a time: [H, W(, C)] uint8 arrays in, normalised [n, C, H, W] out."""
    out = []
    for arr in images:
        im = recipe(Image.fromarray(arr), rng)
        t = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
        t = t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
        out.append((t - mean) / std)
    return torch.stack(out)


# --------------------------------------------------------------------------------------------- models
class TinyCNN(nn.Module):
    """Stand-in for tunedcl's small-cnn: 4 x (conv3x3-BN-ReLU), 32-64-128-256, max-pool between, GAP."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for i, out in enumerate((32, 64, 128, 256)):
            if i:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(previous, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
            previous = out
        self.blocks = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


def small_cnn(in_channels: int) -> tuple[nn.Module, str]:
    try:
        from tunedcl.models import create_model

        return create_model("small-cnn", in_channels=in_channels), "tunedcl.models small-cnn"
    except ImportError:
        return TinyCNN(in_channels), "inline 4-block CNN (tunedcl.models not importable)"


# --------------------------------------------------------------------------------------------- timing
CPU = torch.device("cpu")


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2,
                   device: torch.device = CPU) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = timed(device)
        fn()
        times.append(timed(device) - start)
    return statistics.median(times)


def augmentation_vs_step(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], repeats: int
) -> tuple[dict[str, float], float, str]:
    """Median seconds of `make_views` per preset and of one small-CNN training step on its views.

    Augmentation and step alternate as in a training loop, so both see the same machine load and the
    allocator state of a real run; the step trains on the views just made (bf16 autocast, channels_last).
    """
    device = images.device
    net, label = small_cnn(images.shape[1])
    net = net.to(device, memory_format=torch.channels_last).train()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(views: torch.Tensor) -> None:
        x = views.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = net(x).float().pow(2).mean()
        loss.backward()
        optimiser.step()

    aug: dict[str, float] = {}
    step_times: list[float] = []
    for preset in list_presets():
        generator = torch.Generator().manual_seed(0)
        times = []
        for r in range(repeats + 1):  # the first round is the warm-up
            start = timed(device)
            views = make_views(images, N_VIEWS, preset, mean, std, generator)
            middle = timed(device)
            step(views)
            if r:
                times.append(middle - start)
                step_times.append(timed(device) - middle)
        aug[preset] = statistics.median(times)
    return aug, statistics.median(step_times), label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512, help="images per batch (each gets 2 views)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    parser.add_argument("--pillow-views", type=int, default=512, help="views timed for the Pillow baseline")
    parser.add_argument("--cnn-repeats", type=int, default=3, help="augment + train-step rounds per preset")
    add_device_argument(parser)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x {N_VIEWS} views, "
          f"augmentations on {device} (the Pillow baseline on the CPU)")

    configs = [(1, 28, (0.5,), (0.5,)), (3, 32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))]
    rows, shares = [], []
    for channels, size, mean, std in configs:
        images = natural_images(args.batch, channels, size)
        arrays = images.permute(0, 2, 3, 1).numpy()
        arrays = arrays[..., 0] if channels == 1 else arrays
        pil_arrays = np.concatenate([arrays] * math.ceil(args.pillow_views / len(arrays)))[: args.pillow_views]
        mean_t, std_t = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
        shape = f"{size}x{size}x{channels}"
        for preset in list_presets():
            generator = torch.Generator().manual_seed(0)
            ours_fn = functools.partial(make_views, images.to(device), N_VIEWS, preset, mean, std, generator)
            ours = args.batch * N_VIEWS / median_seconds(ours_fn, args.repeats, device=device)
            pil_fn = functools.partial(pillow_views, pil_arrays, PIL_RECIPES[preset], mean_t, std_t, random.Random(0))
            theirs = args.pillow_views / median_seconds(pil_fn, max(3, args.repeats // 2), warmup=1)
            rows.append((preset, shape, ours, theirs, ours / theirs))
        aug, step, label = augmentation_vs_step(images.to(device), mean, std, args.cnn_repeats)
        shares += [(preset, shape, seconds, step) for preset, seconds in aug.items()]

    print()
    print("| preset | size | tunedcl views/s | per-image Pillow views/s | speed-up |")
    print("|---|---|---:|---:|---:|")
    for preset, shape, ours, theirs, ratio in rows:
        print(f"| {preset} | {shape} | {ours:,.0f} | {theirs:,.0f} | {ratio:.0f}x |")

    print()
    print(f"| augmentation of {args.batch} x {N_VIEWS} views | size | ms | small-CNN fwd+bwd ms | share |")
    print("|---|---|---:|---:|---:|")
    for preset, shape, seconds, step in shares:
        print(f"| {preset} | {shape} | {seconds * 1e3:.1f} | {step * 1e3:.0f} | {100 * seconds / step:.1f}% |")
    print(f"\nCNN: {label}, bf16 autocast, channels_last, SGD step on the {args.batch * N_VIEWS} views just made.")
    print("Indicative numbers: medians on a machine shared with other work.")


if __name__ == "__main__":
    main()
