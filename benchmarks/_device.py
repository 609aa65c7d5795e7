"""The benchmarks' ``--device`` flag and the synchronisation around timed regions.

CUDA kernels run asynchronously: a timer read right after launching them measures the launch, not the
work. Every timed region of a benchmark therefore starts and ends with :func:`synchronize`, which waits for
the device on CUDA and does nothing elsewhere (the CPU has nothing queued).
"""

from __future__ import annotations

import argparse
import time

import torch


def add_device_argument(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    parser.add_argument("--device", default=default,
                        help=f"cpu, cuda or cuda:N (default {default}); CUDA timings synchronise the device")


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch.device; a one-line error when it names CUDA and none is here."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SystemExit(f"--device {name!r}: not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name!r}: CUDA is not available here")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device) -> float:
    """``time.perf_counter()`` after the device has finished its queued work: the start or end of a region."""
    synchronize(device)
    return time.perf_counter()



def force_bf16_similarities() -> None:
    """Make ``similarity_dtype=torch.bfloat16`` compute in bf16 even where tunedcl would fall back to fp32 (a
    CPU without AVX512-BF16 / AMX): a bf16 row must measure bf16."""
    from tunedcl import hardware

    hardware.fast_bf16 = lambda _device: True


def bf16_note(device: torch.device | str) -> str:
    """What the bf16 rows of a table measure on ``device``."""
    from tunedcl import hardware

    if hardware.fast_bf16(torch.device(device)):
        return "bf16 rows: native bf16"
    return "bf16 rows: emulated bf16 (no AVX512-BF16/AMX here; tunedcl itself warns and computes in fp32)"
