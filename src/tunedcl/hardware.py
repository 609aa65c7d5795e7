"""What the device can compute fast: the checks that decide precision (torch only, no training imports).

bf16 (and fp16) products are fast only where the hardware has units for them: CUDA from compute capability
8.0 (Ampere), CPUs with AVX512-BF16 or AMX. Elsewhere torch emulates them, and on a 2-core AVX2 EPYC the
loss with ``similarity_dtype=torch.bfloat16`` ran 21x slower than in fp32 (issue 14's measurement).
"""

from __future__ import annotations

import warnings

import torch


def fast_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run on bf16 units: CUDA with compute capability >= 8.0, CPUs with AVX512-BF16
    or AMX. ``torch.cuda.is_bf16_supported()`` also counts emulated bf16 (T4, V100), where cuDNN runs it slowly
    or not at all."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


def fast_fp16(device: torch.device) -> bool:
    """True where fp16 matmuls run on fp16 units: any CUDA GPU with compute capability >= 7.0 (tensor cores),
    CPUs with AMX-FP16."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (7, 0)
    if device.type == "cpu":
        return bool(getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)())
    return False


_warned: set[tuple[str, torch.dtype]] = set()


def similarity_dtype_for(dtype: torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """``dtype`` where the device computes it fast; else None (fp32), with a warning once per device type and
    dtype. Reduced precision only trades accuracy for speed, so where it brings no speed it is not used."""
    if dtype not in (torch.bfloat16, torch.float16) or device.type not in ("cpu", "cuda"):
        return dtype  # meta, MPS, XPU, ...: not judged here, the caller's choice stands
    fast = fast_bf16(device) if dtype == torch.bfloat16 else fast_fp16(device)
    if fast:
        return dtype
    if (device.type, dtype) not in _warned:
        _warned.add((device.type, dtype))
        units = "AVX512-BF16 or AMX" if dtype == torch.bfloat16 else "AMX-FP16"
        if device.type == "cuda":
            units = "compute capability 8.0" if dtype == torch.bfloat16 else "compute capability 7.0"
        warnings.warn(
            f"similarity_dtype={dtype} on {device.type}: this device has no {units}, so {dtype} would only be "
            "emulated (many times slower than float32); computing the similarities in float32 instead",
            RuntimeWarning,
            stacklevel=3,
        )
    return None
