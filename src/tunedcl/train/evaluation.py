"""Evaluation of a trained run: frozen-encoder features (the encoder the method names) once for train and
test, then kNN and the linear probe(s) the config asks for; a method whose model is a classifier (the
cross-entropy baseline) has that classifier evaluated directly too, as an extra result (``ce_top1``).

Every method's ``linear_top1`` is the same probe on the same encoder features, so the cross-entropy
baseline and the contrastive methods are compared by one protocol (issue 16). Results written before
this change gave the cross-entropy baseline its own classifier as ``linear_top1``;
:func:`tunedcl.records.equal_protocol_results` reads such a file with today's meaning.

The features stay on the device the model trained on: kNN (about 2 TFLOP at D = 2048 on ImageNet-100)
and the L-BFGS probe then run there too, not on the host.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from tunedcl.evaluate import extract_features, fit_linear_probe, knn_classify, paper_linear_probe
from tunedcl.methods import Method
from tunedcl.train.config import Config
from tunedcl.train.runtime import Runtime

GEOMETRY_SAMPLES = 2000  # the pairwise measures are O(n^2); 2,000 test images give ~4M pairs


def features_of(method: Method, dataset: Any, config: Config, runtime: Runtime) -> tuple[torch.Tensor, ...]:
    encoder = method.evaluated_encoder(method.model)
    common = dict(
        batch_size=config.eval.batch_size,
        device=runtime.device,
        autocast_dtype=runtime.autocast_dtype,
        channels_last=config.train.channels_last,
    )
    train = extract_features(encoder, dataset.train.images, dataset.mean, dataset.std, **common)
    test = extract_features(encoder, dataset.test.images, dataset.mean, dataset.std, **common)
    return train, test


def _knn(train: torch.Tensor, test: torch.Tensor, dataset: Any, config: Config) -> dict[str, float]:
    labels = (dataset.train.labels, dataset.test.labels)
    result = knn_classify(
        train, labels[0], test, labels[1], k=config.eval.knn_k, temperature=config.eval.knn_temperature
    )
    return {"knn_top1": result.top1, "knn_top5": result.top5}


def knn_only(method: Method, dataset: Any, config: Config, runtime: Runtime) -> dict[str, float]:
    """kNN top-1 alone (the periodic evaluation during training)."""
    return {"knn_top1": _knn(*features_of(method, dataset, config, runtime), dataset, config)["knn_top1"]}


@torch.inference_mode()
def _classifier_accuracy(model: nn.Module, dataset: Any, config: Config, runtime: Runtime, split: Any = None) -> float:
    from tunedcl.data.augment import normalize

    was_training = model.training
    model.eval()
    split = dataset.test if split is None else split
    images, labels = split.images, split.labels.to(runtime.device)
    # Counted on the device and read once at the end: no host sync per batch.
    correct = torch.zeros((), dtype=torch.int64, device=runtime.device)
    for start in range(0, len(labels), config.eval.batch_size):
        x = normalize(images[start : start + config.eval.batch_size].to(runtime.device), dataset.mean, dataset.std)
        if config.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            logits = model(x)
        correct += (logits.argmax(1) == labels[start : start + config.eval.batch_size]).sum()
    model.train(was_training)
    return 100.0 * int(correct) / len(labels)


def _geometry(test: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Alignment, uniformity and tolerance (tunedcl.analysis) of a fixed random subset of the test features."""
    from tunedcl.analysis import geometry

    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:GEOMETRY_SAMPLES]
    return geometry(test[keep].float(), labels[keep])


def evaluate(method: Method, dataset: Any, config: Config, runtime: Runtime) -> dict[str, Any]:
    """All end-of-run metrics: knn_top1 and linear_top1 (percent, test split) at least."""
    results: dict[str, Any] = {}
    tic = time.perf_counter()
    train, test = features_of(method, dataset, config, runtime)
    results["feature_seconds"] = time.perf_counter() - tic
    results.update(_knn(train, test, dataset, config))
    if config.eval.geometry:
        results.update(_geometry(test, dataset.test.labels))
    mode = config.eval.linear_probe
    if method.has_classifier and config.data.train_label_groups is None:  # a head of groups scores no class
        # The model's own head: an extra result. linear_top1 stays the probe every method gets.
        results["ce_top1"] = _classifier_accuracy(method.model, dataset, config, runtime)
    if mode in ("paper", "both"):
        probe = paper_linear_probe(
            method.evaluated_encoder(method.model),
            dataset.train.images,
            dataset.train.labels,
            dataset.test.images,
            dataset.test.labels,
            dataset.mean,
            dataset.std,
            epochs=config.eval.paper_probe_epochs,
            augment_preset=config.data.augment,
            device=runtime.device,
            seed=config.train.seed,
            autocast_dtype=runtime.autocast_dtype,
        )
        results.update(paper_linear_top1=probe.top1, paper_linear_top5=probe.top5, paper_linear_seconds=probe.seconds)
        results.setdefault("linear_top1", probe.top1)
        epochs = config.eval.paper_probe_epochs
        results.setdefault("linear_probe", f"paper protocol ({epochs} epoch{'s' * (epochs != 1)})")
    if mode in ("fast", "both"):
        probe = fit_linear_probe(
            train,
            dataset.train.labels,
            test,
            dataset.test.labels,
            epochs=config.eval.probe_epochs,
            seed=config.train.seed,
        )
        results.update(fast_linear_top1=probe.top1, fast_linear_top5=probe.top5, fast_linear_seconds=probe.seconds)
        results.setdefault("linear_top1", probe.top1)
        results.setdefault("linear_probe", "fast (cached features)")
    if "linear_top1" not in results:
        results["linear_top1"] = None
        results["linear_probe"] = "none"
    if dataset.validation is not None:
        results.update(_validation_metrics(method, dataset, config, runtime, train))
    return results


def _validation_metrics(
    method: Method, dataset: Any, config: Config, runtime: Runtime, train: torch.Tensor
) -> dict[str, float]:
    """kNN, the fast probe and the model's own classifier on the validation split (data.validation): what a
    tuning command chooses on. The probe is fitted again from zero on the same training features (L-BFGS,
    full batch: the same classifier), and scored on the validation features; the paper's probe is not run.
    ``val_linear_top1`` is that probe for every method (the classifier's own is ``val_ce_top1``)."""
    split = dataset.validation
    encoder = method.evaluated_encoder(method.model)
    features = extract_features(encoder, split.images, dataset.mean, dataset.std, batch_size=config.eval.batch_size,
                                device=runtime.device, autocast_dtype=runtime.autocast_dtype,
                                channels_last=config.train.channels_last)
    knn = knn_classify(train, dataset.train.labels, features, split.labels, k=config.eval.knn_k,
                       temperature=config.eval.knn_temperature)
    results = {"val_knn_top1": knn.top1}
    if method.has_classifier and config.data.train_label_groups is None:  # a head of groups scores no class
        results["val_ce_top1"] = _classifier_accuracy(method.model, dataset, config, runtime, split)
    if config.eval.linear_probe in ("fast", "both"):
        probe = fit_linear_probe(train, dataset.train.labels, features, split.labels, epochs=config.eval.probe_epochs,
                                 seed=config.train.seed)
        results["val_fast_linear_top1"] = probe.top1
    results["val_linear_top1"] = results.get("val_fast_linear_top1")
    return results
