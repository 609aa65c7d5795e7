"""Tests for tunedcl.evaluate: kNN and retrieval against slow loops written from their definitions, the
fast probe's convergence and behaviour, the paper's probe on a tiny encoder, and feature extraction."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunedcl.data.augment import normalize
from tunedcl.evaluate import (
    KNNResult,
    ProbeResult,
    extract_features,
    fit_linear_probe,
    knn_classify,
    knn_scores,
    paper_linear_probe,
    retrieval_metrics,
)
from tunedcl.evaluate.linear_probe import fit_softmax_regression
from tunedcl.models import ContrastiveModel, create_model

MEAN, STD = (0.5,), (0.5,)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Every tensor here is tiny: one thread is faster, and immune to a busy shared machine, where
    # waking a second thread for each small op costs milliseconds.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------ helpers
def class_images(n: int, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, 1, 28, 28] noise images whose class sets their brightness (50 grey levels apart)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    noise = torch.rand(n, 1, 28, 28, generator=g) * 60
    images = (noise + 50 * labels.float().view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    return images, labels


def calibrated_encoder(images: torch.Tensor, seed: int = 0) -> nn.Module:
    """A random small CNN whose BatchNorm running statistics are those of ``images`` (as after training),
    so that its eval-mode features are O(1) rather than the tiny values of fresh running stats."""
    torch.manual_seed(seed)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    for m in encoder.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: one pass sets the statistics of the batch exactly
    encoder.train()
    with torch.no_grad():
        encoder(normalize(images, MEAN, STD))
    return encoder.eval()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def modes(module: nn.Module) -> list[bool]:
    return [m.training for m in module.modules()]


def reference_knn_scores(train, labels, queries, k, temperature, num_classes):
    """The definition, one query and one training row at a time, in float64: neighbours are the k
    highest cosine similarities (ties to the lower training index); class c scores sum exp(s / T)."""
    train = train.double()
    queries = queries.double()
    out = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64)
    for q in range(queries.shape[0]):
        qv = queries[q] / queries[q].norm()
        sims = [float(qv @ (train[j] / train[j].norm())) for j in range(train.shape[0])]
        order = sorted(range(len(sims)), key=lambda j: (-sims[j], j))[: min(k, len(sims))]
        for j in order:
            out[q, int(labels[j])] += math.exp(sims[j] / temperature)
    return out


def reference_accuracy(scores, labels, k):
    """Percent of rows whose label ranks in the top k, ties to the lower class index, by a loop."""
    hits = 0
    for row, y in zip(scores.tolist(), labels.tolist(), strict=True):
        ranked = sorted(range(len(row)), key=lambda c: (-row[c], c))
        hits += y in ranked[:k]
    return 100.0 * hits / len(labels)


def rows_normalised(scores: torch.Tensor) -> torch.Tensor:
    return scores.double() / scores.double().sum(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------------- kNN
@pytest.mark.parametrize(
    ("k", "temperature", "num_classes"),
    [(1, 0.1, None), (5, 0.1, None), (7, 0.5, 6), (40, 0.07, None), (500, 1.0, None)],  # 500 > n_train
)
def test_knn_matches_the_loop_reference(k, temperature, num_classes):
    g = torch.Generator().manual_seed(k)
    train, test = torch.randn(60, 8, generator=g), torch.randn(25, 8, generator=g)
    train_labels, test_labels = torch.randint(0, 4, (60,), generator=g), torch.randint(0, 4, (25,), generator=g)
    classes = num_classes or 4
    expected = reference_knn_scores(train, train_labels, test, k, temperature, classes)
    got = knn_scores(train, train_labels, test, k=k, temperature=temperature, num_classes=num_classes)
    assert got.shape == (25, classes) and got.dtype == torch.float32
    torch.testing.assert_close(rows_normalised(got), rows_normalised(expected), rtol=1e-4, atol=1e-6)
    result = knn_classify(train, train_labels, test, test_labels, k=k, temperature=temperature, num_classes=num_classes)
    assert result.top1 == reference_accuracy(expected, test_labels, 1)
    assert result.top5 == reference_accuracy(expected, test_labels, 5)


def test_knn_ties_at_the_kth_neighbour_go_to_the_lower_training_index():
    # Scaled one-hot rows: normalised, they are exactly e_i, so the duplicated directions tie exactly.
    e = torch.eye(3)
    train = torch.stack([e[1], 2 * e[0], 3 * e[0], 5 * e[0], e[0], 4 * e[2]])
    train_labels = torch.tensor([2, 1, 0, 0, 1, 2])
    queries = torch.tensor([[1.0, 0.2, 0.1], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    for k in range(1, 7):
        expected = reference_knn_scores(train, train_labels, queries, k, 0.1, 3)
        got = knn_scores(train, train_labels, queries, k=k, temperature=0.1)
        torch.testing.assert_close(rows_normalised(got), rows_normalised(expected), rtol=1e-5, atol=1e-7)
    # k = 2 for the query along e_0: rows 1 and 2 of the four tied ones, one vote each for classes 1 and 0.
    scores = knn_scores(train, train_labels, queries[1:2], k=2)
    torch.testing.assert_close(scores, torch.tensor([[1.0, 1.0, 0.0]]))


def test_knn_hand_computed_case():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[3.0, 0.0]])
    # Similarities 1, 0, 1/sqrt(2). k = 2, T = 0.5: rows 0 and 2; scores relative to the nearest one:
    # class 0: exp(0) = 1, class 1: exp((1/sqrt(2) - 1) / 0.5).
    scores = knn_scores(train, labels, query, k=2, temperature=0.5)
    torch.testing.assert_close(scores, torch.tensor([[1.0, math.exp((2**-0.5 - 1) / 0.5)]]))
    # k = 3 adds row 1 with weight exp((0 - 1) / 0.5) for class 1.
    scores = knn_scores(train, labels, query, k=3, temperature=0.5)
    torch.testing.assert_close(scores, torch.tensor([[1.0, math.exp((2**-0.5 - 1) / 0.5) + math.exp(-2.0)]]))
    # A sharp temperature lets the nearest row win; a flat one lets the two votes of class 1 win.
    assert knn_classify(train, labels, query, torch.tensor([0]), k=3, temperature=0.5).top1 == 100.0
    assert knn_classify(train, labels, query, torch.tensor([1]), k=3, temperature=100.0).top1 == 100.0


def test_knn_class_score_ties_go_to_the_lower_class_and_top5_covers_few_classes():
    train = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    labels = torch.tensor([1, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_classify(train, labels, query, torch.tensor([0]), k=2) == KNNResult(top1=100.0, top5=100.0)
    assert knn_classify(train, labels, query, torch.tensor([1]), k=2) == KNNResult(top1=0.0, top5=100.0)


def test_knn_is_the_same_for_any_chunk_size():
    g = torch.Generator().manual_seed(3)
    train, test = torch.randn(300, 16, generator=g), torch.randn(70, 16, generator=g)
    train_labels, test_labels = torch.randint(0, 10, (300,), generator=g), torch.randint(0, 10, (70,), generator=g)
    one = knn_scores(train, train_labels, test, k=20, batch_size=1)
    many = knn_scores(train, train_labels, test, k=20, batch_size=1000)
    torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-6)
    a = knn_classify(train, train_labels, test, test_labels, k=20, batch_size=1)
    b = knn_classify(train, train_labels, test, test_labels, k=20, batch_size=1000)
    assert a == b
    assert a.top5 >= a.top1


def test_knn_tiny_temperature_does_not_overflow():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 1])
    scores = knn_scores(train, labels, torch.tensor([[0.0, 1.0]]), k=3, temperature=1e-4)
    assert torch.isfinite(scores).all() and scores.argmax().item() == 1


# ----------------------------------------------------------------------------------------------- retrieval
def reference_retrieval(features, labels, ks):
    """MAP@R and Recall@k by loops: each item against all the others, ranked by cosine similarity."""
    x = F.normalize(features.double(), dim=1)
    n = len(labels)
    aps, recalls = [], {k: [] for k in ks}
    for q in range(n):
        others = [j for j in range(n) if j != q]
        ranked = sorted(others, key=lambda j: -float(x[q] @ x[j]))
        rel = [int(labels[j] == labels[q]) for j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        aps.append(sum(rel[i] * sum(rel[: i + 1]) / (i + 1) for i in range(r)) / r)
        for k in ks:
            recalls[k].append(any(rel[:k]))
    return 100 * sum(aps) / len(aps), {k: 100 * sum(v) / len(v) for k, v in recalls.items()}, len(aps)


def test_retrieval_hand_computed_case():
    # Directions at 0, 10, 25 and 90 degrees; classes 0, 0, 1, 1. The item at 25 degrees finds the one
    # at 10 first (wrong class): AP 0. The three others find their partner first: MAP@R = 3/4.
    angles = torch.tensor([0.0, 10.0, 25.0, 90.0]) * math.pi / 180
    features = torch.stack([angles.cos(), angles.sin()], dim=1)
    result = retrieval_metrics(features, torch.tensor([0, 0, 1, 1]), ks=(1, 2, 3))
    assert result.map_at_r == pytest.approx(75.0)
    assert result.recall_at_k == pytest.approx({1: 75.0, 2: 75.0, 3: 100.0})
    assert result.queries == 4


def test_retrieval_matches_the_loop_reference_and_skips_singleton_classes():
    g = torch.Generator().manual_seed(5)
    features = torch.randn(40, 6, generator=g)
    labels = torch.cat([torch.randint(0, 4, (39,), generator=g), torch.tensor([9])])  # class 9: one item
    expected_map, expected_recall, queries = reference_retrieval(features, labels, (1, 5))
    for batch_size in (3, 1000):
        result = retrieval_metrics(features, labels, ks=(1, 5), batch_size=batch_size)
        assert result.map_at_r == pytest.approx(expected_map, abs=1e-4)
        assert result.recall_at_k == pytest.approx(expected_recall)
        assert result.queries == queries == 39


# ------------------------------------------------------------------------------------------- fast probe
def separable(n: int, dim: int = 16, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points labelled by the argmax of a fixed linear map, keeping only those with a clear margin."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(dim, classes, generator=torch.Generator().manual_seed(99))
    x = torch.randn(4 * n, dim, generator=g) * 3 + 1  # off-centre and scaled: standardisation must cope
    logits = x @ truth
    top2 = logits.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 1.0
    return x[keep][:n], logits.argmax(dim=1)[keep][:n]


def test_fast_probe_separates_linearly_separable_data():
    x, y = separable(1600)
    result = fit_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    assert isinstance(result, ProbeResult)
    assert result.train_top1 == 100.0
    assert result.top1 >= 98.0
    assert result.top5 >= result.top1
    assert result.seconds > 0


def test_fast_probe_on_random_labels_stays_near_chance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3000, 32, generator=g)
    y = torch.randint(0, 10, (3000,), generator=g)
    result = fit_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    assert abs(result.top1 - 10.0) < 4.0  # 2000 test rows: the chance level's std is 0.7 points
    assert result.train_top1 > 20.0  # 330 parameters do memorise some of 1000 random labels
    assert result.top5 >= result.top1


def test_fast_probe_is_deterministic():
    x, y = separable(600, seed=2)
    y = torch.where(torch.arange(600) % 7 == 0, (y + 1) % 5, y)  # some label noise, so nothing is trivial
    runs = [fit_linear_probe(x[:400], y[:400], x[400:], y[400:], seed=s) for s in (0, 0, 1)]
    values = [(r.top1, r.top5, r.train_top1) for r in runs]
    assert values[0] == values[1] == values[2]  # from a zero start L-BFGS draws nothing random


def test_fast_probe_reaches_the_optimum_of_its_objective():
    # At the minimiser of a strictly convex smooth function the gradient vanishes: check it directly.
    g = torch.Generator().manual_seed(4)
    x = torch.randn(500, 12, generator=g)
    y = (x[:, :3] + 0.5 * torch.randn(500, 3, generator=g)).argmax(dim=1)
    weight, bias = fit_softmax_regression(x, y, 3, iterations=200, lr=1.0, weight_decay=1e-2, batch_size=128)
    w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    objective = F.cross_entropy(x @ w.T + b, y) + 0.5 * 1e-2 * w.pow(2).sum()
    objective.backward()
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4
    # ... and the chunked loss (batch_size 128 of 500 rows) is the full-batch one.
    whole, _ = fit_softmax_regression(x, y, 3, iterations=200, lr=1.0, weight_decay=1e-2, batch_size=10_000)
    torch.testing.assert_close(weight, whole, rtol=1e-3, atol=1e-4)


def test_fast_probe_ignores_feature_scale_and_offset():
    x, y = separable(900, seed=3)
    y = torch.where(torch.arange(900) % 5 == 0, (y + 2) % 5, y)
    plain = fit_linear_probe(x[:600], y[:600], x[600:], y[600:])
    scale = torch.logspace(-3, 3, x.shape[1])
    shifted = fit_linear_probe(x[:600] * scale + 7, y[:600], x[600:] * scale + 7, y[600:])
    assert abs(plain.top1 - shifted.top1) <= 1.0
    assert abs(plain.train_top1 - shifted.train_top1) <= 1.0


def test_fast_probe_with_extra_classes_and_constant_features():
    x, y = separable(1300, classes=3, seed=5)
    plain = fit_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:])
    x = torch.cat([x, torch.full((1300, 1), 4.0)], dim=1)  # a constant feature: no division by zero
    result = fit_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], num_classes=7)
    assert result.train_top1 == 100.0 and result.top1 >= 98.0
    assert abs(result.top1 - plain.top1) <= 0.5  # classes never seen and a constant change nothing


# ------------------------------------------------------------------------------------------- paper probe
def test_paper_probe_learns_and_leaves_the_encoder_untouched():
    train_images, train_labels = class_images(256, seed=1)
    test_images, test_labels = class_images(128, seed=2)
    encoder = calibrated_encoder(train_images)
    encoder.train()
    encoder.blocks[1].eval()  # a mixed state (a frozen BatchNorm) must come back as it was
    before, before_modes = snapshot(encoder), modes(encoder)
    rng = torch.random.get_rng_state()
    calls = []
    result = paper_linear_probe(
        encoder,
        train_images,
        train_labels,
        test_images,
        test_labels,
        MEAN,
        STD,
        epochs=1,
        batch_size=32,
        progress=lambda epoch, epochs, stats: calls.append((epoch, epochs, stats)),
    )
    assert result.top1 > 60.0  # chance is 25
    assert result.top5 == 100.0  # four classes
    after = snapshot(encoder)
    assert after.keys() == before.keys()
    for name, value in before.items():  # weights and BatchNorm running statistics
        assert torch.equal(after[name], value), name
    assert modes(encoder) == before_modes
    assert all(p.requires_grad for p in encoder.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global RNG was not used
    assert [c[:2] for c in calls] == [(1, 1)]
    assert set(calls[0][2]) == {"loss", "train_top1", "lr"} and calls[0][2]["loss"] < math.log(4)


def test_paper_probe_is_reproducible_and_runs_several_epochs():
    images, labels = class_images(96, seed=3)
    encoder = calibrated_encoder(images, seed=1)
    kwargs = {"epochs": 2, "batch_size": 16, "augment_preset": "crop-flip", "seed": 5}
    calls = []
    a = paper_linear_probe(encoder, images, labels, images[:32], labels[:32], MEAN, STD, **kwargs)
    b = paper_linear_probe(
        encoder, images, labels, images[:32], labels[:32], MEAN, STD, **kwargs, progress=lambda *c: calls.append(c)
    )
    assert (a.top1, a.top5, a.train_top1) == (b.top1, b.top5, b.train_top1)
    assert [c[:2] for c in calls] == [(1, 2), (2, 2)]
    assert calls[1][2]["lr"] < calls[0][2]["lr"] < 0.5  # the cosine decays every step


def test_paper_probe_accepts_an_encoder_without_feature_dim():
    images, labels = class_images(32, seed=4)
    encoder = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    result = paper_linear_probe(encoder, images, labels, images, labels, MEAN, STD, epochs=1, augment_preset="none")
    assert 0.0 <= result.top1 <= result.top5 <= 100.0


# --------------------------------------------------------------------------------------- extract_features
@pytest.fixture(scope="module")
def encoder_and_images() -> tuple[nn.Module, torch.Tensor]:
    images, _ = class_images(40, seed=6)
    return calibrated_encoder(images, seed=2), images


def test_extract_features_equals_a_manual_forward(encoder_and_images):
    encoder, images = encoder_and_images
    with torch.no_grad():
        manual = encoder(normalize(images, MEAN, STD))
    for batch_size in (1, 7, 1000):
        features = extract_features(encoder, images, MEAN, STD, batch_size=batch_size)
        assert features.shape == (40, encoder.feature_dim) and features.dtype == torch.float32
        torch.testing.assert_close(features, manual, rtol=1e-5, atol=1e-5)
    channels_last = extract_features(encoder, images, MEAN, STD, channels_last=True)
    torch.testing.assert_close(channels_last, manual, rtol=1e-4, atol=1e-4)


def test_extract_features_restores_modes_and_returns_an_ordinary_tensor(encoder_and_images):
    encoder, images = encoder_and_images
    encoder.train()
    encoder.blocks[0].eval()
    before_modes, before = modes(encoder), snapshot(encoder)
    try:
        features = extract_features(encoder, images, MEAN, STD)
        assert modes(encoder) == before_modes
        assert all(torch.equal(v, before[k]) for k, v in snapshot(encoder).items())  # BN stats kept
    finally:
        encoder.eval()
    assert not features.is_inference() and features.device.type == "cpu"
    w = torch.zeros(features.shape[1], 2, requires_grad=True)
    (features @ w).sum().backward()  # usable by a probe that trains on it
    assert w.grad is not None


def test_extract_features_bf16_autocast(encoder_and_images):
    encoder, images = encoder_and_images
    exact = extract_features(encoder, images, MEAN, STD)
    half = extract_features(encoder, images, MEAN, STD, autocast_dtype=torch.bfloat16, batch_size=16)
    assert half.dtype == torch.float32 and half.shape == exact.shape
    # bf16 keeps 8 bits of mantissa: a few percent of the features' scale.
    assert (half - exact).abs().max() < 0.05 * exact.abs().max()


def test_extract_features_of_an_empty_split(encoder_and_images):
    encoder, images = encoder_and_images
    assert extract_features(encoder, images[:0], MEAN, STD).shape == (0, encoder.feature_dim)


def test_extract_features_rejects_a_model_that_does_not_return_features(encoder_and_images):
    encoder, images = encoder_and_images
    with pytest.raises(ValueError, match="model.encoder"):
        extract_features(ContrastiveModel(encoder), images, MEAN, STD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_everything_runs_on_cuda_and_agrees_with_the_cpu():
    images, labels = class_images(64, seed=7)
    encoder = calibrated_encoder(images, seed=3)
    cpu = extract_features(encoder, images, MEAN, STD)
    gpu_encoder = encoder.cuda()
    try:
        gpu = extract_features(gpu_encoder, images, MEAN, STD)  # device defaults to the encoder's
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
        assert gpu.device.type == "cpu"
        knn = knn_classify(cpu.cuda(), labels, cpu.cuda(), labels, k=5)
        assert knn == knn_classify(cpu, labels, cpu, labels, k=5)
        probe = fit_linear_probe(cpu.cuda(), labels, cpu.cuda(), labels)
        assert abs(probe.top1 - fit_linear_probe(cpu, labels, cpu, labels).top1) <= 2.0
        paper = paper_linear_probe(gpu_encoder, images, labels, images, labels, MEAN, STD, epochs=1, batch_size=16)
        assert paper.top1 > 40.0
    finally:
        encoder.cpu()


# --------------------------------------------------------------------------------------------- arguments
X, Y = torch.randn(10, 4), torch.arange(10) % 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: knn_classify(X, Y, X, Y, k=0), r"k must be an integer >= 1; got 0"),
        (lambda: knn_classify(X, Y, X, Y, temperature=0.0), r"temperature must be .*> 0; got 0.0"),
        (lambda: knn_classify(X, Y, X, Y, temperature=float("nan")), r"temperature must be .*finite.*; got nan"),
        (lambda: knn_classify(X, Y, X, Y, batch_size=0), r"batch_size must be .*; got 0"),
        (lambda: knn_classify(X, Y[:9], X, Y), r"train_labels has 9 labels but train_features has 10"),
        (lambda: knn_classify(X, Y, X[:, :3], Y), r"same feature dimension"),
        (lambda: knn_classify(X, Y % 2, X, Y, num_classes=2), r"test_labels has a label 2.*0\.\.1"),
        (lambda: knn_classify(X, Y - 1, X, Y), r"train_labels has a label -1"),
        (lambda: knn_classify(X, Y.float(), X, Y), r"train_labels must be .*integer tensor.*; got .*float32"),
        (lambda: knn_classify(X[0], Y, X, Y), r"train_features must be .*\[n, D\].*; got .*shape \(4,\)"),
        (lambda: knn_classify(X[:0], Y[:0], X, Y), r"train_features must be .*non-empty"),
        (lambda: knn_scores(X, Y, X.masked_fill(X > 1, float("nan"))), r"query_features contains NaN"),
        (lambda: fit_linear_probe(X, Y, X, Y, weight_decay=-1.0), r"weight_decay must be .*>= 0; got -1.0"),
        (lambda: fit_linear_probe(X, Y, X, Y, epochs=-1), r"epochs must be .*>= 0; got -1"),
        (lambda: fit_linear_probe(X, Y, X, Y, lr=0), r"lr must be .*> 0; got 0"),
        (lambda: fit_linear_probe(X, Y, X, Y[:5]), r"test_labels has 5 labels"),
        (lambda: fit_linear_probe(X, Y, X, Y, num_classes=0), r"num_classes must be an integer >= 1; got 0"),
        (lambda: retrieval_metrics(X, Y, ks=()), r"ks must be .*non-empty.*; got \(\)"),
        (lambda: retrieval_metrics(X, Y, ks=(0,)), r"ks must be an integer >= 1; got 0"),
    ],
)
def test_feature_functions_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1; got 0"),
        ({"momentum": 1.5}, r"momentum must be .*<= 1; got 1.5"),
        ({"augment_preset": "nope"}, r"augment_preset: unknown augmentation 'nope'.*crop-flip"),
        ({"autocast_dtype": torch.float32}, r"autocast_dtype must be .*; got torch.float32"),
        ({"channels_last": "yes"}, r"channels_last must be True or False; got 'yes'"),
        ({"device": "meta"}, r"device must be the device the encoder is on \(cpu\).*; got 'meta'"),
        ({"progress": 3}, r"progress must be .*callable.*; got 3"),
        ({"seed": -1}, r"seed must be .*>= 0; got -1"),
    ],
)
def test_paper_probe_rejects_bad_arguments(kwargs, match):
    images, labels = class_images(8)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    with pytest.raises(ValueError, match=match):
        paper_linear_probe(encoder, images, labels, images, labels, MEAN, STD, **kwargs)


def test_paper_probe_rejects_splits_of_different_shapes():
    images, labels = class_images(8)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    with pytest.raises(ValueError, match=r"same \[C, H, W\]"):
        paper_linear_probe(encoder, images, labels, images[:, :, :20], labels, MEAN, STD)
    with pytest.raises(ValueError, match=r"test_labels has 7 labels but test_images has 8"):
        paper_linear_probe(encoder, images, labels, images, labels[:7], MEAN, STD)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"batch_size must be an integer >= 1; got 0"),
        ({"autocast_dtype": torch.float64}, r"autocast_dtype must be .*bfloat16.*; got torch.float64"),
        ({"channels_last": 1}, r"channels_last must be True or False; got 1"),
        ({"device": "meta"}, r"device must be .*; got 'meta'"),
    ],
)
def test_extract_features_rejects_bad_arguments(kwargs, match):
    images, _ = class_images(4)
    encoder = create_model("small-cnn", in_channels=1, width=0.25)
    with pytest.raises(ValueError, match=match):
        extract_features(encoder, images, MEAN, STD, **kwargs)
    with pytest.raises(ValueError, match=r"images must be .*\[n, C, H, W\]"):
        extract_features(encoder, images[0], MEAN, STD)
