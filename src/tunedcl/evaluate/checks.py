"""Checks of the evaluation functions' tensors and devices, in the one message format of `tunedcl._checks`.

Every check raises ValueError naming the argument, what is allowed and the value given (a shape and dtype
for tensors, so a message never prints a whole tensor), so that a mistake in `tunedcl eval` is reported in
the caller's terms rather than as a shape error inside a matmul. Plain options (counts, rates, flags) are
checked with `tunedcl._checks` directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_choice, check_int


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


def check_images(name: str, value: object) -> Tensor:
    """``[n, C, H, W]`` uint8 (0..255) or floating (0..1) images, as the data sources and augmentations use."""
    if (
        not isinstance(value, Tensor)
        or value.dim() != 4
        or not (value.dtype == torch.uint8 or value.is_floating_point())
    ):
        raise bad_argument(name, value, "a uint8 (0..255) or floating (0..1) tensor [n, C, H, W]")
    return value


def check_train_features(features: object, labels: object) -> tuple[Tensor, Tensor]:
    """``train_features`` (at least one row: there is nothing to learn from none) and ``train_labels``,
    the labels moved to the features' device."""
    x = check_features("train_features", features)
    if x.shape[0] == 0:
        raise bad_argument("train_features", features, "non-empty (at least one training row)")
    return x, check_labels("train_labels", labels, x.shape[0], "train_features").to(x.device)


def check_feature_splits(
    train_features: object, train_labels: object, test_features: object, test_labels: object, num_classes: object
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Train and test features and labels checked together: ``(x_train, y_train, x_test, y_test, classes)``.

    The test features stay where they are (a caller may move them in chunks); both label tensors are
    moved to the training features' device, where the scores are computed.
    """
    x_train, y_train = check_train_features(train_features, train_labels)
    x_test = check_features("test_features", test_features)
    check_same_dim("train_features", x_train, "test_features", x_test)
    y_test = check_labels("test_labels", test_labels, x_test.shape[0], "test_features").to(x_train.device)
    classes = resolve_classes(num_classes, [("train_labels", y_train), ("test_labels", y_test)])
    return x_train, y_train, x_test, y_test, classes


def resolve_classes(num_classes: object, labels: Sequence[tuple[str, Tensor]]) -> int:
    """``num_classes`` if given (checked against every label), else ``max label + 1`` over all splits."""
    largest = max((int(y.max()) for _, y in labels if y.numel()), default=-1)
    if num_classes is None:
        if largest < 0:
            raise ValueError("num_classes=None cannot be inferred from empty labels; pass num_classes")
        return largest + 1
    n = check_int("num_classes", num_classes, low=1)
    assert n is not None
    for name, y in labels:
        if y.numel() and int(y.max()) >= n:
            raise ValueError(
                f"{name} has a label {int(y.max())}; with num_classes={n}, {name} must be class indices in 0..{n - 1}"
            )
    return n


def check_same_dim(a_name: str, a: Tensor, b_name: str, b: Tensor) -> None:
    """Raise unless the two feature tensors have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{a_name} has {a.shape[1]} dimensions and {b_name} has {b.shape[1]}; they must have the same "
            "feature dimension"
        )


def check_autocast_dtype(value: object) -> torch.dtype | None:
    """None, or one of the two dtypes autocast runs encoders in."""
    return check_choice("autocast_dtype", value, (None, torch.bfloat16, torch.float16))  # type: ignore[return-value]


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
