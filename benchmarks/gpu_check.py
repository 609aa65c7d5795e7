"""The one-command GPU check: everything a first run on a GPU should show, as one markdown report.

    bash benchmarks/gpu_check.sh OUTDIR            # on a GPU machine, under 8 minutes on one GPU
    bash benchmarks/gpu_check.sh --dry-run OUTDIR  # the same code on the CPU with tiny sizes (CI runs this)

Sections (each runs even when an earlier one failed; a failed section is reported with its error and the
script exits 1):
1. the device: name, compute capability, memory, whether bf16 is native (capability >= 8.0);
2. every contrastive loss family and path (dense, chunked, small chunks) on the device against the CPU in
   float64: values and gradients, with the backward outside and inside a bf16 autocast region;
3. host syncs per training step (``torch.cuda.set_sync_debug_mode``), for a few steps of the quick preset;
4. the TCL loss's time and peak memory up to N = 262,144 embeddings;
5. every augmentation preset on the device against the CPU (the same draws: a CPU generator drives both);
6. training speed (views/s) of ``cifar10-resnet18`` in bf16, on generated CIFAR-format data;
7. every CIFAR preset (the paper's and every method's) for 50 + 50 steps on generated CIFAR-10/100 files,
   checkpointed, resumed and finished.
Every section runs on generated data: the machine needs no dataset.
With two or more GPUs, a torchrun run of the quick preset without ``--out`` and with a memory queue is the
last section.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tunedcl import rundir
from tunedcl.data.augment import AUGMENTATIONS, apply_preset
from tunedcl.losses import LOSSES, ContrastiveLoss
from tunedcl.train.assemble import epoch_permutation
from tunedcl.train.config import list_presets, load_config
from tunedcl.train.loop import Trainer
from tunedcl.train.progress import Progress
from tunedcl.train.run import run_training
from tunedcl.train.runtime import describe_cpu, setup

LOSS_CASES = [("tcl", {}), ("tcl", {"k1_uses_temperature": True, "k1": 0.5}), ("supcon", {}),
              ("supcon", {"variant": "in"}), ("ntxent", {})]


def device_section(device: torch.device, dry_run: bool) -> list[str]:
    lines = ["| property | value |", "|---|---|", f"| torch | {torch.__version__} |", f"| CPU | {describe_cpu()} |"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        capability = torch.cuda.get_device_capability(device)
        lines += [f"| GPU | {props.name} ({torch.cuda.device_count()} visible) |",
                  f"| compute capability | {capability[0]}.{capability[1]} (bf16 native: {capability >= (8, 0)}) |",
                  f"| memory | {props.total_memory / 2**30:.1f} GiB |", f"| CUDA | {torch.version.cuda} |"]
    else:
        lines.append(f"| device | {device} ({'dry run' if dry_run else 'no GPU'}: {platform.machine()}) |")
    return lines


def _loss_and_grad(family: str, options: dict, features: torch.Tensor, labels: torch.Tensor, chunk_size,
                   autocast_backward: bool) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = features.clone().requires_grad_(True)
    value = LOSSES.get(family)(**options, chunk_size=chunk_size)(leaf, labels)
    with torch.autocast(leaf.device.type, dtype=torch.bfloat16, enabled=autocast_backward):
        value.backward()
    return value.detach(), leaf.grad


def loss_section(device: torch.device, dry_run: bool) -> list[str]:
    g = torch.Generator().manual_seed(0)
    n = 64 if dry_run else 2048
    features, labels = torch.randn(n, 2, 128, generator=g), torch.randint(0, 10, (n,), generator=g)
    lines = ["| loss | path | backward | value rel. error | gradient rel. error |", "|---|---|---|---:|---:|"]
    worst = 0.0  # over the rows that must hold: every plain backward, and the chunked path's under autocast
    for family, options in LOSS_CASES:
        assert issubclass(LOSSES.get(family), ContrastiveLoss)
        for chunk_size in (0, None, 16):
            expected = _loss_and_grad(family, options, features.double(), labels, chunk_size, False)
            for autocast_backward in (False, True):
                got = _loss_and_grad(family, options, features.to(device), labels.to(device), chunk_size,
                                     autocast_backward)
                value_error = float((got[0].cpu().double() - expected[0]).abs() / expected[0].abs())
                grad_error = float((got[1].cpu().double() - expected[1]).norm() / expected[1].norm())
                if not (autocast_backward and chunk_size == 0):
                    worst = max(worst, value_error, grad_error)
                name = family + "".join(f", {k}={v}" for k, v in options.items())
                path = "dense" if chunk_size == 0 else f"chunked {chunk_size or 'auto'}"
                backward = "in bf16 autocast" if autocast_backward else "plain"
                lines.append(f"| {name} | {path} | {backward} | {value_error:.1e} | {grad_error:.1e} |")
    if worst > 1e-4:
        raise AssertionError(f"a loss on {device} differs from float64 by {worst:.1e} (more than 1e-4):\n"
                             + "\n".join(lines))
    return lines + ["", "The dense path's backward inside an autocast region is autograd's own: its products run in "
                    "bf16 there (PyTorch advises calling backward outside autocast, as `tunedcl train` does); "
                    "the chunked path's hand-written backward switches autocast off."]


def _tiny(dry_run: bool) -> list[str]:
    if not dry_run:
        return []
    return ["data.per_class=64", "train.batch_size=32", "model.options.width=0.25", "train.threads=1"]


def sync_section(device: torch.device, dry_run: bool, data: Path) -> list[str]:
    if device.type != "cuda":
        return ["host syncs are counted on CUDA only (torch.cuda.set_sync_debug_mode); not measured here"]
    config = load_config("cifar10-resnet18", [f"data.root={data}", "data.options.verify=false",
                                              "train.tensorboard=false", "train.epochs=1"])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder), setup(config.train), Progress(silent=True))
        order = epoch_permutation(0, 0, len(trainer.dataset.train))
        trainer.train_step(order, 0)  # warm-up: allocations, cuDNN choices
        steps = 5
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for index in range(1, 1 + steps):
                    trainer.train_step(order, index)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return [f"{len(caught) / steps:.1f} host syncs per step of cifar10-resnet18 (TCL, batch 256, generated data)"]


def loss_speed_section(device: torch.device, dry_run: bool) -> list[str]:
    sizes = (256, 1024) if dry_run else (4096, 16384, 65536, 262144)
    lines = ["| N | forward + backward (ms) | peak memory (GiB) |", "|---:|---:|---:|"]
    loss = LOSSES.get("tcl")()
    for n in sizes:
        features = torch.randn(n, 128, device=device, requires_grad=True)
        labels = torch.randint(0, 100, (n,), device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        timings = []
        for _ in range(3):
            tic = time.perf_counter()
            loss(features, labels).backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings.append(time.perf_counter() - tic)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        lines.append(f"| {n:,} | {1000 * min(timings[1:]):.1f} | {peak:.2f} |")
    return lines


def augmentation_section(device: torch.device, dry_run: bool) -> list[str]:
    images = torch.randint(0, 256, (8 if dry_run else 256, 3, 32, 32), dtype=torch.uint8)
    lines = ["| preset | max abs difference, device vs CPU |", "|---|---:|"]
    for preset in AUGMENTATIONS.names():
        cpu = apply_preset(images, preset, generator=torch.Generator().manual_seed(1))
        on_device = apply_preset(images.to(device), preset, generator=torch.Generator().manual_seed(1))
        difference = float((on_device.cpu() - cpu).abs().max())
        lines.append(f"| {preset} | {difference:.2e} |")
        if difference > 1e-3:
            raise AssertionError(f"augmentation {preset!r} on {device} differs from the CPU by {difference}")
    return lines


def write_cifar(root: Path, kind: str, per_batch: int) -> Path:
    """CIFAR-format pickles of random images (the layout of the published archives, read with verify off)."""
    rng = np.random.default_rng(0)
    folder = root / ("cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        fine = rng.integers(0, 10 if kind == "cifar10" else 100, size=n)
        labels = {b"labels": fine.tolist()} if kind == "cifar10" else {
            b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
        return {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), **labels}

    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if kind == "cifar10" else ["train", "test"]
    for name in names:
        n = per_batch * (5 if name == "train" else 1)
        (folder / name).write_bytes(pickle.dumps(batch(n), protocol=4))
    meta = ({b"label_names": [f"c{i}".encode() for i in range(10)]} if kind == "cifar10" else
            {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
             b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    (folder / ("batches.meta" if kind == "cifar10" else "meta")).write_bytes(pickle.dumps(meta, protocol=4))
    return root


def train_speed_section(device: torch.device, dry_run: bool, data: Path) -> list[str]:
    steps = 3 if dry_run else 30
    config = load_config("cifar10-resnet18", [f"data.root={data}", "data.options.verify=false",
                                              "train.tensorboard=false", f"train.max_steps={steps}",
                                              *_tiny(dry_run), *([] if dry_run else ["train.precision=bf16"])])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder), setup(config.train), Progress(silent=True))
        outcome = trainer.run()
    return [f"cifar10-resnet18, {config.train.batch_size} images x 2 views per step, {steps} steps: "
            f"{outcome.views_per_second:,.0f} views/s ({'fp32 tiny dry run' if dry_run else 'bf16'})"]


def presets_section(device: torch.device, dry_run: bool, data: Path) -> list[str]:
    steps = 2 if dry_run else 50
    lines = ["| preset | steps | resumed at | final loss | seconds |", "|---|---:|---:|---:|---:|"]
    for preset in [p for p in list_presets() if "cifar" in p]:
        overrides = [f"data.root={data}", "data.options.verify=false", "train.tensorboard=false",
                     "eval.linear_probe=none", "eval.knn_k=5", *_tiny(dry_run)]
        with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            tic = time.perf_counter()
            first = load_config(preset, [*overrides, f"train.max_steps={steps}"])
            run_training(first, Path(folder) / "run", quiet=True)
            results = run_training(None, Path(folder) / "run", resume=True, quiet=True,
                                   overrides=[f"train.max_steps={2 * steps}"])
            log = rundir.MetricsLog(Path(folder) / "run").read()
        final = [record["loss"] for record in log if "loss" in record][-1]
        lines.append(f"| {preset} | {2 * steps} | {steps} | {final:.4f} | {time.perf_counter() - tic:.0f} |")
        assert results is not None and results["knn_top1"] is not None
    return lines


def ddp_section(device: torch.device, dry_run: bool, data: Path) -> list[str]:
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return ["fewer than 2 GPUs: the torchrun check (no --out, a memory queue) is not run"]
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tunedcl",
                   "train", "--config", "cifar10-resnet18", "--quiet", f"data.root={data}", "data.options.verify=false",
                   "train.max_steps=20", "loss.queue_size=1024", "eval.linear_probe=none"]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)
        if done.returncode:
            raise AssertionError(f"torchrun failed:\n{done.stderr[-3000:]}")
        runs = list((Path(folder) / "runs").iterdir())
        assert len(runs) == 1, f"the ranks wrote {len(runs)} run folders"
    return ["2 GPUs, torchrun without --out, a memory queue of 1024, 20 steps: one run folder, finished"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for report.md")
    parser.add_argument("--dry-run", action="store_true", help="the same code on the CPU with tiny sizes")
    args = parser.parse_args(argv)
    device = torch.device("cpu") if args.dry_run or not torch.cuda.is_available() else torch.device("cuda", 0)
    args.out.mkdir(parents=True, exist_ok=True)
    report, failed = [f"# GPU check ({'dry run on the CPU' if args.dry_run else device})", ""], []
    with tempfile.TemporaryDirectory() as folder:
        data = write_cifar(write_cifar(Path(folder), "cifar10", 64 if args.dry_run else 1000), "cifar100",
                           64 if args.dry_run else 1000)
        sections: list[tuple[str, Callable[[], list[str]]]] = [
            ("Device", lambda: device_section(device, args.dry_run)),
            ("Losses on the device against float64 on the CPU", lambda: loss_section(device, args.dry_run)),
            ("Host syncs per training step", lambda: sync_section(device, args.dry_run, data)),
            ("TCL loss: time and peak memory", lambda: loss_speed_section(device, args.dry_run)),
            ("Augmentations on the device against the CPU", lambda: augmentation_section(device, args.dry_run)),
            ("Training speed", lambda: train_speed_section(device, args.dry_run, data)),
            ("CIFAR presets: train, checkpoint, resume, finish", lambda: presets_section(device, args.dry_run, data)),
            ("DDP", lambda: ddp_section(device, args.dry_run, data)),
        ]
        for title, section in sections:
            tic = time.perf_counter()
            try:
                body = section()
            except Exception:  # noqa: BLE001 - a check reports every failure and goes on
                failed.append(title)
                body = ["FAILED:", "```", traceback.format_exc(limit=8), "```"]
            report += [f"## {title} ({time.perf_counter() - tic:.0f} s)", "", *body, ""]
            print(f"{title}: {'FAILED' if title in failed else 'ok'} ({time.perf_counter() - tic:.0f} s)", flush=True)
    report.append(f"Failed: {', '.join(failed)}" if failed else "Every section passed.")
    (args.out / "report.md").write_text("\n".join(report) + "\n")
    print(f"report: {args.out / 'report.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
