"""Argument checks and small helpers shared by the evaluation modules.

Every check raises ValueError naming the argument, the value given (a shape and dtype for tensors, so a
message never prints a whole tensor) and what is allowed, so that a mistake in `tunedcl eval` is reported
in the caller's terms rather than as a shape error inside a matmul.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return repr(value)


def bad_argument(name: str, value: object, allowed: str) -> ValueError:
    """The one shape of every error here: which argument, what was given, what is allowed."""
    return ValueError(f"{name}={_describe(value)} is not allowed: {name} must be {allowed}")


def check_positive_int(name: str, value: object) -> int:
    # bool is an int in Python; batch_size=True is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_argument(name, value, "an int >= 1")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_argument(name, value, "an int >= 0")
    return value


def check_float(name: str, value: object, *, low: float, low_inclusive: bool, high: float = math.inf) -> float:
    """A finite real number in ``(low, high]`` or ``[low, high]``, as a float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        bound = f">= {low}" if low_inclusive else f"> {low}"
        if high != math.inf:
            bound += f" and <= {high}"
        raise bad_argument(name, value, f"a finite number {bound}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise bad_argument(name, value, "True or False")
    return value


def check_features(name: str, value: object) -> Tensor:
    """``[n, D]`` finite floating-point features (D >= 1), returned as float32 on their device.

    Non-finite features almost always mean a diverged run; failing here names the culprit instead of
    reporting a chance-level accuracy.
    """
    if not isinstance(value, Tensor) or value.dim() != 2 or not value.is_floating_point() or value.shape[1] < 1:
        raise bad_argument(name, value, "a floating-point tensor [n, D] with D >= 1")
    x = value.detach().to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} contains NaN or infinite values in {bad_rows.numel()} rows "
            f"(first: row {int(bad_rows[0])}); {name} must be finite"
        )
    return x


def check_labels(name: str, value: object, n: int, n_name: str) -> Tensor:
    """``[n]`` integer class labels >= 0, returned as int64 (the range is checked by `resolve_classes`)."""
    integer = isinstance(value, Tensor) and not value.is_floating_point() and not value.is_complex()
    if not integer or value.dtype == torch.bool or value.dim() != 1:  # type: ignore[union-attr]
        raise bad_argument(name, value, "an integer tensor [n] of class indices")
    assert isinstance(value, Tensor)
    if value.shape[0] != n:
        raise ValueError(
            f"{name} has {value.shape[0]} labels but {n_name} has {n} rows; {name} must have one label per row"
        )
    labels = value.to(torch.int64)
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{name} has a label {int(labels.min())}; {name} must be class indices >= 0")
    return labels


def resolve_classes(num_classes: object, labels: Sequence[tuple[str, Tensor]]) -> int:
    """``num_classes`` if given (checked against every label), else ``max label + 1`` over all splits."""
    largest = max((int(y.max()) for _, y in labels if y.numel()), default=-1)
    if num_classes is None:
        if largest < 0:
            raise ValueError("num_classes=None cannot be inferred from empty labels; pass num_classes")
        return largest + 1
    n = check_positive_int("num_classes", num_classes)
    for name, y in labels:
        if y.numel() and int(y.max()) >= n:
            raise ValueError(
                f"{name} has a label {int(y.max())}; with num_classes={n}, {name} must be class indices in 0..{n - 1}"
            )
    return n


def check_same_dim(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{a_name} has {a.shape[1]} dimensions and {b_name} has {b.shape[1]}; they must have the same "
            "feature dimension"
        )


def check_autocast_dtype(value: object) -> torch.dtype | None:
    if value is not None and value not in (torch.bfloat16, torch.float16):
        raise bad_argument("autocast_dtype", value, "None, torch.bfloat16 or torch.float16")
    return value  # type: ignore[return-value]


def module_device(module: nn.Module, device: object, name: str = "device") -> torch.device:
    """The device to run ``module`` on: ``device`` if given, else where its parameters live (CPU if none).

    The module is never moved (that would change the caller's model behind its back): a ``device`` that
    differs from where the parameters are is an error.
    """
    tensors = [*module.parameters(), *module.buffers()]
    home = tensors[0].device if tensors else None
    if device is None:
        return home if home is not None else torch.device("cpu")
    try:
        wanted = torch.device(device)  # type: ignore[arg-type]
    except (TypeError, RuntimeError):
        raise bad_argument(name, device, "None, a torch.device or a device string such as 'cpu' or 'cuda'") from None
    if home is None:
        return wanted
    # "cuda" (no index) names whichever GPU the module is on.
    if home.type != wanted.type or (wanted.index is not None and wanted.index != home.index):
        raise bad_argument(name, device, f"the device the encoder is on ({home}); move the encoder there first")
    return home


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Put ``module`` in eval mode and afterwards restore every submodule's own train/eval flag.

    ``module.train(previous)`` would not do: a model in training mode can hold submodules deliberately in
    eval mode (a frozen BatchNorm), and one flag for the whole tree would flip them.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def topk_hits(scores: Tensor, labels: Tensor, ks: Sequence[int]) -> list[int]:
    """For each k, how many rows have their label among the k highest scores.

    Ties between equal scores go to the lower class index (the rule of ``argmax``), so the count is
    well defined: the label's rank is the number of classes that beat it, a class beating it when its
    score is higher, or equal with a lower index. With k >= the number of classes every row is a hit.
    """
    s_y = scores.gather(1, labels.view(-1, 1))
    lower = torch.arange(scores.shape[1], device=scores.device).view(1, -1) < labels.view(-1, 1)
    rank = (scores > s_y).sum(dim=1) + ((scores == s_y) & lower).sum(dim=1)
    return [int((rank < k).sum()) for k in ks]


def percent(hits: int, total: int) -> float:
    """``100 * hits / total``; 0 for an empty set (nothing to be right about)."""
    return 100.0 * hits / total if total else 0.0
