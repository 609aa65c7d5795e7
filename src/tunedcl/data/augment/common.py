"""Image and interval checks, dtype conversion and random draws shared by the augmentation modules.

Every random number in `tunedcl.data.augment` is drawn here, so that one rule holds everywhere: with a
`generator` the draw happens on the generator's own device (a CPU generator works for CUDA images) and
is then moved to the images' device; the global RNG is touched only when `generator` is None. Errors
have the one shape of `tunedcl._checks` (``name must be <allowed>; got <value>``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from tunedcl._checks import bad_argument

__all__ = [
    "check_images",
    "check_range",
    "is_int",
    "to_float",
    "uniform",
    "randint",
    "bernoulli",
    "signs",
    "expand_param",
    "apply_grouped",
    "map_cpu_chunks",
]


def check_images(images: object, name: str = "images") -> Tensor:
    """Validate a batch `[B, C, H, W]` of uint8 or floating images with C = 1 or 3, and return it."""
    # One condition per message, so that the message says which requirement failed.
    if not isinstance(images, Tensor):
        raise bad_argument(name, images, "a torch.Tensor [B, C, H, W]")
    if images.ndim != 4:
        raise bad_argument(name, images, "4-D [B, C, H, W]")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise bad_argument(name, images, "uint8 (0..255) or floating point (0..1)")
    if images.shape[1] not in (1, 3):
        raise bad_argument(name, images, "a batch with 1 or 3 channels (dim 1)")
    if images.shape[2] < 1 or images.shape[3] < 1:
        raise bad_argument(name, images, "a batch with a non-empty H and W")
    return images


def to_float(images: Tensor, name: str = "images") -> Tensor:
    """Validated images as float32 in [0, 1]: uint8 is divided by 255, floats are cast (not rescaled)."""
    check_images(images, name)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    return images.to(torch.float32)


def is_int(value: object) -> bool:
    """True for Python ints (bool excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_range(
    name: str,
    value: float | Sequence[float],
    *,
    center: float | None = None,
    lower: float = -math.inf,
    upper: float = math.inf,
    lower_inclusive: bool = True,
) -> tuple[float, float]:
    """A `(low, high)` interval from a pair, or from one number s as `[center - s, center + s]`.

    The interval must satisfy `lower <= low <= high <= upper` (`lower < low` without `lower_inclusive`,
    for scales and widths that must be positive); otherwise ValueError naming `name`.
    """
    if center is not None and _is_number(value) and value >= 0:  # type: ignore[operator]
        low, high = max(center - float(value), lower), center + float(value)  # type: ignore[arg-type]
    elif isinstance(value, Sequence) and len(value) == 2 and all(_is_number(v) for v in value):
        low, high = float(value[0]), float(value[1])
    else:
        allowed = "a (low, high) pair"
        if center is not None:
            allowed = f"a number s >= 0 (the interval [{center:g} - s, {center:g} + s]) or {allowed}"
        raise bad_argument(name, value, allowed)
    above = lower <= low if lower_inclusive else lower < low
    if not (above and low <= high <= upper):
        bound = f"{lower:g} {'<=' if lower_inclusive else '<'} low <= high <= {upper:g}"
        raise bad_argument(name, value, f"an interval with {bound}")
    return low, high


_CONSTANTS: dict[tuple[Any, ...], Tensor] = {}


def constant(values: tuple[Any, ...], device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """A small constant table (nested tuples) as a tensor on ``device``, uploaded once per device: building it
    with ``torch.tensor(..., device=cuda)`` at every step would be a blocking host-to-device copy each time."""
    key = (values, str(device), dtype)
    table = _CONSTANTS.get(key)
    if table is None:
        table = _CONSTANTS[key] = torch.tensor(values, device=device, dtype=dtype)
    return table


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return device if generator is None else generator.device


def uniform(
    low: float, high: float, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """float32 samples from U[low, high) of `shape` on `device`."""
    u = torch.rand(shape, generator=generator, device=_draw_device(generator, device))
    return (u * (high - low) + low).to(device, non_blocking=True)  # a CPU generator's draws: no host sync


def randint(
    low: int, high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """int64 samples from {low, ..., high - 1} of `shape` on `device`."""
    r = torch.randint(low, high, shape, generator=generator, device=_draw_device(generator, device))
    return r.to(device, non_blocking=True)


def bernoulli(p: float, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """bool samples, True with probability p (p = 0 is never, p = 1 always)."""
    return uniform(0.0, 1.0, shape, generator, device) < p


def signs(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """float32 samples of -1 or +1 with equal probability."""
    return bernoulli(0.5, shape, generator, device).to(torch.float32).mul_(2.0).sub_(1.0)


def expand_param(value: float | Tensor, n: int, device: torch.device, name: str) -> Tensor:
    """A per-image float32 parameter `[n]` from a scalar or a tensor of n values."""
    t = torch.as_tensor(value, dtype=torch.float32, device=device)
    if t.ndim == 0:
        return t.expand(n)
    if t.shape != (n,):
        raise bad_argument(name, t, f"a number or a tensor of shape [{n}] (one value per image)")
    return t


def apply_grouped(
    x: Tensor,
    choice: Tensor,
    ops: Sequence[Callable[[Tensor, Tensor], Tensor] | None],
    params: Tensor,
) -> Tensor:
    """Apply `ops[choice[b]](x[b], params[b])` to every image b, one call per op on its whole group.

    Images are sorted by their chosen op so that every group's indices are one slice of the sort (one
    host sync for the group sizes, instead of one per op); `None` marks the identity. `params` is `[B]` or
    `[B, k]`.
    """
    if x.shape[0] == 0:
        return x
    order = torch.argsort(choice, stable=True)
    counts = torch.bincount(choice, minlength=len(ops)).tolist()
    keeps_some = any(n > 0 for op, n in zip(ops, counts, strict=True) if op is None)
    out = x.clone() if keeps_some else torch.empty_like(x)
    for op, idx, n in zip(ops, order.split(counts), counts, strict=True):
        if op is None or n == 0:
            continue
        if n == x.shape[0]:  # everyone drew this op: no gather or scatter needed
            return op(x, params)
        out.index_copy_(0, idx, op(x.index_select(0, idx), params.index_select(0, idx)))
    return out


# On CPU, long chains of elementwise ops over a big batch are bound by memory traffic: every
# temporary is a fresh multi-megabyte tensor. Running them over slices of about this many pixels per
# channel keeps the temporaries in cache (2-3x faster for hue rotation and colour jitter at 32x32);
# on GPUs one call is best.
_CPU_CHUNK_PIXELS = 1 << 18


def map_cpu_chunks(fn: Callable[[Tensor, tuple[Tensor, ...]], Tensor], x: Tensor, params: tuple[Tensor, ...]) -> Tensor:
    """`fn(x, params)`, computed slice by slice of the batch on CPU (a cache-blocking loop of a few
    dozen images per slice, not a per-image loop); in one call elsewhere. `params` are per-image tensors."""
    step = max(16, _CPU_CHUNK_PIXELS // max(1, x.shape[2] * x.shape[3]))
    if x.device.type != "cpu" or x.shape[0] <= step:
        return fn(x, params)
    out = torch.empty_like(x)
    for start in range(0, x.shape[0], step):
        part = slice(start, start + step)
        out[part] = fn(x[part], tuple(p[part] for p in params))
    return out
