"""Evaluation on the training device, and one probe protocol for every method (issues 15 and 16).

- ``extract_features`` keeps the features where the encoder runs (a GPU in training); kNN and the probe
  then compute there. The ``meta`` device stands in for a GPU: any copy to the host would fail on it.
- ``linear_top1`` is the same probe on the same encoder features for every method; the cross-entropy
  baseline's own head is the extra result ``ce_top1``. Old results.json files read with today's meaning.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import tunedcl.train.evaluation as evaluation
from tunedcl.data.augment import normalize
from tunedcl.data.sources.core import Dataset, Split
from tunedcl.evaluate import extract_features, fit_linear_probe
from tunedcl.evaluate.knn import KNNResult
from tunedcl.evaluate.linear_probe import ProbeResult
from tunedcl.models import create_model
from tunedcl.records import equal_protocol_results
from tunedcl.train.assemble import build_method
from tunedcl.train.config import load_config
from tunedcl.train.runtime import Runtime

CPU = Runtime(torch.device("cpu"), None, 0, 1)


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` grey 28x28 images of 3 easy classes (each class lights up its own band of rows) and labels."""
    generator = torch.Generator().manual_seed(n)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for c in range(3):
        images[labels == c, :, 9 * c : 9 * c + 9] += 180
    return images, labels


def _dataset(validation: bool = True) -> Dataset:
    train, test, val = _images(90), _images(45), _images(30)
    return Dataset("bands", Split(*train), Split(*test), ["a", "b", "c"], (0.5,), (0.25,),
                   validation=Split(*val) if validation else None)


def _config(method: str) -> Any:
    return load_config("quick", [f"loss.method={method}", "eval.probe_epochs=20", "eval.knn_k=5",
                                 "train.channels_last=false"])


# --- features stay on the encoder's device ----------------------------------------------------------------
def test_features_stay_on_the_device_the_encoder_runs_on() -> None:
    encoder = create_model("small-cnn", in_channels=1, width=0.25).to("meta")
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    features = extract_features(encoder, images, (0.5,), (0.5,), batch_size=4)
    assert features.device.type == "meta" and features.shape == (10, 64)  # no copy to the host
    empty = extract_features(encoder, images[:0], (0.5,), (0.5,))
    assert empty.device.type == "meta" and empty.shape == (0, 64)
    # out_device chooses another home (the host, when a split's features do not fit on the GPU).
    cpu_encoder = create_model("small-cnn", in_channels=1, width=0.25)
    on_cpu = extract_features(cpu_encoder, images, (0.5,), (0.5,), batch_size=4)
    assert on_cpu.device.type == "cpu"
    assert extract_features(cpu_encoder, images, (0.5,), (0.5,), out_device="meta").device.type == "meta"
    with pytest.raises(ValueError, match="out_device"):
        extract_features(cpu_encoder, images, (0.5,), (0.5,), out_device="not-a-device")


def test_evaluation_hands_knn_and_the_probe_the_features_where_they_were_computed(monkeypatch) -> None:
    """With the model on ``meta`` (a GPU's stand-in), the features reach kNN and the probe on ``meta``:
    nothing in between moves them to the host (that copy would fail on ``meta``)."""
    config = _config("tcl")
    method = build_method(config, 1, 3, False)
    method.model.to("meta")
    seen: dict[str, tuple[torch.device, ...]] = {}

    def knn(train, train_labels, test, test_labels, **kwargs):
        seen["knn"] = (train.device, test.device)
        return KNNResult(50.0, 100.0)

    def probe(train, train_labels, test, test_labels, **kwargs):
        seen["probe"] = (train.device, test.device)
        return ProbeResult(60.0, 100.0, 70.0, 0.0)

    monkeypatch.setattr(evaluation, "knn_classify", knn)
    monkeypatch.setattr(evaluation, "fit_linear_probe", probe)
    results = evaluation.evaluate(method, _dataset(), config, Runtime(torch.device("meta"), None, 0, 1))
    meta = torch.device("meta")
    assert seen == {"knn": (meta, meta), "probe": (meta, meta)}
    assert results["knn_top1"] == 50.0 and results["linear_top1"] == 60.0 and results["val_linear_top1"] == 60.0


# --- one probe protocol for every method --------------------------------------------------------------------
def _head_accuracy(model: torch.nn.Module, split: Split) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(normalize(split.images, (0.5,), (0.25,)))
    return 100.0 * float((logits.argmax(1) == split.labels).float().mean())


@pytest.mark.parametrize("method_name", ["ce", "tcl"])
def test_linear_top1_is_the_same_probe_on_the_encoder_features_for_every_method(method_name: str) -> None:
    torch.manual_seed(0)
    config = _config(method_name)
    dataset = _dataset()
    method = build_method(config, 1, 3, False)
    results = evaluation.evaluate(method, dataset, config, CPU)

    encoder = method.evaluated_encoder(method.model)
    train = extract_features(encoder, dataset.train.images, dataset.mean, dataset.std)
    test = extract_features(encoder, dataset.test.images, dataset.mean, dataset.std)
    val = extract_features(encoder, dataset.validation.images, dataset.mean, dataset.std)
    probe = fit_linear_probe(train, dataset.train.labels, test, dataset.test.labels, epochs=20)
    val_probe = fit_linear_probe(train, dataset.train.labels, val, dataset.validation.labels, epochs=20)
    assert results["linear_top1"] == results["fast_linear_top1"] == probe.top1
    assert results["val_linear_top1"] == results["val_fast_linear_top1"] == val_probe.top1
    assert results["linear_probe"] == "fast (cached features)"
    if method_name == "ce":
        # The untrained head is near chance on these bands, the probe on its encoder's features is not:
        # under the old rule (linear_top1 = the head) the first assertion above would fail.
        assert results["ce_top1"] == pytest.approx(_head_accuracy(method.model, dataset.test))
        assert results["val_ce_top1"] == pytest.approx(_head_accuracy(method.model, dataset.validation))
        assert results["ce_top1"] < 60 < results["linear_top1"]
    else:
        assert "ce_top1" not in results and "val_ce_top1" not in results


def test_ce_without_a_probe_reports_no_linear_top1_but_its_head() -> None:
    config = load_config("quick", ["loss.method=ce", "eval.linear_probe=none", "eval.knn_k=5"])
    results = evaluation.evaluate(build_method(config, 1, 3, False), _dataset(validation=False), config, CPU)
    assert results["linear_top1"] is None and results["linear_probe"] == "none"
    assert 0 <= results["ce_top1"] <= 100


def test_earlier_results_files_read_with_todays_meaning_of_linear_top1() -> None:
    old_ce = {"linear_top1": 81.0, "ce_top1": 81.0, "linear_probe": "the cross-entropy classifier itself",
              "fast_linear_top1": 84.5, "val_ce_top1": 80.0, "val_fast_linear_top1": 83.0, "val_linear_top1": 80.0}
    new = equal_protocol_results(old_ce)
    assert new["linear_top1"] == 84.5 and new["val_linear_top1"] == 83.0
    assert new["ce_top1"] == 81.0 and new["linear_probe"] == "fast (cached features)"
    assert old_ce["linear_top1"] == 81.0  # the caller's dict is not changed
    both = equal_protocol_results({**old_ce, "paper_linear_top1": 86.0})
    assert both["linear_top1"] == 86.0  # the paper's probe wins when it ran, as for every method
    no_probe = equal_protocol_results({"linear_top1": 81.0, "ce_top1": 81.0,
                                                  "linear_probe": "the cross-entropy classifier itself"})
    assert no_probe["linear_top1"] is None and no_probe["linear_probe"] == "none"
    contrastive = {"linear_top1": 84.0, "knn_top1": 80.0, "linear_probe": "fast (cached features)"}
    assert equal_protocol_results(contrastive) == contrastive
