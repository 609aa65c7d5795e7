"""Contrastive pretraining and the cross-entropy baseline: one loop, exactly resumable.

Data flow per step: a slice of the epoch's permutation (a pure function of seed and epoch, so a resumed
run sees the same order) -> uint8 images on the device -> V augmented views in one batched call (a
per-rank generator whose state is checkpointed) -> encoder + head under autocast -> loss -> SGD/AdamW
step -> cosine schedule. A checkpoint holds everything that determines the rest of the run: weights,
optimiser, scheduler, generator states, step and the partial epoch's sums. On CPU a resumed run
therefore ends with bit-identical weights to an uninterrupted one.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tunedcl.data import load_dataset
from tunedcl.data.augment import make_views
from tunedcl.train import rundir
from tunedcl.train.builders import build_loss, build_model, build_optimizer, build_scheduler
from tunedcl.train.config import Config, ConfigError
from tunedcl.train.progress import Progress
from tunedcl.train.runtime import Runtime, peak_memory_bytes, seed_everything

GRADIENT_BATCHES = 8  # train.log_gradients analyses every (steps_per_epoch // 8)-th batch: 8 to 15 per epoch


class TrainingError(RuntimeError):
    """The run stopped and cannot go on as configured (the message says why and what was kept)."""


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written, the run can be resumed."""


@dataclass
class TrainOutcome:
    model: nn.Module  # unwrapped (no DDP)
    dataset: Any  # tunedcl.data.Dataset
    steps: int
    train_seconds: float
    views_per_second: float
    final_loss: float


def _non_finite(what: str, step: int, epoch: int, run_dir: Path) -> TrainingError:
    return TrainingError(
        f"{what} became non-finite at step {step + 1} (epoch {epoch + 1}); the last good checkpoint "
        f"({run_dir / rundir.CHECKPOINT}) is kept. Lower optim.lr, add warm-up, or check the data."
    )


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the training images in ``epoch``: the same on every rank and after a resume."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def load_training_data(config: Config):
    data = config.data
    options: dict[str, Any] = {}
    if data.image_size is not None:
        options["image_size"] = data.image_size
    try:
        return load_dataset(
            data.dataset,
            root=data.root,
            download=data.download,
            fraction=data.fraction,
            per_class=data.per_class,
            seed=data.subset_seed,
            **options,
        )
    except ValueError as error:
        raise ConfigError(f"data: {error}") from error


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a step is never cut in half)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _tensorboard(run_dir: Path) -> Any:
    """A SummaryWriter in run_dir/tensorboard when tensorboard is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _gradient_statistics(config: Config, projections: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
    """tcl.md §2's gradient response on one batch: the TCL terms as configured (SupCon and SimCLR: k1 = 0,
    k2 = 1; for SimCLR with 2 views this is its own loss). Self-supervised: instance ids as labels."""
    from tunedcl.analysis import denominator_shares, gradient_coefficients, mean_gradient_magnitudes

    batch, views, dim = projections.shape
    ids = labels if labels is not None else torch.arange(batch, device=projections.device)
    rows, row_labels = projections.reshape(-1, dim).cpu(), ids.repeat_interleave(views).cpu()
    tcl = config.loss.method in ("tcl", "tcl-ssl")
    terms = dict(
        temperature=config.loss.temperature,
        k1=config.loss.k1 if tcl else 0.0,
        k2=config.loss.k2 if tcl else 1.0,
        k1_uses_temperature=config.loss.k1_uses_temperature,
    )
    stats = mean_gradient_magnitudes(gradient_coefficients(rows, row_labels, **terms))
    stats.update(denominator_shares(rows, row_labels, **terms))
    return stats


def _mean_gradient_statistics(
    config: Config, batches: list[tuple[torch.Tensor, torch.Tensor | None]]
) -> dict[str, float]:
    """:func:`_gradient_statistics` averaged over the logged batches of an epoch."""
    per_batch = [_gradient_statistics(config, *batch) for batch in batches]
    return {key: sum(stats[key] for stats in per_batch) / len(per_batch) for key in per_batch[0]}


def _interrupted(step: int, run_dir: Path) -> Interrupted:
    return Interrupted(f"interrupted at step {step}; checkpoint written to {run_dir / rundir.CHECKPOINT}")


def _per_rank(value: Any, runtime: Runtime) -> list[Any]:
    """``value`` of every rank, in rank order (only rank 0 needs the list)."""
    if not runtime.distributed:
        return [value]
    values: list[Any] = [None] * runtime.world_size
    dist.all_gather_object(values, value)
    return values


def _mean_over_ranks(value: float, runtime: Runtime) -> float:
    total = torch.tensor([value], dtype=torch.float64, device=_collective_device(runtime))
    dist.all_reduce(total)
    return float(total) / runtime.world_size


def _collective_device(runtime: Runtime) -> torch.device:
    return runtime.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _any_rank(flag: bool, runtime: Runtime) -> bool:
    if not runtime.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device(runtime))
    dist.all_reduce(value)
    return bool(value.item() > 0)


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
    progress = progress or Progress(quiet=True)
    seed_everything(config.train.seed)
    dataset = load_training_data(config)
    train_split = dataset.train
    device = runtime.device
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format

    model = build_model(config, dataset.in_channels, dataset.num_classes).to(device, memory_format=memory_format)
    loss_fn = build_loss(config, gather_distributed=runtime.distributed and config.train.gather_distributed)
    if loss_fn is not None:
        loss_fn = loss_fn.to(device)
    wrapped: nn.Module = model
    if runtime.distributed:
        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    batch = config.train.batch_size
    if batch % runtime.world_size:
        raise ConfigError(f"train.batch_size={batch} must be divisible by the {runtime.world_size} processes")
    local_batch = batch // runtime.world_size
    steps_per_epoch = len(train_split) // batch
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={batch} is larger than the {len(train_split)} training images; lower it")
    total_steps = config.train.max_steps or config.train.epochs * steps_per_epoch
    epochs = -(-total_steps // steps_per_epoch)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, total_steps, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.train.seed * 7919 + 17 + runtime.rank)
    n_views = 1 if config.loss.method == "ce" else config.data.n_views
    supervised = config.supervised

    step, epoch_sums = 0, {"loss": 0.0, "steps": 0, "seconds": 0.0}
    metrics = rundir.MetricsLog(run_dir)
    if resume:
        # On the CPU: RNG states must stay CPU ByteTensors; load_state_dict moves the rest.
        state = rundir.load_checkpoint(run_dir, map_location="cpu")
        if state is not None:
            if len(state["generators"]) != runtime.world_size:
                raise ConfigError(
                    f"the checkpoint in {run_dir} was written by {len(state['generators'])} process(es); "
                    f"resume it with the same number (got {runtime.world_size})"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            loss_states = state.get("loss_states") or [None]
            if loss_fn is not None and loss_states[runtime.rank] is not None:
                loss_fn.load_state_dict(loss_states[runtime.rank])
            generator.set_state(state["generators"][runtime.rank])
            torch.set_rng_state(state["torch_rng"])
            step, epoch_sums = state["step"], state["epoch_sums"]
            if runtime.is_main:
                progress.line(f"resumed from step {step} (epoch {step // steps_per_epoch + 1})")
        if runtime.is_main:
            metrics.truncate_after(step)  # drop records of work lost since the checkpoint

    def checkpoint(finished: bool = False) -> None:
        states = _per_rank(generator.get_state(), runtime)
        loss_states = _per_rank(loss_fn.state_dict() if loss_fn is not None else None, runtime)
        if not runtime.is_main:
            return
        rundir.save_checkpoint(
            run_dir,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "loss_states": loss_states,  # per rank: memory queues differ without gathering
                "generators": states,
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "epoch_sums": dict(epoch_sums),
                "finished": finished,
                "steps_per_epoch": steps_per_epoch,
            },
        )

    board = _tensorboard(run_dir) if config.train.tensorboard and runtime.is_main else None
    images_all, labels_all = train_split.images, train_split.labels
    views_per_step = batch * n_views
    trained_seconds = 0.0
    last_loss = float("nan")
    # train.log_gradients: every log_every-th batch of an epoch (8 to 15 of them), analysed at its end (one
    # batch alone is noisy; the analysis runs outside the timed steps). An epoch resumed mid-way averages
    # only the batches logged after the resume.
    logged_batches: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    log_every = max(1, steps_per_epoch // GRADIENT_BATCHES)
    with _StopFlag() as stop:
        while step < total_steps:
            epoch, first = divmod(step, steps_per_epoch)
            order = epoch_permutation(config.train.seed, epoch, len(train_split))
            wrapped.train()
            for index in range(first, steps_per_epoch):
                tic = time.perf_counter()
                rows = order[
                    index * batch + runtime.rank * local_batch : index * batch + (runtime.rank + 1) * local_batch
                ]
                images = images_all[rows].to(device, non_blocking=True)
                labels = labels_all[rows].to(device, non_blocking=True)
                views = make_views(
                    images,
                    n_views,
                    config.data.augment,
                    dataset.mean,
                    dataset.std,
                    generator=generator,
                    last_view_preset=config.data.last_view_augment,
                )
                views = views.contiguous(memory_format=torch.contiguous_format)
                with runtime.autocast():
                    if loss_fn is None:
                        flat = views[:, 0].contiguous(memory_format=memory_format)
                        loss = F.cross_entropy(wrapped(flat).float(), labels)
                    else:
                        projections = wrapped(views).projections.float()
                        # Every rank must stop together, or the others would wait in a collective forever.
                        if _any_rank(not bool(torch.isfinite(projections).all()), runtime):
                            raise _non_finite("the embeddings", step, epoch, run_dir)
                        loss = loss_fn(projections, labels if supervised else None)
                        if config.train.log_gradients and index % log_every == 0:
                            logged_batches.append((projections.detach(), labels if supervised else None))
                value = float(loss.detach())
                if runtime.distributed and not (loss_fn is not None and loss_fn.gather_distributed):
                    value = _mean_over_ranks(value, runtime)  # a local loss: report the global mean
                if _any_rank(value != value or value in (float("inf"), float("-inf")), runtime):
                    raise _non_finite(f"the loss ({value})", step, epoch, run_dir)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                last_loss = value
                seconds = time.perf_counter() - tic
                trained_seconds += seconds
                epoch_sums["loss"] += value
                epoch_sums["steps"] += 1
                epoch_sums["seconds"] += seconds
                progress.update(
                    epoch,
                    epochs,
                    index + 1,
                    steps_per_epoch,
                    epoch_sums["loss"] / epoch_sums["steps"],
                    views_per_step / max(seconds, 1e-9),
                )
                if index + 1 == steps_per_epoch or step >= total_steps:
                    break  # the epoch's record and checkpoint come first; a stop request after them
                if _any_rank(stop.requested, runtime):
                    checkpoint()
                    raise _interrupted(step, run_dir)
                every = config.train.checkpoint_every_steps
                if every and step % every == 0:
                    checkpoint()
            record = {
                "epoch": epoch + 1,
                "step": step,
                "loss": epoch_sums["loss"] / max(epoch_sums["steps"], 1),
                "lr": scheduler.get_last_lr()[0],
                "views_per_s": epoch_sums["steps"] * views_per_step / max(epoch_sums["seconds"], 1e-9),
                "seconds": epoch_sums["seconds"],
            }
            if on_epoch_end is not None:
                record.update(on_epoch_end(model, epoch + 1, step) or {})
            if config.train.log_gradients and logged_batches:
                record.update(_mean_gradient_statistics(config, logged_batches))
                logged_batches.clear()
            epoch_sums = {"loss": 0.0, "steps": 0, "seconds": 0.0}
            if runtime.is_main:
                metrics.append(record)
                if board is not None:
                    for key, value in record.items():
                        if key not in ("epoch", "step") and isinstance(value, float | int):
                            board.add_scalar(key, value, step)
                    board.flush()
                progress.line(
                    f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  lr {record['lr']:.4g}  "
                    f"{record['views_per_s']:,.0f} views/s  {record['seconds']:.1f} s"
                    + "".join(f"  {k} {v:.2f}" for k, v in record.items() if k.startswith("knn"))
                )
            checkpoint(finished=step >= total_steps)
            if step < total_steps and _any_rank(stop.requested, runtime):
                raise _interrupted(step, run_dir)
    return TrainOutcome(
        model=model,
        dataset=dataset,
        steps=step,
        train_seconds=trained_seconds,
        views_per_second=_mean_rate(metrics, views_per_step, trained_seconds, step) if runtime.is_main else 0.0,
        final_loss=last_loss,
    )


def _mean_rate(metrics: rundir.MetricsLog, views_per_step: int, seconds: float, steps: int) -> float:
    """Views/s over the whole run (all epochs in metrics.jsonl, including those before a resume)."""
    records = [r for r in metrics.read() if "views_per_s" in r]
    total_seconds = sum(r["seconds"] for r in records)
    if total_seconds > 0:
        return sum(r["views_per_s"] * r["seconds"] for r in records) / total_seconds
    return views_per_step * steps / max(seconds, 1e-9)


__all__ = ["Interrupted", "TrainOutcome", "TrainingError", "epoch_permutation", "peak_memory_bytes", "train"]
