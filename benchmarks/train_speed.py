"""Pipeline benchmark: views/s of real pretraining steps against the model alone.

- ``pipeline``: the training loop itself (``tunedcl.train.loop.train``) for ``--steps`` steps: indexing the
  in-memory dataset, batched augmentation of the views, forward, loss, backward, optimiser step.
- ``model only``: the same model, loss and optimiser on one fixed batch of views made beforehand (no
  data work at all): forward + loss + backward + optimiser step.

Goal (issue 5): pipeline >= 0.9 x model-only.

    python benchmarks/train_speed.py                                  # default preset, Fashion-MNIST
    python benchmarks/train_speed.py --config quick --steps 40 train.batch_size=128
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
from _device import add_device_argument, timed

from tunedcl.data.augment import make_views
from tunedcl.methods import Batch
from tunedcl.train.assemble import build_method, load_training_data
from tunedcl.train.builders import build_optimizer
from tunedcl.train.config import load_config
from tunedcl.train.loop import train
from tunedcl.train.progress import Progress
from tunedcl.train.runtime import setup


def model_only_rate(config, runtime, steps: int) -> float:
    dataset = load_training_data(config)
    memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
    method = build_method(config, dataset.in_channels, dataset.num_classes, gather_distributed=False)
    model = method.model.to(runtime.device, memory_format=memory_format)
    method.to(runtime.device)
    optimizer = build_optimizer(config, model)
    batch = config.train.batch_size
    generator = torch.Generator().manual_seed(0)
    views = make_views(
        dataset.train.images[:batch],
        config.data.n_views,
        config.data.augment,
        dataset.mean,
        dataset.std,
        generator=generator,
    ).to(runtime.device)
    labels = dataset.train.labels[:batch].to(runtime.device)
    model.train()

    def check_finite(what: str, tensor: torch.Tensor) -> None:  # the loop's guard; nothing to guard here
        pass

    batch_input = Batch(views, labels, model, memory_format, check_finite)

    def step() -> None:
        with runtime.autocast():
            loss = method.training_step(batch_input).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.after_step(1, 1)

    for _ in range(5):  # warm-up
        step()
    start = timed(runtime.device)
    for _ in range(steps):
        step()
    return steps * batch * config.data.n_views / (timed(runtime.device) - start)


def pipeline_rate(config, runtime, steps: int) -> float:
    config.train.max_steps = steps
    with tempfile.TemporaryDirectory() as folder:
        outcome = train(config, Path(folder), runtime, progress=Progress(silent=True))
    return outcome.views_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    add_device_argument(parser, default="auto")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # --device is train.device (auto: CUDA when there is one); an explicit train.device= override wins.
    config = load_config(args.config, [f"train.device={args.device}", *args.overrides])
    runtime = setup(config.train)
    precision = "bf16 autocast" if runtime.autocast_dtype else "fp32"
    print(
        f"# train_speed: {config.name}, {config.model.encoder}, {config.data.dataset}, batch "
        f"{config.train.batch_size} x {config.data.n_views} views, augment {config.data.augment}, {precision}, "
        f"channels_last={config.train.channels_last}, {args.threads} threads, torch {torch.__version__}, "
        f"{platform.machine()}\n"
    )
    model = model_only_rate(config, runtime, args.steps)
    pipeline = pipeline_rate(config, runtime, args.steps)
    print("| measure | views/s |\n|---|---:|")
    print(f"| model only (fixed batch, no data work) | {model:,.0f} |")
    print(f"| training loop (data + augmentation + model) | {pipeline:,.0f} |")
    print(f"| ratio | {pipeline / model:.2f} |")


if __name__ == "__main__":
    main()
