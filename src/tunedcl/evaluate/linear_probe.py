"""Linear probes: a fast one on cached features, and the paper's protocol on augmented images.

Both report the accuracy of a linear classifier on top of a frozen encoder, which is how contrastive
representations are compared. The fast probe is what `tunedcl train` runs by default (seconds on a
CPU); the paper's protocol is the one to quote next to the paper's numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tunedcl.data.augment import list_presets, make_views
from tunedcl.evaluate._common import (
    bad_argument,
    check_autocast_dtype,
    check_bool,
    check_features,
    check_float,
    check_labels,
    check_non_negative_int,
    check_positive_int,
    check_same_dim,
    eval_mode,
    module_device,
    percent,
    resolve_classes,
    topk_hits,
)
from tunedcl.evaluate.features import check_images, encode, extract_features


@dataclass(frozen=True)
class ProbeResult:
    """What a linear probe reports; accuracies in percent.

    Attributes:
        top1, top5: test accuracy (top-5 is 100 when there are at most 5 classes).
        train_top1: training accuracy (the fast probe: on the training features; the paper's protocol:
            on the augmented training images of the last epoch, as they were seen).
        seconds: wall time of the probe, feature extraction included where the probe does it.
    """

    top1: float
    top5: float
    train_top1: float
    seconds: float


# ------------------------------------------------------------------------------------ fast (cached) probe
def _standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Both splits shifted and scaled by the training mean and std of every feature.

    Equal feature scales make the problem well conditioned (L-BFGS converges in far fewer iterations)
    and make one weight decay value mean the same for every encoder. A feature counts as constant (and
    keeps scale 1 rather than having its rounding noise divided by ~0) when its spread is below float32
    resolution of its mean; how small it is next to the other features does not matter.
    """
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False) if train.shape[0] > 1 else torch.zeros_like(mean)
    std = torch.where(std > 1e-6 * mean.abs(), std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def _history_size(n_params: int, budget_bytes: int = 256 * 2**20) -> int:
    """L-BFGS memory: 100 pairs where they fit in ``budget_bytes`` (float32 s and y vectors), fewer else.

    On standardised 256-d encoder features 100 pairs reach a given accuracy in about half the iterations
    that 10 or 20 need; at D = 2048, C = 1000 (2M parameters) 100 pairs would cost 1.6 GB, hence the cap.
    """
    return max(5, min(100, budget_bytes // (8 * n_params)))


def _fit_softmax_regression(
    x: Tensor, y: Tensor, num_classes: int, *, iterations: int, lr: float, weight_decay: float, batch_size: int
) -> tuple[Tensor, Tensor]:
    """Weight ``[C, D]`` and bias ``[C]`` minimising ``mean CE(x W^T + b, y) + weight_decay / 2 * |W|^2``.

    Full-batch L-BFGS with a strong-Wolfe line search, from zero. Why this optimiser: the objective is
    convex (strictly, with weight decay), smooth and small (D x C parameters), which is exactly what
    quasi-Newton methods are for. On 60k x 256 standardised Fashion-MNIST features (trained and random
    small CNNs) 100 iterations, about 2 s on 2 cores, bring the objective within 0.1-0.2% of its optimum
    and the test accuracy within 0.1 points of the converged one (scikit-learn's LogisticRegression, run
    for 2000 iterations, ends 0.09% lower with the same accuracy). There is no learning rate or schedule
    to tune, and the answer is the same for every seed, so the probe measures the features, not the
    optimiser's luck; mini-batch SGD or Adam would need a tuned schedule and tens of epochs to get as
    close. The sum over rows runs in chunks of ``batch_size`` so the autograd graph stays
    O(batch_size x C) for any number of rows.
    """
    weight = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=lr,
        max_iter=iterations,
        max_eval=2 * iterations,
        history_size=_history_size(weight.numel() + bias.numel()),
        # Converged for a probe's purposes: past this point accuracy moves by < 0.05 points.
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )
    n = x.shape[0]

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=False)
        total = torch.zeros((), device=x.device)
        for start in range(0, n, batch_size):
            logits = F.linear(x[start : start + batch_size], weight, bias)
            loss = F.cross_entropy(logits, y[start : start + batch_size], reduction="sum") / n
            loss.backward()
            total += loss.detach()
        penalty = 0.5 * weight_decay * weight.pow(2).sum()
        penalty.backward()
        return total + penalty.detach()

    if iterations > 0:
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _linear_hits(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor, batch_size: int) -> list[int]:
    hits = [0, 0]
    for start in range(0, x.shape[0], batch_size):
        logits = F.linear(x[start : start + batch_size], weight, bias)
        h = topk_hits(logits, y[start : start + batch_size], (1, 5))
        hits = [a + b for a, b in zip(hits, h, strict=True)]
    return hits


def fit_linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    batch_size: int = 16384,
    seed: int = 0,
    num_classes: int | None = None,
) -> ProbeResult:
    """Multinomial logistic regression on frozen features, trained to convergence: the fast probe.

    Features are standardised with the training mean and std, then the classifier minimises
    ``mean cross-entropy + weight_decay / 2 * |W|^2`` (bias not decayed) with full-batch L-BFGS from zero
    (see ``_fit_softmax_regression`` for why). It runs on the device the features are on.

    Args:
        train_features, test_features: ``[n, D]`` floating features (e.g. from ``extract_features``).
        train_labels, test_labels: ``[n]`` integer class indices.
        epochs: L-BFGS iterations; each is a full pass over the training features plus, rarely, extra
            line-search passes (at most ``2 * epochs`` passes in all). It stops earlier once converged.
        lr: L-BFGS step scale; 1 is right with the line search and rarely worth changing.
        weight_decay: L2 penalty on the weights, >= 0; scikit-learn's ``LogisticRegression(C=...)`` is
            ``weight_decay = 1 / (C * n_train)``. The default suits standardised features of a few
            hundred dimensions and tens of thousands of samples (on Fashion-MNIST features 1e-5 to 1e-3
            change the test accuracy by less than half a point).
        batch_size: rows per chunk of the full-batch loss; bounds memory, does not change the result
            (beyond float rounding).
        seed: accepted so every probe has one signature; L-BFGS from zero draws no random numbers, so the
            result does not depend on it.
        num_classes: number of classes; ``None`` means the largest label in either split + 1.

    Returns:
        ``ProbeResult`` with test top-1/top-5 and training top-1 in percent. Ties in the logits go to the
        lower class index.

    Example:
        >>> import torch
        >>> x = torch.randn(200, 8); y = (x[:, 0] > 0).long()
        >>> fit_linear_probe(x[:100], y[:100], x[100:], y[100:]).top1 > 90
        True
    """
    started = time.perf_counter()
    x_train = check_features("train_features", train_features)
    x_test = check_features("test_features", test_features)
    check_same_dim("train_features", x_train, "test_features", x_test)
    if x_train.shape[0] == 0:
        raise bad_argument("train_features", train_features, "non-empty (at least one training row)")
    x_test = x_test.to(x_train.device)
    y_train = check_labels("train_labels", train_labels, x_train.shape[0], "train_features").to(x_train.device)
    y_test = check_labels("test_labels", test_labels, x_test.shape[0], "test_features").to(x_train.device)
    classes = resolve_classes(num_classes, [("train_labels", y_train), ("test_labels", y_test)])
    iterations = check_non_negative_int("epochs", epochs)
    lr = check_float("lr", lr, low=0.0, low_inclusive=False)
    weight_decay = check_float("weight_decay", weight_decay, low=0.0, low_inclusive=True)
    batch_size = check_positive_int("batch_size", batch_size)
    check_non_negative_int("seed", seed)

    x_train, x_test = _standardise(x_train, x_test)
    weight, bias = _fit_softmax_regression(
        x_train, y_train, classes, iterations=iterations, lr=lr, weight_decay=weight_decay, batch_size=batch_size
    )
    test_top1, test_top5 = _linear_hits(x_test, y_test, weight, bias, batch_size)
    train_top1, _ = _linear_hits(x_train, y_train, weight, bias, batch_size)
    n_test = x_test.shape[0]
    return ProbeResult(
        top1=percent(test_top1, n_test),
        top5=percent(test_top5, n_test),
        train_top1=percent(train_top1, x_train.shape[0]),
        seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------------ the paper's protocol
ProgressFn = Callable[[int, int, dict[str, float]], None]


def _feature_dim(encoder: nn.Module, sample: Tensor, mean: object, std: object, device: torch.device) -> int:
    """``encoder.feature_dim``, or the width of its output on one image when it does not say."""
    dim = getattr(encoder, "feature_dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return dim
    return int(extract_features(encoder, sample[:1], mean, std, device=device).shape[1])  # type: ignore[arg-type]


def _cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` at step 0 towards 0 at step ``total``, updated every step.

    Per step rather than per epoch so that a 1- or 2-epoch probe (tests, smoke runs) still anneals.
    """
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


def paper_linear_probe(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    mean: Sequence[float] | Tensor,
    std: Sequence[float] | Tensor,
    *,
    epochs: int = 50,
    lr: float = 0.5,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    augment_preset: str = "crop-flip",
    device: torch.device | str | None = None,
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int | None = None,
    progress: ProgressFn | None = None,
) -> ProbeResult:
    """The paper's linear evaluation: a linear layer trained on augmented images through a frozen encoder.

    Protocol (the TCL reference code's second stage, from SupCon's): the encoder is frozen (eval mode, so
    BatchNorm uses and keeps its running statistics; no gradients; its parameters are not touched), a
    ``Linear(feature_dim, num_classes)`` starting from zero is trained with SGD (lr 0.5, momentum 0.9)
    and a cosine decay of the learning rate over all steps, on one freshly augmented view of every
    training image per epoch (shuffled each epoch, last batch kept even if smaller). The test images are
    only normalised, and the accuracy after the last epoch is reported, not the best one: picking the
    best epoch on the test set would be tuning on it.

    Slower than ``fit_linear_probe`` (the encoder runs on every image every epoch) and the figure to
    put next to the paper's. Reproducible for a given ``seed`` on a given device: one CPU generator
    drives the shuffling and the augmentations; the global RNG is not used.

    Args:
        encoder: maps ``[B, C, H, W]`` normalised images to ``[B, feature_dim]``; must be on ``device``.
            Its train/eval flags are restored afterwards.
        train_images, test_images: ``[n, C, H, W]`` uint8 (or float 0..1) images, C = 1 or 3.
        train_labels, test_labels: ``[n]`` integer class indices.
        mean, std: per-channel normalisation constants (``Dataset.mean``/``.std``).
        epochs: passes over the training images (>= 1).
        lr, momentum, weight_decay: SGD settings for the linear layer (lr is the peak of the cosine).
        batch_size: images per step (and per forward pass for the test features).
        augment_preset: a ``tunedcl.data.augment`` preset (``list_presets()``); the paper used crop-flip
            for Fashion-MNIST. ``"none"`` trains on the plain images.
        device: where to run; ``None`` means the encoder's device.
        seed: seeds the shuffling and the augmentations.
        autocast_dtype: ``torch.bfloat16`` or ``torch.float16`` runs the encoder under autocast; the
            linear layer always trains in float32.
        channels_last: hand the encoder channels-last batches.
        num_classes: ``None`` means the largest label in either split + 1.
        progress: called after every epoch as ``progress(epoch, epochs, stats)`` with 1-based ``epoch``
            and ``stats = {"loss": mean training loss, "train_top1": percent, "lr": last lr}``.

    Returns:
        ``ProbeResult``: test top-1/top-5 after the last epoch; ``train_top1`` on the last epoch's
        augmented training views; ``seconds`` of the whole probe, test features included.
    """
    started = time.perf_counter()
    if not isinstance(encoder, nn.Module):
        raise bad_argument("encoder", encoder, "a torch.nn.Module")
    train_images = check_images("train_images", train_images)
    test_images = check_images("test_images", test_images)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise ValueError(
            f"train_images are {tuple(train_images.shape[1:])} and test_images {tuple(test_images.shape[1:])}; "
            "both splits must have the same [C, H, W]"
        )
    n_train = train_images.shape[0]
    if n_train == 0:
        raise bad_argument("train_images", train_images, "non-empty (at least one training image)")
    y_train = check_labels("train_labels", train_labels, n_train, "train_images")
    y_test = check_labels("test_labels", test_labels, test_images.shape[0], "test_images")
    classes = resolve_classes(num_classes, [("train_labels", y_train), ("test_labels", y_test)])
    epochs = check_positive_int("epochs", epochs)
    lr = check_float("lr", lr, low=0.0, low_inclusive=False)
    momentum = check_float("momentum", momentum, low=0.0, low_inclusive=True, high=1.0)
    weight_decay = check_float("weight_decay", weight_decay, low=0.0, low_inclusive=True)
    batch_size = check_positive_int("batch_size", batch_size)
    if not isinstance(augment_preset, str) or augment_preset not in list_presets():
        raise bad_argument("augment_preset", augment_preset, f"one of {', '.join(list_presets())}")
    seed = check_non_negative_int("seed", seed)
    autocast_dtype = check_autocast_dtype(autocast_dtype)
    channels_last = check_bool("channels_last", channels_last)
    if progress is not None and not callable(progress):
        raise bad_argument("progress", progress, "None or a callable progress(epoch, epochs, stats)")
    run_on = module_device(encoder, device)

    dim = _feature_dim(encoder, train_images, mean, std, run_on)
    # Zero start: the problem is convex in the layer's parameters, so no random init is needed, and
    # skip_init keeps nn.Linear's default init from drawing on the global RNG.
    classifier = torch.nn.utils.skip_init(nn.Linear, dim, classes, device=run_on)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    step = 0
    y_train = y_train.to(train_images.device)
    train_hits = torch.zeros((), dtype=torch.int64, device=run_on)

    with eval_mode(encoder):
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n_train, generator=generator).to(train_images.device)
            loss_sum = torch.zeros((), device=run_on)
            train_hits.zero_()
            for start in range(0, n_train, batch_size):
                idx = order[start : start + batch_size]
                labels = y_train[idx].to(run_on, non_blocking=True)
                with torch.no_grad():
                    images = train_images[idx].to(run_on, non_blocking=True)
                    views = make_views(images, 1, augment_preset, mean, std, generator=generator)[:, 0]
                    if channels_last:
                        views = views.contiguous(memory_format=torch.channels_last)
                    features = encode(encoder, views, autocast_dtype)
                current_lr = _cosine_lr(lr, step, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                logits = classifier(features)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.detach() * idx.numel()
                train_hits += (logits.detach().argmax(dim=1) == labels).sum()
            if progress is not None:
                stats = {
                    "loss": float(loss_sum) / n_train,
                    "train_top1": percent(int(train_hits), n_train),
                    "lr": current_lr,
                }
                progress(epoch, epochs, stats)

    test_features = extract_features(
        encoder,
        test_images,
        mean,
        std,
        batch_size=batch_size,
        device=run_on,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
    )
    weight = classifier.weight.detach().float().cpu()
    bias = classifier.bias.detach().float().cpu()
    top1, top5 = _linear_hits(test_features, y_test.cpu(), weight, bias, 4096)
    n_test = test_features.shape[0]
    return ProbeResult(
        top1=percent(top1, n_test),
        top5=percent(top5, n_test),
        train_top1=percent(int(train_hits), n_train),
        seconds=time.perf_counter() - started,
    )
