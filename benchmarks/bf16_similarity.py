"""What ``similarity_dtype=torch.bfloat16`` does to the TCL loss value and gradient, against fp32.

Two kinds of embeddings: random (similarities near 0) and clustered (each class around its own centre,
similarities near 1 within a class: the regime of a trained encoder, where bf16's 8-bit mantissa hurts
most). Reports the relative error of the loss, and the cosine and relative error of the gradient, plus
forward+backward time of both.

    python benchmarks/bf16_similarity.py
"""

from __future__ import annotations

import argparse

import torch
from _device import add_device_argument, bf16_note, force_bf16_similarities, resolve_device, timed

from tunedcl import TCLLoss


def embeddings(kind: str, n: int, dim: int, classes: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    labels = torch.randint(0, classes, (n,), generator=generator)
    if kind == "random":
        return torch.randn(n, dim, generator=generator), labels
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=generator), dim=1)
    return centres[labels] + 0.15 * torch.randn(n, dim, generator=generator) / dim**0.5, labels


def measure(loss: TCLLoss, features: torch.Tensor, labels: torch.Tensor) -> tuple[float, torch.Tensor, float]:
    best = float("inf")
    for _ in range(3):
        leaf = features.clone().requires_grad_(True)
        start = timed(features.device)
        value = loss(leaf, labels)
        value.backward()
        best = min(best, timed(features.device) - start)
    return value.item(), leaf.grad, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    add_device_argument(parser)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"# bf16 similarities vs fp32: TCL (k1=5000, k2=1), N = {args.n}, D = {args.dim}, 100 classes, "
          f"{args.threads} threads, torch {torch.__version__}\n")
    print(f"{bf16_note(device)}\n")
    force_bf16_similarities()
    print("| embeddings | tau | loss fp32 | loss rel. error | grad cosine | grad rel. error | fp32 ms | bf16 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    generator = torch.Generator().manual_seed(0)
    for kind in ("random", "clustered"):
        features, labels = (t.to(device) for t in embeddings(kind, args.n, args.dim, 100, generator))
        for tau in (0.1, 0.05):
            exact, exact_grad, exact_s = measure(TCLLoss(temperature=tau), features, labels)
            low, low_grad, low_s = measure(TCLLoss(temperature=tau, similarity_dtype=torch.bfloat16), features, labels)
            cosine = torch.nn.functional.cosine_similarity(low_grad.flatten(), exact_grad.flatten(), dim=0).item()
            grad_error = ((low_grad - exact_grad).norm() / exact_grad.norm()).item()
            print(f"| {kind} | {tau} | {exact:.4f} | {abs(low - exact) / abs(exact):.1e} | {cosine:.5f} | "
                  f"{grad_error:.1e} | {exact_s * 1e3:.0f} | {low_s * 1e3:.0f} |")


if __name__ == "__main__":
    main()
