"""Features of a frozen encoder for a whole split, computed once and kept where the encoder runs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_bool, check_int
from tunedcl.data.augment import normalize
from tunedcl.evaluate.checks import check_autocast_dtype, check_images, module_device


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


def encode(encoder: nn.Module, images: Tensor, autocast_dtype: torch.dtype | None) -> Tensor:
    """``encoder(images)`` under autocast when asked, checked to be ``[B, D]`` features, as float32."""
    if autocast_dtype is None:
        features = encoder(images)
    else:
        with torch.autocast(device_type=images.device.type, dtype=autocast_dtype):
            features = encoder(images)
    if not isinstance(features, Tensor) or features.dim() != 2 or features.shape[0] != images.shape[0]:
        got = f"shape {tuple(features.shape)}" if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(
            f"encoder returned {got} for {images.shape[0]} images; the encoder must map images to pooled "
            "features [B, feature_dim] (pass model.encoder, not the model with its projection head)"
        )
    return features.float()


def extract_features(
    encoder: nn.Module,
    images: Tensor,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    out_device: torch.device | str | None = None,
) -> Tensor:
    """Encode every image with the encoder frozen: ``[n, feature_dim]`` float32 features, by default on the
    device the encoder runs on.

    Images are moved to ``device`` and normalised there one batch at a time, so memory holds the uint8
    split plus one float batch, never a float copy of the whole split (4x the uint8 size). The encoder runs
    in eval mode (BatchNorm uses its running statistics and nothing updates them) under
    ``torch.inference_mode``; every submodule's train/eval flag is restored afterwards, also on error.

    Args:
        encoder: maps ``[B, C, H, W]`` normalised images to ``[B, feature_dim]``, e.g. a
            ``tunedcl.models`` encoder. It is not moved: it must already be on ``device``.
        images: ``[n, C, H, W]`` uint8 (0..255) or float (0..1) images, on any device (usually the CPU).
        mean, std: per-channel normalisation constants in [0, 1] units (``Dataset.mean``/``.std``).
        batch_size: images per forward pass.
        device: where to run; ``None`` means the device of the encoder's parameters.
        autocast_dtype: ``torch.bfloat16`` or ``torch.float16`` to run the encoder under autocast;
            ``None`` (default) runs it in its own precision. Features come back as float32 either way.
        channels_last: hand the encoder channels-last batches (faster convolutions on CUDA and on CPUs
            with oneDNN when the model is channels-last too; converting the model is the caller's choice).
        out_device: where the features are kept; ``None`` (default) means where the encoder runs. Keeping
            them on a GPU lets kNN and the linear probe run there (both compute on their features' device)
            and saves one device-to-host copy, with a host sync, per batch; ``"cpu"`` when the GPU cannot
            hold ``n x feature_dim`` floats (ImageNet-1k at D = 2048 is 10 GB).

    Returns:
        float32 ``[n, feature_dim]`` on ``out_device``, row i the features of image i. The tensor is an
        ordinary one (created outside inference mode), so it can feed a probe that needs autograd.

    Example:
        >>> import torch
        >>> from tunedcl.models import create_model
        >>> encoder = create_model("small-cnn", in_channels=1, width=0.25)
        >>> images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
        >>> extract_features(encoder, images, (0.5,), (0.5,), batch_size=4).shape
        torch.Size([10, 64])
    """
    if not isinstance(encoder, nn.Module):
        raise bad_argument("encoder", encoder, "a torch.nn.Module")
    images = check_images("images", images)
    batch_size = check_int("batch_size", batch_size, low=1)
    autocast_dtype = check_autocast_dtype(autocast_dtype)
    channels_last = check_bool("channels_last", channels_last)
    run_on = module_device(encoder, device)
    try:
        keep_on = run_on if out_device is None else torch.device(out_device)
    except (TypeError, RuntimeError):
        raise bad_argument("out_device", out_device, "None, a torch.device or a device string such as 'cpu'") from None

    n = images.shape[0]
    out: Tensor | None = None
    if n == 0:
        dim = getattr(encoder, "feature_dim", None)
        if not isinstance(dim, int):
            raise bad_argument("images", images, "non-empty unless the encoder has an int feature_dim")
        return torch.empty(0, dim, dtype=torch.float32, device=keep_on)
    with eval_mode(encoder):
        for start in range(0, n, batch_size):
            with torch.inference_mode():
                batch = normalize(images[start : start + batch_size].to(run_on, non_blocking=True), mean, std)
                if channels_last:
                    batch = batch.contiguous(memory_format=torch.channels_last)
                features = encode(encoder, batch, autocast_dtype)
            if out is None:
                # Allocated outside inference mode: an inference tensor could not be saved for backward
                # by a probe trained on these features.
                out = torch.empty(n, features.shape[1], dtype=torch.float32, device=keep_on)
            out[start : start + features.shape[0]].copy_(features)
    assert out is not None
    return out
