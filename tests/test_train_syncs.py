"""Host syncs of the training loop: the loss and the finiteness checks are read from the device every
``train.check_finite_every`` steps, not every step (issue 15). A TorchFunctionMode counts the reads
(``item``, ``tolist``, ``bool``, ``float``, ``int`` of a tensor) made by the loop itself; the losses' own
checks are theirs and not counted here."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import method_harness as harness
from tunedcl import rundir
from tunedcl.train import loop, pending
from tunedcl.train.config import RESUMABLE, load_config
from tunedcl.train.loop import TrainingError

SYNCS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
         torch.Tensor.__int__, torch.Tensor.__index__}
TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


class LoopSyncs(TorchFunctionMode):
    """Counts the host reads of tensors whose nearest caller outside torch is the training loop (loop.py and
    the pending-loss reads it makes, pending.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in SYNCS:
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(TORCH_DIR):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename in (loop.__file__, pending.__file__):
                self.count += 1
        return func(*args, **(kwargs or {}))


def _config(every: int):
    return load_config("quick", [*harness.TINY_DIGITS, f"train.check_finite_every={every}"])


def _steps(trainer: loop.Trainer, n: int) -> int:
    """Take ``n`` steps of the first epoch; the loop's host reads during them."""
    order = harness.first_epoch_order(trainer)
    with LoopSyncs() as counter:
        for index in range(n):
            trainer.train_step(order, index)
    return counter.count


@pytest.mark.parametrize("every", [1, 4])
def test_the_loop_reads_the_device_once_per_check(tmp_path: Path, every: int) -> None:
    trainer = harness.make_trainer(_config(every), tmp_path)
    assert trainer.steps_per_epoch > 8  # no epoch end among the 8 steps
    # Per checking step: the methods' embedding check (before the loss exists) and the read of the
    # losses; nothing on the steps between. every=1 is the loop as it was: 2 reads a step.
    assert _steps(trainer, 8) == 2 * (8 // every)


def test_checking_less_often_changes_neither_the_training_nor_the_logged_loss(tmp_path: Path) -> None:
    each, fourth = (harness.make_trainer(_config(k), tmp_path / str(k)) for k in (1, 4))
    _steps(each, 6)
    _steps(fourth, 6)
    assert fourth.pending.steps == 2  # steps 5 and 6 are still on the device
    fourth._read_losses()
    harness.assert_states_equal(each.model.state_dict(), fourth.model.state_dict())
    assert fourth.epoch_sums["steps"] == each.epoch_sums["steps"] == 6
    assert fourth.epoch_sums["loss"] == pytest.approx(each.epoch_sums["loss"], rel=1e-12)
    assert fourth.last_loss == each.last_loss and math.isfinite(each.last_loss)


def test_the_automatic_period_is_every_step_on_the_cpu(tmp_path: Path) -> None:
    assert harness.make_trainer(_config(0), tmp_path / "auto").check_every == 1
    assert harness.make_trainer(_config(7), tmp_path / "seven").check_every == 7
    assert "train.check_finite_every" in RESUMABLE  # it cannot change a run's result


def test_a_non_finite_loss_between_checks_stops_before_any_checkpoint(tmp_path: Path) -> None:
    trainer = harness.make_trainer(_config(4), tmp_path)
    training_step = trainer.method.training_step

    def poisoned(batch):
        out = training_step(batch)
        if batch.step == 1:  # the second step's loss is NaN
            out.loss = out.loss * float("nan")
        return out

    trainer.method.training_step = poisoned
    _steps(trainer, 2)  # no check yet: the NaN is only noted on the device
    assert trainer.pending.steps == 2
    with pytest.raises(TrainingError, match=r"the loss \(nan\) became non-finite at a step from 1 to 2 .*"
                                            r"train.check_finite_every"):
        trainer.checkpoint()
    assert not (tmp_path / rundir.CHECKPOINT).exists()


def test_every_step_checking_names_the_step(tmp_path: Path) -> None:
    trainer = harness.make_trainer(_config(1), tmp_path)
    training_step = trainer.method.training_step

    def poisoned(batch):
        out = training_step(batch)
        if batch.step == 2:
            out.loss = out.loss * float("inf")
        return out

    trainer.method.training_step = poisoned
    with pytest.raises(TrainingError, match=r"the loss \(inf\) became non-finite at step 3 \(epoch 1\)"):
        _steps(trainer, 3)
