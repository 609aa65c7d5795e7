"""The gradient response of SupCon and TCL on the *same* embeddings (the paper's Figure 3 mechanism, with
the training trajectory held fixed).

The curves that `train.log_gradients=true` logs measure each loss on its own run's embeddings, which
each loss shapes differently. This script instead freezes one encoder, embeds the same batches of
training views, and evaluates c_p, c_n (tcl.md §2) and the tangential gradient magnitudes for every
(k1, k2), so only the loss differs.

    .venv/bin/python studies/gradients_at_fixed_embeddings.py RUN_DIR [RUN_DIR ...] [--init]

RUN_DIR: a finished run (its checkpoint is the encoder). --init adds the untrained encoder of the first
run's config (seed 0). Prints one markdown table per encoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tunedcl import rundir
from tunedcl.analysis import gradient_coefficients, mean_gradient_magnitudes
from tunedcl.data.augment import make_views
from tunedcl.train.assemble import build_method, load_training_data
from tunedcl.train.config import load_run_config

SETTINGS = [(0.0, 1.0), (10.0, 1.0), (100.0, 1.0), (1000.0, 1.0), (5000.0, 1.0), (50000.0, 1.0),
            (100000.0, 1.0), (50000.0, 3.0)]
BATCHES, BATCH = 4, 256


def embeddings(run_dir: Path, trained: bool) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """Projections [2B, D] and labels of BATCHES fixed batches of training views (seed 0)."""
    config = load_run_config(run_dir)
    torch.manual_seed(0)
    dataset = load_training_data(config)
    model = build_method(config, dataset.in_channels, dataset.num_classes, gather_distributed=False).model
    if trained:
        model.load_state_dict(rundir.load_checkpoint(run_dir)["model"])
    model.train()  # batch statistics, as during training (nothing is saved)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset.train.labels), generator=generator)
    batches = []
    with torch.no_grad():
        for b in range(BATCHES):
            rows = order[b * BATCH : (b + 1) * BATCH]
            views = make_views(dataset.train.images[rows], 2, config.data.augment, dataset.mean, dataset.std,
                               generator=generator)
            z = model(views).projections.float()  # [B, 2, D]
            batches.append((z.reshape(-1, z.shape[-1]), dataset.train.labels[rows].repeat_interleave(2)))
    k1 = config.loss.hyperparameters.get("k1")
    loss = config.loss.method + (f", k1 {k1:g}" if k1 is not None else "")
    name = f"encoder trained with {loss}: {run_dir}" if trained else "untrained encoder"
    return batches, name


def table(batches: list[tuple[torch.Tensor, torch.Tensor]], temperature: float) -> list[str]:
    """Markdown rows: per (k1, k2) of SETTINGS, coefficients and gradient magnitudes averaged over batches."""
    lines = ["| k1 | k2 | mean c_p (pull < 0) | mean c_p, hardest positive | mean c_n | mean c_n, hardest negative "
             "| gradient from positives | gradient from negatives |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k1, k2 in SETTINGS:
        sums: dict[str, float] = {}
        for z, labels in batches:
            c = gradient_coefficients(z, labels, temperature=temperature, k1=k1, k2=k2)
            values, s = c.values, c.similarity
            hardest_p = torch.where(c.positive, s, torch.inf).argmin(1)  # the lowest-similarity positive
            hardest_n = torch.where(c.negative, s, -torch.inf).argmax(1)  # the highest-similarity negative
            rows = torch.arange(len(labels))
            stats = {
                "cp": float(values[c.positive].mean()),
                "cp_hard": float(values[rows, hardest_p].mean()),
                "cn": float(values[c.negative].mean()),
                "cn_hard": float(values[rows, hardest_n].mean()),
                **mean_gradient_magnitudes(c),
            }
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value / len(batches)
        lines.append(f"| {k1:g} | {k2:g} | {sums['cp']:.4f} | {sums['cp_hard']:.3f} | {sums['cn']:.2e} | "
                     f"{sums['cn_hard']:.3f} | {sums['grad_from_positives']:.3f} | "
                     f"{sums['grad_from_negatives']:.3f} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--init", action="store_true", help="also the untrained encoder")
    args = parser.parse_args(argv)
    encoders = [(args.runs[0], False)] if args.init else []
    encoders += [(run, True) for run in args.runs]
    for run, trained in encoders:
        batches, name = embeddings(run, trained)
        temperature = load_run_config(run).loss.temperature
        print(f"\n{name}: {BATCHES} batches of {BATCH} images x 2 views, tau {temperature:g}\n")
        print("\n".join(table(batches, temperature)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
