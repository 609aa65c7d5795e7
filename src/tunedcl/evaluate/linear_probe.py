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

from tunedcl._checks import bad_argument, check_bool, check_int, check_real
from tunedcl.data.augment import find_preset, make_views
from tunedcl.evaluate.accuracy import add_hits, percent, topk_hits
from tunedcl.evaluate.checks import (
    check_autocast_dtype,
    check_feature_splits,
    check_images,
    check_labels,
    module_device,
    resolve_classes,
)
from tunedcl.evaluate.features import encode, eval_mode, extract_features


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


def fit_softmax_regression(
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
        hits = add_hits(hits, topk_hits(logits, y[start : start + batch_size], (1, 5)))
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
    (see ``fit_softmax_regression`` for why). It runs on the device the features are on.

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
    x_train, y_train, x_test, y_test, classes = check_feature_splits(
        train_features, train_labels, test_features, test_labels, num_classes
    )
    x_test = x_test.to(x_train.device)
    iterations = check_int("epochs", epochs, low=0)
    lr = check_real("lr", lr, low=0.0, low_inclusive=False)
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    batch_size = check_int("batch_size", batch_size, low=1)
    check_int("seed", seed, low=0)

    x_train, x_test = _standardise(x_train, x_test)
    weight, bias = fit_softmax_regression(
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
Stats = Sequence[float] | Tensor  # per-channel normalisation constants


def _feature_dim(encoder: nn.Module, sample: Tensor, mean: Stats, std: Stats, device: torch.device) -> int:
    """``encoder.feature_dim``, or the width of its output on one image when it does not say."""
    dim = getattr(encoder, "feature_dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return dim
    return int(extract_features(encoder, sample[:1], mean, std, device=device).shape[1])


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
    train_images, y_train, test_images, y_test, classes = _check_image_splits(
        encoder, train_images, train_labels, test_images, test_labels, num_classes
    )
    options = _PaperProbeOptions(
        epochs, lr, momentum, weight_decay, batch_size, augment_preset, seed, autocast_dtype, channels_last, progress
    )
    run_on = module_device(encoder, device)
    dim = _feature_dim(encoder, train_images, mean, std, run_on)
    probe = _PaperProbe(encoder, dim, classes, options, run_on, n_train=train_images.shape[0])
    train_top1 = probe.train(train_images, y_train, mean, std)
    top1, top5 = probe.test_hits(test_images, y_test, mean, std)
    n_test = test_images.shape[0]
    return ProbeResult(percent(top1, n_test), percent(top5, n_test), train_top1, time.perf_counter() - started)


def _check_image_splits(
    encoder: object,
    train_images: object,
    train_labels: object,
    test_images: object,
    test_labels: object,
    num_classes: object,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """The encoder, both splits' images and labels, and the class count checked: the splits' tensors and it."""
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
    return train_images, y_train, test_images, y_test, classes


@dataclass
class _PaperProbeOptions:
    """The options of `paper_linear_probe` that shape its training, checked (in this order) on creation."""

    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    augment_preset: str
    seed: int
    autocast_dtype: torch.dtype | None
    channels_last: bool
    progress: ProgressFn | None

    def __post_init__(self) -> None:
        self.epochs = check_int("epochs", self.epochs, low=1)
        self.lr = check_real("lr", self.lr, low=0.0, low_inclusive=False)
        self.momentum = check_real("momentum", self.momentum, low=0.0, high=1.0)
        self.weight_decay = check_real("weight_decay", self.weight_decay, low=0.0)
        self.batch_size = check_int("batch_size", self.batch_size, low=1)
        find_preset(self.augment_preset, "augment_preset")
        self.seed = check_int("seed", self.seed, low=0)
        self.autocast_dtype = check_autocast_dtype(self.autocast_dtype)
        self.channels_last = check_bool("channels_last", self.channels_last)
        if self.progress is not None and not callable(self.progress):
            raise bad_argument("progress", self.progress, "None or a callable progress(epoch, epochs, stats)")


class _PaperProbe:
    """A zero-initialised linear layer trained by SGD on the frozen encoder's features of augmented views.

    One CPU generator drives the shuffling and the augmentations, in the order the batches are drawn, so
    a seed gives the same run on a given device; the learning rate follows a cosine over all steps.
    """

    def __init__(
        self,
        encoder: nn.Module,
        dim: int,
        classes: int,
        options: _PaperProbeOptions,
        run_on: torch.device,
        n_train: int,
    ) -> None:
        self.encoder, self.options, self.run_on = encoder, options, run_on
        self.total_steps = options.epochs * math.ceil(n_train / options.batch_size)
        # Zero start: the problem is convex in the layer's parameters, so no random init is needed, and
        # skip_init keeps nn.Linear's default init from drawing on the global RNG.
        self.classifier = torch.nn.utils.skip_init(nn.Linear, dim, classes, device=run_on)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        self.optimizer = torch.optim.SGD(
            self.classifier.parameters(), lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
        )
        self.generator = torch.Generator().manual_seed(options.seed)
        self.step = 0
        self.lr = options.lr  # the learning rate of the last step taken

    def train(self, images: Tensor, labels: Tensor, mean: Stats, std: Stats) -> float:
        """All epochs, the encoder in eval mode, reporting to ``progress`` after each; the last epoch's
        training accuracy (percent) on its augmented views."""
        n, epochs, progress = images.shape[0], self.options.epochs, self.options.progress
        labels = labels.to(images.device)
        with eval_mode(self.encoder):
            for epoch in range(1, epochs + 1):
                loss_sum, hits = self.train_epoch(images, labels, mean, std)
                if progress is not None:
                    stats = {"loss": float(loss_sum) / n, "train_top1": percent(int(hits), n), "lr": self.lr}
                    progress(epoch, epochs, stats)
        return percent(int(hits), n)

    def train_epoch(self, images: Tensor, labels: Tensor, mean: Stats, std: Stats) -> tuple[Tensor, Tensor]:
        """One shuffled pass, last batch kept even if smaller: the summed loss and the correct predictions
        on the augmented views (tensors on the run device, so nothing waits for them until they are read)."""
        n = images.shape[0]
        order = torch.randperm(n, generator=self.generator).to(images.device)
        loss_sum = torch.zeros((), device=self.run_on)
        hits = torch.zeros((), dtype=torch.int64, device=self.run_on)
        for start in range(0, n, self.options.batch_size):
            idx = order[start : start + self.options.batch_size]
            batch_labels = labels[idx].to(self.run_on, non_blocking=True)
            loss, logits = self._update(self._view_features(images[idx], mean, std), batch_labels)
            loss_sum += loss * idx.numel()
            hits += (logits.argmax(dim=1) == batch_labels).sum()
        return loss_sum, hits

    def _view_features(self, images: Tensor, mean: Stats, std: Stats) -> Tensor:
        """The encoder's features of one freshly augmented, normalised view of every image."""
        with torch.no_grad():
            images = images.to(self.run_on, non_blocking=True)
            views = make_views(images, 1, self.options.augment_preset, mean, std, generator=self.generator)[:, 0]
            if self.options.channels_last:
                views = views.contiguous(memory_format=torch.channels_last)
            return encode(self.encoder, views, self.options.autocast_dtype)

    def _update(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One SGD step at this step's cosine learning rate; the batch's loss and logits, detached."""
        self.lr = _cosine_lr(self.options.lr, self.step, self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        logits = self.classifier(features)
        loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.detach(), logits.detach()

    def test_hits(self, images: Tensor, labels: Tensor, mean: Stats, std: Stats) -> list[int]:
        """Top-1 and top-5 hits of the trained layer on the test images, which are only normalised."""
        features = extract_features(
            self.encoder,
            images,
            mean,
            std,
            batch_size=self.options.batch_size,
            device=self.run_on,
            autocast_dtype=self.options.autocast_dtype,
            channels_last=self.options.channels_last,
        )
        # Scored where the features are (the run device): no copy of the test features to the host.
        weight = self.classifier.weight.detach().float().to(features.device)
        bias = self.classifier.bias.detach().float().to(features.device)
        return _linear_hits(features, labels.to(features.device), weight, bias, 4096)
