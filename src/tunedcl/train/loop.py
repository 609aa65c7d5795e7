"""The training loop of every method: one loop, exactly resumable, that knows no method by name.

Data flow per step: a slice of the epoch's permutation (a pure function of seed and epoch, so a resumed
run sees the same order) -> uint8 images on the device -> V augmented views in one batched call (a
per-rank generator whose state is checkpointed) -> the method's step under autocast (model, loss) ->
SGD/AdamW step -> the method's after-step hook -> cosine schedule. A checkpoint holds everything that
determines the rest of the run: weights, the method's state (memory queues, targets), optimiser,
scheduler, generator states, step and the partial epoch's sums. On CPU a resumed run therefore ends with
bit-identical weights to an uninterrupted one.

:class:`Trainer` splits the run into :meth:`~Trainer.restore`, :meth:`~Trainer.train_step`,
:meth:`~Trainer.end_epoch` and :meth:`~Trainer.checkpoint`; :func:`train` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tunedcl import __version__, distributed, rundir
from tunedcl.analysis import batch_gradient_statistics
from tunedcl.data.augment import make_views
from tunedcl.data.prefetch import BatchPrefetcher
from tunedcl.methods import Batch, Method
from tunedcl.train.assemble import (
    build_method,
    epoch_permutation,
    keep_on_device,
    load_training_data,
    trained_classes,
    training_labels,
)
from tunedcl.train.builders import build_optimizer, build_scheduler
from tunedcl.train.config import RESUMABLE, Config, ConfigError, flat_config
from tunedcl.train.pending import PendingLosses
from tunedcl.train.progress import Progress, tensorboard_writer
from tunedcl.train.runtime import Runtime, StopFlag, seed_everything

GRADIENT_BATCHES = 8  # train.log_gradients analyses every (steps_per_epoch // 8)-th batch: 8 to 15 per epoch
# Collapse: the spread of the L2-normalised embeddings, sqrt(D) x (mean over dimensions of the std over the batch),
# is about 1 for embeddings spread over the sphere and 0 when every image maps to one point (SimSiam's measure).
# A whole epoch below this stops the run: it does not recover, and every later epoch would be wasted.
COLLAPSED_SPREAD = 0.01
# train.check_finite_every=0 on an accelerator: a host sync every 50 steps lets the host queue ~50 steps of
# kernels ahead of the GPU, and a divergence costs at most 49 wasted steps (no checkpoint is written unchecked).
AUTO_CHECK_EVERY_ACCELERATOR = 50


class TrainingError(RuntimeError):
    """The run stopped and cannot go on as configured (the message says why and what was kept)."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written, the run can be resumed."""


@dataclass
class TrainOutcome:
    model: nn.Module  # unwrapped (no DDP)
    method: Method
    dataset: Any  # tunedcl.data.Dataset
    steps: int
    train_seconds: float
    views_per_second: float
    final_loss: float


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts, lists) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _new_epoch_sums() -> dict[str, float]:
    return {"loss": 0.0, "steps": 0, "seconds": 0.0}


class Trainer:
    """One run's training state and its four phases. Construct, :meth:`restore` if resuming, :meth:`run`."""

    def __init__(self, config: Config, run_dir: Path, runtime: Runtime, progress: Progress,
                 on_epoch_end: Callable[[Method, int, int], dict[str, Any] | None] | None = None) -> None:
        self.config, self.run_dir, self.runtime, self.progress = config, run_dir, runtime, progress
        self.on_epoch_end = on_epoch_end
        seed_everything(config.train.seed)
        self.dataset = load_training_data(config)
        self.memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        gather = runtime.distributed and config.train.gather_distributed
        self.train_labels = training_labels(self.dataset.train.labels, config.data.train_label_groups,
                                            self.dataset.num_classes)
        self.method = build_method(config, self.dataset.in_channels, trained_classes(config, self.dataset), gather)
        self.model = self.method.model.to(runtime.device, memory_format=self.memory_format)
        self.method.to(runtime.device)
        self.wrapped: nn.Module = self.model
        if runtime.distributed:
            self._sync_batchnorm()
            device = runtime.device
            device_ids = [device.index] if device.type == "cuda" else None
            # A method whose model has parameters without a gradient in some steps (SwAV's frozen prototypes)
            # says so; DDP must then look for them every step, which costs a little.
            self.wrapped = DistributedDataParallel(self.model, device_ids=device_ids,
                                                   find_unused_parameters=self.method.has_unused_parameters)
        self._plan_steps()
        self.optimizer = build_optimizer(config, self.model, self.method.fixed_lr_modules())
        self.scheduler = build_scheduler(config, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config.train.seed * 7919 + 17 + runtime.rank)
        self.n_views = self.method.fixed_views or config.data.n_views
        self.step, self.epoch_sums = 0, _new_epoch_sums()
        self.metrics = rundir.MetricsLog(run_dir)
        self.trained_seconds, self.last_loss = 0.0, float("nan")
        # The loss and the finiteness flags stay on the device between reads (every check_every steps, and
        # before every checkpoint and epoch record), so a step needs no host sync of its own.
        self.check_every = config.train.check_finite_every or (
            1 if runtime.device.type == "cpu" else AUTO_CHECK_EVERY_ACCELERATOR
        )
        self.pending = PendingLosses(runtime.device)
        self._closing_step = False  # the step being taken ends an epoch or the run
        # On a GPU the split lives there when it fits (train.data_on_device_gib); else a host-held split's next
        # batch is copied from pinned memory while this step runs. On the CPU the batch is indexed as always.
        self.train_images = self.dataset.train.images
        if keep_on_device(self.train_images.nbytes, runtime.device, config.train.data_on_device_gib):
            self.train_images = self.train_images.to(runtime.device)
            self.train_labels = self.train_labels.to(runtime.device)
        on_host = self.train_images.device.type == "cpu"
        self.prefetcher = (BatchPrefetcher(self.train_images, self.train_labels, runtime.device)
                           if runtime.device.type == "cuda" and on_host else None)
        # train.log_gradients: every log_every-th batch of an epoch (8 to 15 of them), analysed at its end (one
        # batch alone is noisy; the analysis runs outside the timed steps). An epoch resumed mid-way averages
        # only the batches logged after the resume.
        self.gradient_terms = self.method.gradient_terms() if config.train.log_gradients else None
        self.logged_batches: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.log_every = max(1, self.steps_per_epoch // GRADIENT_BATCHES)
        self.spread_sum: torch.Tensor | None = None  # this epoch's summed embedding spread (see COLLAPSED_SPREAD)
        self.spread_steps = 0

    def _sync_batchnorm(self) -> None:
        """Under DDP on GPUs, BatchNorm over the global batch (converted in place: ``method.model`` is the same
        module). NCCL only; on CPUs (gloo) each rank keeps its own statistics."""
        if self.config.train.sync_batchnorm and self.runtime.device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        elif self.runtime.is_main and self.config.train.batch_size // self.runtime.world_size < 32:
            self.progress.line(
                f"note: {self.config.train.batch_size // self.runtime.world_size} images per process: BatchNorm "
                "statistics of so few are noisy (train.sync_batchnorm=true syncs them on GPUs)"
            )

    def _plan_steps(self) -> None:
        batch, world = self.config.train.batch_size, self.runtime.world_size
        if batch % world:
            raise ConfigError(f"train.batch_size={batch} must be divisible by the {world} processes")
        self.batch, self.local_batch = batch, batch // world
        self.steps_per_epoch = len(self.dataset.train) // batch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"train.batch_size={batch} is larger than the {len(self.dataset.train)} training images; lower it"
            )
        self.total_steps = self.config.train.max_steps or self.config.train.epochs * self.steps_per_epoch
        self.epochs = -(-self.total_steps // self.steps_per_epoch)

    # --- restore and checkpoint -------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What decides this run's result besides the weights: the config (less what --resume may change,
        RESUMABLE, and eval.*), the number of processes and the tunedcl version. Stored in every checkpoint."""
        config = {k: v for k, v in flat_config(self.config).items() if k not in RESUMABLE and not k.startswith("eval.")}
        return {**config, "processes": self.runtime.world_size, "tunedcl": __version__}

    def _check_fingerprint(self, state: dict[str, Any]) -> None:
        saved, now = state.get("fingerprint"), self.fingerprint()
        if not isinstance(saved, dict):
            raise ConfigError(f"the checkpoint in {self.run_dir} has no fingerprint (written by an earlier tunedcl); "
                              "start the run again in a new --out")
        differing = sorted(key for key in saved.keys() | now.keys() if saved.get(key) != now.get(key))
        if differing:
            shown = "; ".join(f"{key}: {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now" for key in differing)
            raise ConfigError(
                f"the checkpoint in {self.run_dir} was written by another run ({shown}); --resume continues the "
                f"same run and may change only {', '.join(RESUMABLE)} and eval.*"
            )

    def restore(self) -> None:
        """Continue from the run directory's checkpoint, if there is one; drop records of lost work."""
        # On the CPU: RNG states must stay CPU ByteTensors; load_state_dict moves the rest.
        state = rundir.load_checkpoint(self.run_dir, map_location="cpu")
        if state is not None:
            self._check_fingerprint(state)
            try:
                self._load(state)
            except (KeyError, RuntimeError, ValueError, TypeError) as error:
                raise rundir.CheckpointError(
                    f"the checkpoint in {self.run_dir} does not fit this run ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:200] if str(error) else ''})"
                ) from None
            if self.runtime.is_main:
                self.progress.line(f"resumed from step {self.step} (epoch {self.step // self.steps_per_epoch + 1})")
        if self.runtime.is_main:
            self.metrics.truncate_after(self.step)

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method_states"][self.runtime.rank])
        self.generator.set_state(state["generators"][self.runtime.rank])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.epoch_sums = state["step"], state["epoch_sums"]

    def checkpoint(self, finished: bool = False) -> None:
        """Write checkpoints/last.pt (rank 0, atomically), with every rank's generator and method state.
        The steps not yet checked are checked first: a checkpoint never holds non-finite weights."""
        self._read_losses()
        generators = distributed.per_rank(self.generator.get_state())
        # Per rank (queues differ without gathering), and on the CPU before they travel: pickled CUDA tensors
        # would be rebuilt on every other rank's GPU by all_gather_object.
        method_states = distributed.per_rank(_to_cpu(self.method.state_dict()))
        if not self.runtime.is_main:
            return
        rundir.save_checkpoint(self.run_dir, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method_states": method_states,
            "generators": generators,
            "torch_rng": torch.get_rng_state(),
            "step": self.step,
            "epoch_sums": dict(self.epoch_sums),
            "finished": finished,
            "steps_per_epoch": self.steps_per_epoch,
            "fingerprint": self.fingerprint(),
        })

    # --- one step ---------------------------------------------------------------------------------------------
    def _checks_this_step(self) -> bool:
        """Whether the step being taken (``self.step + 1``) reads the device: every ``check_every``-th, and the
        last of an epoch or of the run (so the epoch's timed steps include the wait for the device)."""
        return (self.step + 1) % self.check_every == 0 or self._closing_step

    def _check_finite(self, what: str, tensor: torch.Tensor) -> None:
        """The methods' check of their embeddings: at once on a checking step (before the loss is even
        computed), else noted on the device and raised at the next read."""
        if not self._checks_this_step():
            self.pending.flag(what, tensor)
            return
        # Every rank must stop together, or the others would wait in a collective forever.
        if distributed.any_rank(not bool(torch.isfinite(tensor).all()), self.runtime.device):
            raise self._non_finite(what)

    def _non_finite(self, what: str, first: int | None = None, last: int | None = None) -> TrainingError:
        """The error for ``what`` found non-finite in one of the steps ``first..last`` (1-based; default: the
        step being taken)."""
        last = self.step + 1 if last is None else last
        first = last if first is None else first
        when = f"at step {last}" if first == last else (
            f"at a step from {first} to {last} (checked every {self.check_every}: train.check_finite_every)"
        )
        return TrainingError(
            f"{what} became non-finite {when} (epoch {(last - 1) // self.steps_per_epoch + 1}); the last good "
            f"checkpoint ({self.run_dir / rundir.CHECKPOINT}) is kept. Lower optim.lr, add warm-up, or check the data."
        )

    def _read_losses(self) -> None:
        """The losses and flags gathered on the device since the last read: one host sync (and, under DDP, one
        all_reduce); raises on every rank together if anything was non-finite; adds the losses to the epoch."""
        if not self.pending.steps:
            return
        read = self.pending.read()
        if read.non_finite:
            raise self._non_finite(read.non_finite, self.pending.last_step - self.pending.steps + 1,
                                   self.pending.last_step)
        self.epoch_sums["loss"] += read.loss_sum
        self.last_loss = read.last_loss
        self.pending.clear()

    def shown_loss(self) -> float:
        """The epoch's mean loss over the steps read so far (the progress bar's; no sync)."""
        read_steps = self.epoch_sums["steps"] - self.pending.steps
        return self.epoch_sums["loss"] / read_steps if read_steps else float("nan")

    def _views(self, rows: torch.Tensor, next_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        device, data = self.runtime.device, self.config.data
        if self.prefetcher is not None:
            images, labels = self.prefetcher.fetch(rows, next_rows)
        else:
            rows = rows.to(self.train_images.device, non_blocking=True)  # no stream sync when the split is on a GPU
            images = self.train_images[rows].to(device, non_blocking=True)
            labels = self.train_labels[rows].to(device, non_blocking=True)
        views = make_views(images, self.n_views, data.augment, self.dataset.mean, self.dataset.std,
                           generator=self.generator, last_view_preset=data.last_view_augment)
        return views.contiguous(memory_format=torch.contiguous_format), labels

    def _track_spread(self, embeddings: torch.Tensor) -> None:
        """Add this batch's embedding spread (see COLLAPSED_SPREAD) to the epoch's sum, without a host sync."""
        rows = F.normalize(embeddings.reshape(-1, embeddings.shape[-1]).float(), dim=1)
        spread = rows.std(dim=0).mean() * rows.shape[1] ** 0.5
        self.spread_sum = spread if self.spread_sum is None else self.spread_sum + spread
        self.spread_steps += 1

    def _check_collapse(self, record: dict[str, Any]) -> None:
        if self.spread_sum is None:
            return
        spread = distributed.mean_over_ranks(float(self.spread_sum) / self.spread_steps, self.runtime.device)
        record["embedding_spread"] = spread
        self.spread_sum, self.spread_steps = None, 0
        if spread < COLLAPSED_SPREAD:
            raise TrainingError(
                f"the embeddings collapsed in epoch {record['epoch']}: their spread (sqrt(D) x the mean std of the "
                f"normalised embeddings) is {spread:.2g}, healthy runs stay near 1 (a collapse stops at "
                f"< {COLLAPSED_SPREAD}). Lower optim.lr, add warm-up, or check the method's hyperparameters."
            )

    def train_step(self, order: torch.Tensor, index: int) -> float:
        """One optimiser step on the ``index``-th batch of the epoch's ``order``; returns the seconds it took."""
        tic = time.perf_counter()
        self._closing_step = index + 1 == self.steps_per_epoch or self.step + 1 >= self.total_steps
        start = index * self.batch + self.runtime.rank * self.local_batch
        # The next step's rows in this epoch (the first batch of an epoch is copied when it is needed).
        following = None if self._closing_step else order[start + self.batch : start + self.batch + self.local_batch]
        views, labels = self._views(order[start : start + self.local_batch], following)
        batch = Batch(views, labels, self.wrapped, self.memory_format, self._check_finite, step=self.step,
                      epoch=self.step // self.steps_per_epoch)
        with self.runtime.autocast():
            out = self.method.training_step(batch)
        if out.embeddings is not None:
            self._track_spread(out.embeddings.detach())
            if self.gradient_terms is not None and index % self.log_every == 0:
                self.logged_batches.append((out.embeddings.detach(), out.labels))
        self.pending.add(out.loss.detach(), out.is_global, self.step + 1)
        if self._checks_this_step():
            self._read_losses()  # before backward: a non-finite loss never reaches the weights on a checking step
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.step += 1
        self.method.after_step(self.step, self.total_steps)
        self.scheduler.step()
        seconds = time.perf_counter() - tic
        self.trained_seconds += seconds
        self.epoch_sums["steps"] += 1
        self.epoch_sums["seconds"] += seconds
        return seconds

    # --- end of an epoch --------------------------------------------------------------------------------------
    def end_epoch(self, epoch: int, board: Any) -> None:
        """The epoch's metrics record (and periodic evaluation, gradient statistics), then a checkpoint."""
        self._read_losses()
        sums = self.epoch_sums
        record = {
            "epoch": epoch + 1,
            "step": self.step,
            "loss": sums["loss"] / max(sums["steps"], 1),
            "lr": self.scheduler.get_last_lr()[0],
            "views_per_s": sums["steps"] * self.batch * self.n_views / max(sums["seconds"], 1e-9),
            "seconds": sums["seconds"],
        }
        if self.on_epoch_end is not None:
            record.update(self.on_epoch_end(self.method, epoch + 1, self.step) or {})
        self._check_collapse(record)
        if self.logged_batches:
            per_batch = [batch_gradient_statistics(*batch, self.gradient_terms) for batch in self.logged_batches]
            record.update({key: sum(s[key] for s in per_batch) / len(per_batch) for key in per_batch[0]})
            self.logged_batches.clear()
        self.epoch_sums = _new_epoch_sums()
        if self.runtime.is_main:
            self._publish(record, board)
        self.checkpoint(finished=self.step >= self.total_steps)

    def _publish(self, record: dict[str, Any], board: Any) -> None:
        self.metrics.append(record)
        if board is not None:
            for key, value in record.items():
                if key not in ("epoch", "step") and isinstance(value, float | int):
                    board.add_scalar(key, value, self.step)
            board.flush()
        self.progress.line(
            f"epoch {record['epoch']}/{self.epochs}  loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
            f"{record['views_per_s']:,.0f} views/s  {record['seconds']:.1f} s"
            + "".join(f"  {k} {v:.2f}" for k, v in record.items() if k.startswith("knn"))
        )

    # --- the whole run ----------------------------------------------------------------------------------------
    def _interrupted(self) -> Interrupted:
        return Interrupted(f"interrupted at step {self.step}; checkpoint written to {self.run_dir / rundir.CHECKPOINT}")

    def run(self) -> TrainOutcome:
        """Train to the configured number of steps, checkpointing every epoch (and every
        ``train.checkpoint_every_steps``), stopping cleanly on Ctrl-C or SIGTERM."""
        config, device = self.config, self.runtime.device
        board = tensorboard_writer(self.run_dir) if config.train.tensorboard and self.runtime.is_main else None
        views_per_step = self.batch * self.n_views
        with StopFlag() as stop:
            while self.step < self.total_steps:
                epoch, first = divmod(self.step, self.steps_per_epoch)
                order = epoch_permutation(config.train.seed, epoch, len(self.dataset.train))
                self.wrapped.train()
                for index in range(first, self.steps_per_epoch):
                    seconds = self.train_step(order, index)
                    self.progress.update(epoch, self.epochs, index + 1, self.steps_per_epoch, self.shown_loss(),
                                         views_per_step / max(seconds, 1e-9))
                    if index + 1 == self.steps_per_epoch or self.step >= self.total_steps:
                        break  # the epoch's record and checkpoint come first; a stop request after them
                    # Under DDP asking every rank is a collective and a host sync: only at the checking steps
                    # (one process asks itself every step, for free).
                    ask = self.runtime.world_size == 1 or self.step % self.check_every == 0
                    if ask and distributed.any_rank(stop.requested, device):
                        self.checkpoint()
                        raise self._interrupted()
                    every = config.train.checkpoint_every_steps
                    if every and self.step % every == 0:
                        self.checkpoint()
                self.end_epoch(epoch, board)
                if self.step < self.total_steps and distributed.any_rank(stop.requested, device):
                    raise self._interrupted()
        return self._outcome(views_per_step)

    def _outcome(self, views_per_step: int) -> TrainOutcome:
        rate = 0.0
        if self.runtime.is_main:
            rate = _mean_rate(self.metrics, views_per_step, self.trained_seconds, self.step)
        return TrainOutcome(model=self.model, method=self.method, dataset=self.dataset, steps=self.step,
                            train_seconds=self.trained_seconds, views_per_second=rate, final_loss=self.last_loss)


def train(
    config: Config,
    run_dir: Path,
    runtime: Runtime,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    on_epoch_end: Any = None,
) -> TrainOutcome:
    """Train as configured, checkpointing into ``run_dir``; resume from its checkpoint if asked."""
    trainer = Trainer(config, run_dir, runtime, progress or Progress(quiet=True), on_epoch_end)
    if resume:
        trainer.restore()
    return trainer.run()


def _mean_rate(metrics: rundir.MetricsLog, views_per_step: int, seconds: float, steps: int) -> float:
    """Views/s over the whole run (all epochs in metrics.jsonl, including those before a resume)."""
    records = [r for r in metrics.read() if "views_per_s" in r]
    total_seconds = sum(r["seconds"] for r in records)
    if total_seconds > 0:
        return sum(r["views_per_s"] * r["seconds"] for r in records) / total_seconds
    return views_per_step * steps / max(seconds, 1e-9)


__all__ = ["Interrupted", "TrainOutcome", "Trainer", "TrainingError", "epoch_permutation", "train"]
