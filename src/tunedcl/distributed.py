"""Rank, world size and an all-gather that carries gradients: the little that the losses need of
torch.distributed.

The gather concatenates in rank order on every rank (rank 0's rows first), so all ranks see the same
contrast set. Its backward sums the incoming gradients over ranks and returns each rank its own slice:
rank r's embeddings then receive the gradient of every rank's loss, which after DistributedDataParallel's
averaging over W processes is exactly the gradient of the global loss (see ``engine.reduce``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_initialized() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def require_process_group(argument: str) -> int:
    """World size, or a ValueError explaining that ``argument=True`` needs a process group."""
    if not is_initialized():
        raise ValueError(
            f"{argument}=True needs torch.distributed to be initialised (torch.distributed."
            f"init_process_group, or torchrun); none is. Set {argument}=False for one process."
        )
    return world_size()


# The one-buffer all-gather: ``all_gather_single`` (torch >= 2.13, which deprecates the older name) or
# ``all_gather_into_tensor``. None once a backend has refused it (then every call uses the list form).
_GATHER_INTO_TENSOR = getattr(dist, "all_gather_single", None) or getattr(dist, "all_gather_into_tensor", None)


def _gather_cat(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (equal shapes on every rank) concatenated along dim 0 in rank order.

    One flat output buffer filled by one collective: NCCL writes into it directly, where the list form
    allocates W tensors and copies them again in ``cat``. gloo supports it too (torch 2.13); a backend
    that does not gets the list form (the refusal is the same on every rank, so no rank is left waiting).
    """
    global _GATHER_INTO_TENSOR
    tensor = tensor.contiguous()
    if _GATHER_INTO_TENSOR is not None:
        out = tensor.new_empty((world_size() * tensor.shape[0], *tensor.shape[1:]))
        try:
            _GATHER_INTO_TENSOR(out, tensor)
            return out
        except (RuntimeError, NotImplementedError):
            _GATHER_INTO_TENSOR = None
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts, dim=0)


def check_equal_sizes(local_rows: int, argument: str, device: torch.device | None = None) -> None:
    """Raise on every rank if the ranks hold different numbers of rows (all_gather needs equal). ``device``:
    where the rows live (NCCL needs the count on that GPU, not on whatever device happens to be current)."""
    where = collective_device(device) if device is not None else _device()
    values = _gather_cat(torch.tensor([local_rows], device=where)).tolist()
    if len(set(values)) > 1:
        raise ValueError(
            f"{argument}=True needs the same local batch size on every rank; got {values} rows "
            "per rank (drop the last incomplete batch, e.g. DataLoader(drop_last=True))"
        )


def _device() -> torch.device:
    """The device collectives must use: CUDA for NCCL, CPU otherwise."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rows = tensor.shape[0]
        return _gather_cat(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()  # never reduce in place into autograd's own buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """All-gather along dim 0 in rank order; gradients flow back to every rank's own rows."""
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather(tensor: Tensor) -> Tensor:
    """All-gather along dim 0 in rank order, without gradient (labels, ids, queue entries)."""
    if world_size() == 1:
        return tensor
    return _gather_cat(tensor)


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over ranks (a new tensor; no gradient)."""
    if world_size() == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


# --- the few collectives the training loop needs (each a no-op without a process group) --------------------


def collective_device(device: torch.device) -> torch.device:
    """Where a collective's tensor must live: ``device`` under NCCL, the CPU under gloo."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (so that all ranks stop together)."""
    if world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=collective_device(device))
    dist.all_reduce(value)
    return bool(value.item() > 0)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over ranks."""
    if world_size() == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=collective_device(device))
    dist.all_reduce(total)
    return float(total) / world_size()


def per_rank(value: object) -> list[object]:
    """``value`` of every rank, in rank order (any picklable object)."""
    if world_size() == 1:
        return [value]
    values: list[object] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values
