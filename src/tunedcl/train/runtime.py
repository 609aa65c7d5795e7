"""Where and how a run executes: device, precision, seeds, threads, and the process group under torchrun."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tunedcl.hardware import fast_bf16
from tunedcl.train.config import ConfigError, TrainConfig


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            device_type=self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )


# bf16 autocast pays off where bf16 matmuls run on bf16 units: the one check, in tunedcl.hardware.
bf16_supported = fast_bf16


def _local_gpu(local_rank: int) -> int:
    """The GPU index of this process: LOCAL_RANK when it sees every GPU of the node, 0 when the launcher gave
    each process one GPU of its own (CUDA_VISIBLE_DEVICES per process: LOCAL_RANK would then not exist)."""
    return local_rank if local_rank < torch.cuda.device_count() else 0


def choose_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device("cuda", _local_gpu(local_rank)) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available here; use auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", _local_gpu(local_rank))
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def setup(config: TrainConfig) -> Runtime:
    """Threads, determinism, device, precision and process group for a run."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not config.deterministic
        torch.backends.cuda.matmul.allow_tf32 = config.tf32  # the loss's similarity products included
        torch.backends.cudnn.allow_tf32 = config.tf32
        torch.cuda.reset_peak_memory_stats(device)  # the run's own peak, not an earlier one in this process
    rank, world = init_distributed(device)
    if config.precision == "bf16":
        if not bf16_supported(device):
            raise ConfigError(f"train.precision=bf16 but {device} has no bf16 support; use auto or fp32")
        dtype = torch.bfloat16
    elif config.precision == "auto":
        dtype = torch.bfloat16 if bf16_supported(device) else None
    else:
        dtype = None
    return Runtime(device=device, autocast_dtype=dtype, rank=rank, world_size=world)


# The CPU features that decide how fast training runs here (bf16 autocast pays only with the first two).
_CPU_FEATURES = (("amx_tile", "AMX"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2"))


def describe_cpu() -> str:
    """The CPU's model name and its speed-deciding features, e.g. ``"AMD EPYC 9B14 (AVX512-BF16, AVX512,
    AVX2)"`` (Linux's /proc/cpuinfo; elsewhere the platform's processor string)."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    features = [name for flag, name in _CPU_FEATURES if flag in flags]
    return f"{model} ({', '.join(features)})" if features else model


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: CUDA allocator peak on GPU, peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps (a step is never cut in half)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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
