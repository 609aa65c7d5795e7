r"""MoCo's InfoNCE against a queue of negatives (He et al., CVPR 2020, eq. 1), and its TCL generalisation.

A query q (the online network's projection of one view), its key k (the momentum network's projection of
another view of the same image: the one positive) and the K keys of a queue of past batches (the negatives),
all L2-normalised; s_p = q . k and s_n = q . n:

    L = log D - s_p / tau
    D = exp(s_p / tau) + k1 exp(-s_p) + k2 sum_{n in queue} exp(s_n / tau)

``k1 = 0, k2 = 1`` is MoCo's InfoNCE exactly: the cross-entropy of the logits ``[s_p, s_1, ..., s_K] / tau``
with the positive as the class. ``k1 > 0`` adds TCL's hard-positive term (``../shared/research/tcl.md`` §1
with |P| = 1: no temperature on it, as in TCL's reference code; ``k1_uses_temperature=True`` gives
exp(-s_p / tau)) and ``k2`` scales the push of the queue's negatives. Computed in log space,

    log D = logsumexp( {s_p / tau}  U  {-a s_p + log k1}  U  {s_n / tau + log k2 : n} ),   a = 1 (or 1 / tau)

so it is finite for every finite input (an empty queue leaves the other terms; with k1 = 0 the loss is then 0).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tunedcl._checks import bad_argument, check_bool, check_real
from tunedcl.losses.family import register_loss
from tunedcl.losses.inputs import unit_vectors

_OWNER = "MoCoInfoNCELoss"


def _check_inputs(queries: object, keys: object, queue: object) -> None:
    if not isinstance(queries, Tensor) or not queries.is_floating_point() or queries.ndim != 2 or 0 in queries.shape:
        raise bad_argument("queries", queries, "a non-empty floating-point tensor [B, D]", _OWNER)
    shape = tuple(queries.shape)
    if not isinstance(keys, Tensor) or not keys.is_floating_point() or tuple(keys.shape) != shape:
        raise bad_argument("keys", keys, f"a floating-point tensor of the queries' shape {shape}", _OWNER)
    dim = shape[1]
    if not isinstance(queue, Tensor) or not queue.is_floating_point() or queue.ndim != 2 or queue.shape[1] != dim:
        raise bad_argument("queue", queue, f"a floating-point tensor [K, {dim}] (K >= 0 negatives)", _OWNER)
    for name, tensor in (("keys", keys), ("queue", queue)):
        if tensor.device != queries.device:
            raise ValueError(f"{_OWNER}: {name} must be on the queries' device ({queries.device}); got {tensor.device}")


@register_loss("moco-infonce")
class MoCoInfoNCELoss(nn.Module):
    r"""MoCo's InfoNCE of queries against their keys and a queue of negatives, with TCL's k1 and k2.

    For query i, with s_p = q_i . k_i and s_n = q_i . n over the queue's rows n (all L2-normalised inside):

        L_i = log D_i - s_p / tau
        D_i = exp(s_p / tau) + k1 exp(-s_p) + k2 sum_n exp(s_n / tau)          loss = mean_i L_i

    Degenerate case: ``k1=0, k2=1`` is MoCo's InfoNCE, ``F.cross_entropy([s_p, s_n...] / tau, 0)``.

    Called as ``loss(queries, keys, queue)``:
        queries: ``[B, D]`` the online projections (the anchors).
        keys: ``[B, D]`` the momentum network's projections of another view, row i is query i's positive.
        queue: ``[K, D]`` negatives shared by every query (K may be 0).
    No stop-gradient is applied here: the method passes keys and a queue computed without gradient.
    Half-precision inputs are computed in float32 with autocast off (the result is float32); float64 stays
    float64. The rows are normalised safely (:func:`~tunedcl.losses.inputs.unit_vectors`), so the loss is
    finite for every finite input.

    Args:
        temperature: tau > 0 (MoCo v2: 0.2).
        k1: >= 0, weight of the hard-positive term exp(-s_p) (0: MoCo; TCL's reference code: 5000).
        k2: > 0, weight of the queue's negatives (1: MoCo and TCL's reference code).
        k1_uses_temperature: use exp(-s_p / tau) for the k1 term (TCL's reference code has no tau there).

    Example:
        >>> import torch
        >>> loss = MoCoInfoNCELoss(temperature=0.2)
        >>> queries = torch.randn(8, 128, requires_grad=True)
        >>> keys, queue = torch.randn(8, 128), torch.randn(4096, 128)
        >>> value = loss(queries, keys, queue)
        >>> value.backward()
        >>> bool(torch.isfinite(value)), queries.grad.shape
        (True, torch.Size([8, 128]))
        >>> float(loss(keys, keys, torch.zeros(0, 128)))           # no negatives, k1 = 0: D = exp(s_p / tau)
        0.0
    """

    def __init__(
        self, temperature: float = 0.2, k1: float = 0.0, k2: float = 1.0, k1_uses_temperature: bool = False
    ) -> None:
        super().__init__()
        self.temperature, self.k1, self.k2 = temperature, k1, k2
        self.k1_uses_temperature = k1_uses_temperature
        self.check()

    def check(self) -> None:
        """Validate the hyperparameters as currently set (run at construction and at every call)."""
        self.temperature = check_real("temperature", self.temperature, low=0.0, low_inclusive=False)
        self.k1 = check_real("k1", self.k1, low=0.0)
        self.k2 = check_real("k2", self.k2, low=0.0, low_inclusive=False)
        check_bool("k1_uses_temperature", self.k1_uses_temperature)

    def forward(self, queries: Tensor, keys: Tensor, queue: Tensor) -> Tensor:
        self.check()
        _check_inputs(queries, keys, queue)
        dtype = torch.float64 if queries.dtype == torch.float64 else torch.float32
        tau = self.temperature
        with torch.autocast(device_type=queries.device.type, enabled=False):
            q = unit_vectors(queries.to(dtype))
            positive = (q * unit_vectors(keys.to(dtype))).sum(dim=-1)  # [B]
            terms = [positive / tau]
            if self.k1 > 0.0:
                pull = 1.0 / tau if self.k1_uses_temperature else 1.0
                terms.append(positive * -pull + math.log(self.k1))
            if queue.shape[0] > 0:
                negatives = q @ unit_vectors(queue.to(dtype)).T / tau  # [B, K]
                terms.append(torch.logsumexp(negatives, dim=1) + math.log(self.k2))
            log_denominator = torch.logsumexp(torch.stack(terms, dim=1), dim=1)
            return (log_denominator - positive / tau).mean()

    def extra_repr(self) -> str:
        text = f"temperature={self.temperature}, k1={self.k1}, k2={self.k2}"
        return text + (", k1_uses_temperature=True" if self.k1_uses_temperature else "")
