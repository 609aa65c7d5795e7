"""docs/extending.md as a test, so the guide cannot rot: a toy loss family and a toy method with an EMA target,
each written and registered in this file alone, then trained for a few steps through tunedcl.train.

The toy loss is the decoupled contrastive loss (Yeh et al., ECCV 2022), positives left out of the denominator:

    L_i = logsumexp_{n in N(i)} s_in / tau  -  mean_{p in P(i)} s_ip / tau

The toy method is BYOL-shaped: an online encoder + projector + predictor regresses the projections of a target
network that follows the online one by an exponential moving average (EMA), t <- m t + (1 - m) o.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import method_harness as harness
from loss_cases import LossCase
from test_losses_values import LAYOUTS, make_case
from tunedcl import create_loss
from tunedcl._checks import check_real
from tunedcl.losses import LOSSES, ContrastiveLoss, register_loss
from tunedcl.losses.chunked import Chunk
from tunedcl.losses.pairs import Pairs
from tunedcl.methods import METHODS, Batch, ContrastiveMethod, Method, StepOutput, register_method
from tunedcl.models import ContrastiveModel, ProjectionHead
from tunedcl.train.config import load_config
from tunedcl.train.loop import TrainingError, train
from tunedcl.train.runtime import setup

pytest.importorskip("sklearn", reason="the digits data set comes with scikit-learn (pip install 'tunedcl[dev]')")


# --- a loss family: one class (hyperparameters, row loss, kernel, registration) ------------------------------
@dataclass(frozen=True)
class DecoupledKernel:
    """Chunked path: loss = lse_N - mean_p L_p;  dL_n = e^{L_n - lse_N},  dL_p = -1/|P|."""

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        log_negatives = chunk.row_logsumexp(exclude_positives=True)
        mean_positive = chunk.pairs.sum(chunk.pair_logits) / chunk.pairs.counts.clamp_min(1)
        return log_negatives - mean_positive, log_negatives[:, None]

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        grad = chunk.exp_minus(stats[:, 0])
        grad[chunk.pairs.rows, chunk.pairs.cols] = -(1.0 / chunk.pairs.counts)[chunk.pairs.rows]
        return grad


class DecoupledLoss(ContrastiveLoss):
    """Decoupled contrastive loss: SupCon L_out without the positives in the denominator."""

    def __init__(self, temperature: float = 0.1, **options) -> None:
        super().__init__(temperature=temperature, **options)

    def row_loss(self, logits: Tensor, pairs: Pairs) -> Tensor:
        pair_logits = logits[pairs.rows, pairs.cols]
        negatives = logits.index_put((pairs.rows, pairs.cols), torch.tensor(-math.inf, dtype=logits.dtype))
        return torch.logsumexp(negatives, dim=1) - pairs.sum(pair_logits) / pairs.counts

    def kernel(self) -> DecoupledKernel:
        return DecoupledKernel()


def decoupled_anchor(s_pos: list[Tensor], s_neg: list[Tensor], *, temperature: float) -> Tensor:
    """The row of the shared table (tests/loss_cases.py) the new family would get."""
    return torch.log(sum(torch.exp(s / temperature) for s in s_neg)) - sum(s_pos) / temperature / len(s_pos)


# --- a method with an EMA target: one class (parts, step, after-step hook, extra state) -------------------------
class OnlineNetwork(nn.Module):
    """Encoder + projector + predictor: the trained model (``.encoder`` is what evaluation reads)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.encoder, self.projector, self.predictor = encoder, projector, predictor

    def forward(self, views: Tensor) -> Tensor:
        flat = views.reshape(-1, *views.shape[-3:])
        predictions = self.predictor(self.projector(self.encoder(flat)))
        return predictions.reshape(*views.shape[:2], -1)


class ToyEMA(Method):
    """Toy BYOL: predict an EMA target's projection of the other view."""

    uses_labels = False
    min_views = 2

    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__(momentum=momentum)
        self.momentum = check_real("momentum", momentum, low=0.0, high=1.0)

    def build(self, encoder, num_classes, *, projection_dim, projection_hidden, gather_distributed) -> nn.Module:
        projector = ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim)
        predictor = ProjectionHead(projection_dim, projection_dim, projection_dim)
        self.model = OnlineNetwork(encoder, projector, predictor)
        self.target = ContrastiveModel(copy.deepcopy(encoder), copy.deepcopy(projector)).requires_grad_(False)
        return self.model

    def training_step(self, batch: Batch) -> StepOutput:
        predictions = batch.forward(batch.views).float()
        batch.check_finite("the predictions", predictions)
        with torch.no_grad():
            targets = self.target(batch.views).projections.float()
        swapped = targets.flip(1)  # view 0 predicts view 1's target and the other way round
        loss = (2 - 2 * F.cosine_similarity(predictions, swapped, dim=-1)).mean()
        return StepOutput(loss)

    @torch.no_grad()
    def after_step(self, step: int, total_steps: int) -> None:
        online = [*self.model.encoder.parameters(), *self.model.projector.parameters()]
        for target, weight in zip(self.target.parameters(), online, strict=True):
            target.mul_(self.momentum).add_(weight.detach(), alpha=1.0 - self.momentum)

    def state_dict(self) -> dict:
        return {"target": self.target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])

    def to(self, device: torch.device) -> ToyEMA:
        self.target.to(device)
        return self


@pytest.fixture
def registered():
    """Register the toy loss and method for one test, and take them out again afterwards."""
    register_loss("toy-decoupled")(DecoupledLoss)
    register_method("toy-ema")(ToyEMA)
    yield
    LOSSES.remove("toy-decoupled")
    METHODS.remove("toy-ema")


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "mask-2d"])  # every anchor: a negative
@pytest.mark.parametrize("chunk_size", [0, None, 3])
def test_a_new_loss_family_is_one_class_and_one_row(registered, layout: str, chunk_size: int | None) -> None:
    case = LossCase("toy-decoupled", "toy-decoupled", dict(temperature=0.3), partial(decoupled_anchor, temperature=0.3))
    features, labels, mask = make_case(layout, seed=20)
    features = features.double().requires_grad_(True)
    got = case(features, labels, mask, reduction="none", chunk_size=chunk_size)
    expected = case.reference(features, labels, mask)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    (ours,) = torch.autograd.grad(got.sum(), features)
    (theirs,) = torch.autograd.grad(expected.sum(), features)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-10)
    assert isinstance(create_loss("toy-decoupled", temperature=0.5), DecoupledLoss)


def test_the_toy_loss_trains_through_a_contrastive_method(registered, tmp_path: Path) -> None:
    @register_method("toy-decoupled-ssl")
    class DecoupledSSL(ContrastiveMethod):
        """Self-supervised decoupled contrastive learning."""

        loss_name = "toy-decoupled"
        uses_labels = False
        min_views = 2

    try:
        config = load_config("quick", [*harness.TINY_DIGITS, "loss.method=toy-decoupled-ssl", "loss.temperature=0.2"])
        assert config.loss.hyperparameters["temperature"] == 0.2
        outcome = train(config, tmp_path, setup(config.train))  # a Trainer: restore if asked, then run
        assert math.isfinite(outcome.final_loss) and outcome.steps == 2 * (len(outcome.dataset.train) // 64)
    finally:
        METHODS.remove("toy-decoupled-ssl")


def test_an_ema_method_trains_its_target_and_resumes_exactly(registered, tmp_path: Path) -> None:
    config = load_config("quick", [*harness.TINY_DIGITS, "loss.method=toy-ema", "loss.momentum=0.8"])
    assert config.loss.momentum == 0.8
    straight = harness.make_trainer(config, tmp_path / "straight")
    online_before = [p.detach().clone() for p in straight.model.encoder.parameters()]
    target_before = [p.detach().clone() for p in straight.method.target.encoder.parameters()]
    straight.train_step(harness.first_epoch_order(straight), 0)
    # The EMA update by hand: t1 = m t0 + (1 - m) o1, where o1 are the online weights after the step.
    for t0, t1, o1 in zip(target_before, straight.method.target.encoder.parameters(),
                          straight.model.encoder.parameters(), strict=True):
        torch.testing.assert_close(t1, 0.8 * t0 + 0.2 * o1.detach(), rtol=0, atol=1e-6)
        assert t1.grad is None  # no gradient ever reaches the target
    moved = zip(online_before, straight.model.encoder.parameters(), strict=True)
    assert any(not torch.equal(o0, o1) for o0, o1 in moved)

    runs = harness.train_straight_and_resumed(config, tmp_path, cut_after=5)  # resumed at step 5
    runs.assert_same_model()
    harness.assert_states_equal(runs.finished.method.target.state_dict(), runs.outcome.method.target.state_dict())


def test_a_collapsed_method_stops_with_a_message(tmp_path: Path) -> None:
    @register_method("toy-collapse")
    class ToyCollapse(Method):
        """Every image to one point: the loop's collapse check must stop it."""

        uses_labels = False
        min_views = 2

        def build(self, encoder, num_classes, *, projection_dim, projection_hidden, gather_distributed):
            self.model = ContrastiveModel(encoder, ProjectionHead(encoder.feature_dim, projection_hidden, projection_dim))
            return self.model

        def training_step(self, batch: Batch) -> StepOutput:
            projections = batch.forward(batch.views).projections.float()
            return StepOutput(projections.pow(2).mean(), embeddings=projections.detach() * 0 + 1)

    try:
        config = load_config("quick", [*harness.TINY_DIGITS, "loss.method=toy-collapse", "train.epochs=1"])
        with pytest.raises(TrainingError, match=r"the embeddings collapsed in epoch 1: their spread .* is 0"):
            harness.make_trainer(config, tmp_path / "run").run()
    finally:
        METHODS.remove("toy-collapse")


def test_a_healthy_run_logs_its_embedding_spread(registered, tmp_path: Path) -> None:
    config = load_config("quick", [*harness.TINY_DIGITS, "train.epochs=1"])
    harness.make_trainer(config, tmp_path / "run").run()
    record = harness.first_epoch_record(tmp_path / "run")
    assert 0.05 < record["embedding_spread"] < 2.0  # supervised: about sqrt(classes / D), far above collapse
