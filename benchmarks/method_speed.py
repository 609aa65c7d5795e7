"""What each training method costs per step, at one budget: views/s of the training loop (data, augmentation,
forward, loss, backward, optimiser, the method's own after-step work such as an EMA update) per method preset.

Momentum encoders add a forward pass per view, predictors and wide projectors add matmuls, queues add contrast
rows; this table says how much, measured alone on the machine (nothing else running), which the wall times of a
study's runs cannot promise.

    python benchmarks/method_speed.py                       # the self-supervised study's budget (docs/results.md (b))
    python benchmarks/method_speed.py --steps 60 train.batch_size=128
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _device import add_device_argument

from tunedcl.train.config import load_config
from tunedcl.train.loop import train
from tunedcl.train.progress import Progress
from tunedcl.train.runtime import describe_cpu, setup

# (label, preset, overrides): the methods of studies/ssl_comparison.sh, each at its own preset's recipe.
METHODS = [
    ("simclr", "ssl-fashion-mnist", ["loss.method=simclr"]),
    ("tcl-ssl", "ssl-fashion-mnist", ["loss.method=tcl-ssl"]),
    ("tcl-ssl, 3 views", "ssl-fashion-mnist", ["loss.method=tcl-ssl", "data.n_views=3",
                                               "data.last_view_augment=crop-flip"]),
    *[(m, f"{m}-fashion-mnist", []) for m in ("mocov2", "tcl-moco", "byol", "simsiam", "barlow", "vicreg", "swav")],
]
BUDGET = ["train.epochs=3", "data.augment=simaug", "train.batch_size=256"]


def images_per_second(preset: str, overrides: list[str], steps: int, device: str) -> tuple[float, int]:
    """Images/s of ``steps`` training steps after ``steps // 4`` warm-up steps, and the views per image."""
    config = load_config(preset, [f"train.device={device}", *BUDGET, *overrides])
    runtime = setup(config.train)
    rates = []
    for max_steps in (steps // 4, steps // 4 + steps):  # the difference of two runs drops start-up and warm-up
        config.train.max_steps = max_steps
        with tempfile.TemporaryDirectory() as folder:
            outcome = train(config, Path(folder), runtime, progress=Progress(silent=True))
        rates.append((max_steps, outcome.train_seconds))
    (short, short_s), (long, long_s) = rates
    return (long - short) * config.train.batch_size / (long_s - short_s), config.data.n_views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=None, metavar="LABEL",
                        help="only these rows (labels of the table, e.g. simclr tcl-ssl); the first is the baseline")
    add_device_argument(parser, default="auto")
    parser.add_argument("overrides", nargs="*", help="added to every method's config (section.key=value)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    BUDGET.extend(args.overrides)
    print(f"# method_speed: {describe_cpu()}, {args.threads} threads, torch {torch.__version__}; budget "
          f"{' '.join(BUDGET)}; {args.steps} timed steps per method\n")
    print("| method | preset | images/s | views/s | cost per image vs SimCLR |\n|---|---|---:|---:|---:|")
    baseline = None
    rows = METHODS if args.methods is None else [row for row in METHODS if row[0] in args.methods]
    for label, preset, overrides in rows:
        rate, views = images_per_second(preset, overrides, args.steps, args.device)
        baseline = baseline or rate
        print(f"| {label} | {preset} | {rate:,.0f} | {rate * views:,.0f} | {baseline / rate:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
