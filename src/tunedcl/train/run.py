"""A whole run: run directory, training, evaluation, results.json, report.md, and the summary table."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tunedcl import __version__, rundir
from tunedcl.methods import Method
from tunedcl.train.config import (
    RESUMABLE,
    Config,
    ConfigError,
    dump_config,
    finalize,
    load_run_config,
    parse_override,
    set_value,
)
from tunedcl.train.loop import train
from tunedcl.train.progress import Progress
from tunedcl.train.runtime import Runtime, describe_cpu, peak_memory_bytes, setup


def default_run_dir(name: str) -> Path:
    """``runs/<name>-<time>``; under torchrun ``runs/<name>-<run id>``, the same on every rank (each rank
    stamping its own time would give each its own folder when they start in different seconds)."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
        if not run_id or run_id == "none":
            raise ConfigError("under a launcher without a run id, pass --out RUN_DIR (the same on every rank)")
        return Path("runs") / f"{name}-{run_id[:12]}"
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _hardware(runtime: Runtime) -> str:
    if runtime.device.type == "cuda":
        return torch.cuda.get_device_name(runtime.device)
    return f"{describe_cpu()}, {torch.get_num_threads()} threads"


def prepare_run_dir(
    run_dir: Path, config: Config | None, resume: bool, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Create (or, with resume, reopen) a run directory and return the config to run.

    ``overrides`` on resume change what --resume may change (RESUMABLE keys and eval.*); the run's
    config.yaml is updated so that it records what ran."""
    config_path = run_dir / "config.yaml"
    if resume:
        if not config_path.is_file():
            raise ConfigError(f"--resume: {run_dir} holds no run (no config.yaml)")
        if config is not None:
            raise ConfigError(f"--resume continues {run_dir} with its own config.yaml; do not pass --config")
        saved = load_run_config(run_dir)
        rundir.remove_stale_temporaries(run_dir)
        if overrides:
            saved = _with_resume_overrides(saved, overrides)
            rundir.atomic_write_text(config_path, dump_config(saved))
        return saved
    if config is None:
        raise ConfigError("a config is needed for a new run")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; choose a folder")
    if run_dir.exists() and any(run_dir.iterdir()) and not _never_started(run_dir):
        raise ConfigError(f"{run_dir} already holds files; pass --resume to continue that run, or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write_text(config_path, dump_config(config))
    return config


def _never_started(run_dir: Path) -> bool:
    """A run directory holding only its config.yaml: a start that failed before training (missing data, say)."""
    return [path.name for path in run_dir.iterdir()] == ["config.yaml"]


def _with_resume_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    for text in overrides:
        key, value, raw = parse_override(text)
        if key not in RESUMABLE and not key.startswith("eval."):
            raise ConfigError(
                f"--resume may change only {', '.join(RESUMABLE)} and eval.* (the rest would make it another "
                f"run); got {key!r}"
            )
        set_value(config, key, value, raw)
    finalize(config)
    return config


def summary_table(results: dict[str, Any]) -> str:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{value:.2f}"

    head = "ce_top1" in results  # a classifier's own head, beside the probe every method gets
    header = "| run | method | linear top-1 (%) | kNN top-1 (%) |" + (" head top-1 (%) |" if head else "")
    header += " train time | views/s |\n|---|---|---:|---:|" + ("---:|" if head else "") + "---:|---:|"
    row = (
        f"| {results['name']} | {results['method']} | {pct(results['linear_top1'])} | "
        f"{pct(results['knn_top1'])} |" + (f" {pct(results['ce_top1'])} |" if head else "")
        + f" {results['train_seconds'] / 60:.1f} min | {results['views_per_second']:,.0f} |"
    )
    return header + "\n" + row


def run_training(
    config: Config | None, run_dir: Path, *, resume: bool = False, quiet: bool = False,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any] | None:
    """Train and evaluate; returns the results (None on ranks other than 0). With ``resume``, ``config`` is
    None (the run's own) and ``overrides`` may change what --resume may change."""
    wall = time.perf_counter()
    if _is_main_process():
        config = prepare_run_dir(run_dir, config, resume, overrides)
    elif config is None:  # a resumed run: its config is in the run directory
        config = prepare_run_dir(run_dir, None, True)
    runtime = setup(config.train)  # joins the process group: rank 0 has written config.yaml by then
    if runtime.distributed and not runtime.is_main:
        config = prepare_run_dir(run_dir, None, True)
    progress = Progress(quiet=quiet, silent=not runtime.is_main)
    progress.line(
        f"run {run_dir}: {config.name}, method {config.loss.method}, {config.data.dataset}, "
        f"{config.model.encoder}, {runtime.device}, "
        f"{'bf16' if runtime.autocast_dtype else 'fp32'}, {runtime.world_size} process(es)"
    )
    on_epoch_end = None
    if config.eval.every_epochs:
        on_epoch_end = _periodic_knn(config, runtime)
    outcome = train(config, run_dir, runtime, resume=resume, progress=progress, on_epoch_end=on_epoch_end)
    training_peak = peak_memory_bytes(runtime.device)  # before evaluation adds its own
    if runtime.distributed:
        # Rank 0 evaluates alone; the others leave now instead of waiting in a collective that could
        # time out during a long evaluation.
        dist.destroy_process_group()
        if not runtime.is_main:
            return None
    results = None
    if runtime.is_main:
        from tunedcl.train.evaluation import evaluate

        tic = time.perf_counter()
        metrics = evaluate(outcome.method, outcome.dataset, config, runtime)
        eval_seconds = time.perf_counter() - tic
        log = rundir.MetricsLog(run_dir)
        train_seconds = sum(r.get("seconds", 0.0) for r in log.read() if "epoch" in r)
        results = {
            "name": config.name,
            "method": config.loss.method,
            "dataset": config.data.dataset,
            "encoder": config.model.encoder,
            **metrics,
            "steps": outcome.steps,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "wall_seconds_this_session": time.perf_counter() - wall,
            "views_per_second": outcome.views_per_second,
            "peak_memory_bytes": training_peak,
            "device": str(runtime.device),
            "hardware": _hardware(runtime),
            "precision": "bf16" if runtime.autocast_dtype else "fp32",
            "world_size": runtime.world_size,
            "torch": torch.__version__,
            "tunedcl": __version__,
        }
        log.append({"step": outcome.steps, "eval": metrics})
        rundir.write_json(run_dir / "results.json", results)
        from tunedcl.report import write_run_report

        report = write_run_report(run_dir)
        progress.line("\n" + summary_table(results) + f"\n\nreport: {report}")
    return results


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _periodic_knn(config: Config, runtime: Runtime):
    from tunedcl.train.evaluation import knn_only

    dataset_cache: dict[str, Any] = {}

    def hook(method: Method, epoch: int, step: int) -> dict[str, float]:
        if epoch % config.eval.every_epochs or not runtime.is_main:
            return {}
        if "dataset" not in dataset_cache:
            from tunedcl.train.assemble import load_training_data

            dataset_cache["dataset"] = load_training_data(config)
        return knn_only(method, dataset_cache["dataset"], config, runtime)

    return hook


def evaluate_run(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """``tunedcl eval RUN_DIR``: evaluate a run's last checkpoint again (eval.* overrides allowed)."""
    from tunedcl.train.assemble import build_method, load_training_data, trained_classes
    from tunedcl.train.evaluation import evaluate

    config = load_run_config(run_dir)
    for text in overrides:
        key, value, raw = parse_override(text)
        if not key.startswith(("eval.", "train.device", "train.threads", "train.precision")):
            raise ConfigError(
                f"tunedcl eval only takes eval.*, train.device, train.threads and "
                f"train.precision overrides; got {key!r}"
            )
        set_value(config, key, value, raw)
    state = rundir.load_checkpoint(run_dir)
    if state is None:
        raise ConfigError(f"{run_dir} has no checkpoint ({rundir.CHECKPOINT})")
    runtime = setup(config.train)
    dataset = load_training_data(config)
    method = build_method(config, dataset.in_channels, trained_classes(config, dataset), gather_distributed=False)
    try:  # the method's own state too: a method may evaluate a network it keeps itself (a momentum target)
        method.model.load_state_dict(state["model"])
        method.to(runtime.device)
        method.load_state_dict(state["method_states"][0])
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise rundir.CheckpointError(f"the checkpoint in {run_dir} does not fit its config.yaml "
                                     f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None
    method.model.to(
        runtime.device, memory_format=torch.channels_last if config.train.channels_last else torch.contiguous_format
    )
    metrics = evaluate(method, dataset, config, runtime)
    results_path = run_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"name": config.name}
    results.update(metrics)
    rundir.write_json(results_path, results)
    rundir.MetricsLog(run_dir).append({"step": state["step"], "eval": metrics, "source": "tunedcl eval"})
    return results
