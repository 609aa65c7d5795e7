"""Loss benchmark: forward + backward time and peak memory of the supervised TCL loss.

Each case runs in its own process (so peak memory is its own), D = 128, fp32, labels from 100 classes,
torch threads fixed. Implementations:

- ``tunedcl auto``     TCLLoss() as users call it (the chunked exact path, chunk picked automatically)
- ``tunedcl chunked``  TCLLoss(chunk_size=1024), logits recomputed in the backward above 256 MiB
- ``tunedcl dense``    TCLLoss(chunk_size=0), the plain-autograd dense path
- ``tunedcl bf16``     TCLLoss(similarity_dtype=torch.bfloat16)
- ``naive``            the reference code's formula as it computes it: float N x N masks built with
                       repeat/scatter, exp then sum then log (written below, from the formula)
- ``pml SupCon``       pytorch-metric-learning's SupConLoss (k1 = 0, so a lower bound for TCL; optional:
                       ``pip install pytorch-metric-learning`` with torch pinned)
- ``floor``            the matrix products alone: one N x N x D product forward, two in backward,
                       whole where the N x N matrix fits, else in 1024-row chunks (fastest is kept)

A case whose peak memory, extrapolated (x N^2) from the same implementation at the previous N, would
exceed ``--memory-limit`` is reported as not run.

    python benchmarks/loss_speed.py                       # the full table (tens of minutes on 2 cores)
    python benchmarks/loss_speed.py --sizes 1024 4096     # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys

from _device import add_device_argument, bf16_note, force_bf16_similarities, resolve_device, timed

IMPLEMENTATIONS = ["floor", "tunedcl auto", "tunedcl chunked", "tunedcl dense", "tunedcl bf16", "naive",
                   "pml SupCon"]
TEMPERATURE, K1, K2 = 0.1, 5000.0, 1.0


def naive_reference_tcl(features, labels, temperature: float, k1: float, k2: float):
    """TCL the way the paper's reference code computes it (SupContrast's structure, no log-sum-exp)."""
    import torch

    n = features.shape[0]
    z = torch.nn.functional.normalize(features, dim=1)
    labels = labels.view(-1, 1)
    mask = torch.eq(labels, labels.T).float()
    logits = torch.div(torch.matmul(z, z.T), temperature)
    logits_max, _ = torch.max(logits, dim=1, keepdim=True)
    logits = logits - logits_max.detach()
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(n).view(-1, 1), 0)
    mask = mask * logits_mask
    negative_mask = (1.0 - mask) * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    # The k1 term exponentiates the raw similarity; its shift by the row max is undone explicitly.
    sim = logits * temperature + logits_max.detach() * temperature
    pull = k1 * torch.exp(-sim) * mask * torch.exp(-logits_max.detach())
    denominator = (exp_logits * mask).sum(1, keepdim=True) + pull.sum(1, keepdim=True) + k2 * (
        exp_logits * negative_mask
    ).sum(1, keepdim=True)
    log_prob = logits - torch.log(denominator)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return -mean_log_prob_pos.mean()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def run_case(implementation: str, n: int, dim: int, threads: int, repeats: int, device_name: str = "cpu") -> dict:
    """Time forward+backward of one implementation at one size (called in a fresh process)."""
    import torch

    device = resolve_device(device_name)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    features = torch.randn(n, dim).to(device)
    labels = torch.randint(0, 100, (n,)).to(device)
    grad_scale = torch.tensor(1.0, device=device)

    if implementation == "floor":
        z = features.clone()

        def step() -> None:
            if n * n * 4 <= 2**32:  # the whole product fits in 4 GiB: time it whole
                sim = z @ z.T
                _ = sim @ z
                _ = sim.T @ z
            else:
                for start in range(0, n, 1024):
                    block = z[start : start + 1024] @ z.T
                    _ = block @ z
                    _ = block.T @ z[start : start + 1024]
    else:
        if implementation == "pml SupCon":
            from pytorch_metric_learning.losses import SupConLoss as PMLSupConLoss

            pml = PMLSupConLoss(temperature=TEMPERATURE)
            fn = lambda x: pml(x, labels)  # noqa: E731
        elif implementation == "naive":
            fn = lambda x: naive_reference_tcl(x, labels, TEMPERATURE, K1, K2)  # noqa: E731
        else:
            from tunedcl import TCLLoss

            options = {
                "tunedcl auto": {},
                "tunedcl chunked": {"chunk_size": 1024},
                "tunedcl dense": {"chunk_size": 0},
                "tunedcl bf16": {"similarity_dtype": torch.bfloat16},
            }[implementation]
            if implementation == "tunedcl bf16":
                force_bf16_similarities()  # measure bf16 even where tunedcl would fall back to fp32
            loss = TCLLoss(temperature=TEMPERATURE, k1=K1, k2=K2, **options).to(device)
            fn = lambda x: loss(x, labels)  # noqa: E731

        def step() -> None:
            leaf = features.clone().requires_grad_(True)
            value = fn(leaf)
            (value * grad_scale).backward()

    baseline = _rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    times = []
    if n > 16384:  # a single iteration takes a minute or more: one timed run, no warm-up
        repeats, warm_up = 1, 0
    else:
        warm_up = 1
    for _ in range(repeats + warm_up):
        start = timed(device)
        step()
        times.append(timed(device) - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    measured = sorted(times[warm_up:])
    return {"seconds": measured[len(measured) // 2], "peak_bytes": max(peak, 0)}


def _run_in_subprocess(implementation: str, n: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--case", implementation, str(n), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--dim", str(args.dim), "--device", args.device]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _format_cell(result: dict) -> str:
    if "skipped" in result:
        return result["skipped"]
    if "error" in result:
        return "error: " + result["error"]
    return f"{result['seconds'] * 1e3:,.0f} ms / {result['peak_bytes'] / 2**20:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192, 16384, 32768, 65536])
    parser.add_argument("--implementations", nargs="+", default=IMPLEMENTATIONS, choices=IMPLEMENTATIONS)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs after one warm-up (median); one run without warm-up above N = 16384")
    parser.add_argument("--memory-limit", type=float, default=16.0, help="GiB; larger cases are not run")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per case")
    parser.add_argument("--json", help="also write the raw results here")
    add_device_argument(parser)
    parser.add_argument("--case", nargs=2, metavar=("IMPLEMENTATION", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.dim, args.threads, args.repeats,
                                  args.device)))
        return

    import torch

    resolve_device(args.device)  # a device that is not here fails now, not once per case
    print(f"# loss_speed: supervised TCL (k1={K1:g}, k2={K2:g}, tau={TEMPERATURE}), D = {args.dim}, fp32, "
          f"{args.threads} threads, 100 classes, median of {args.repeats} forward+backward")
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}; {bf16_note(resolve_device(args.device))}\n")
    results: dict[str, dict[int, dict]] = {impl: {} for impl in args.implementations}
    for n in sorted(args.sizes):
        for impl in args.implementations:
            previous = [(m, r) for m, r in results[impl].items() if "peak_bytes" in r]
            if impl == "floor" and n * n * 4 > 2**32:
                previous = []  # the floor switches to 1024-row chunks there: no N^2 memory to predict
            if previous:
                m, r = previous[-1]
                predicted = r["peak_bytes"] * (n / m) ** 2
                if predicted > args.memory_limit * 2**30:
                    results[impl][n] = {"skipped": f"not run: ~{predicted / 2**30:,.0f} GiB"}
                    continue
            if any("skipped" in r or "error" in r for r in results[impl].values()):
                results[impl][n] = {"skipped": "not run (a smaller N did not run)"}
                continue
            results[impl][n] = _run_in_subprocess(impl, n, args)
            print(f"  N={n:>6} {impl:<16} {_format_cell(results[impl][n])}", file=sys.stderr, flush=True)

    sizes = sorted(args.sizes)
    print("| implementation | " + " | ".join(f"N = {n}" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for impl in args.implementations:
        print(f"| {impl} | " + " | ".join(_format_cell(results[impl][n]) for n in sizes) + " |")
    floor = results.get("floor", {})
    if floor:
        print("\nTime relative to the floor (x):\n")
        print("| implementation | " + " | ".join(f"N = {n}" for n in sizes) + " |")
        print("|---|" + "---:|" * len(sizes))
        for impl in args.implementations:
            cells = []
            for n in sizes:
                r, f = results[impl][n], floor.get(n, {})
                cells.append(f"{r['seconds'] / f['seconds']:.2f}" if "seconds" in r and "seconds" in f else "-")
            print(f"| {impl} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({impl: {str(n): r for n, r in rs.items()} for impl, rs in results.items()}, handle, indent=1)


if __name__ == "__main__":
    main()
