r"""Row kernels of the chunked path: each family's per-anchor loss and its exact gradient w.r.t. the logits.

Notation for one anchor row: L_j = s_j / tau (self excluded), P the positive columns, N the others.
All log-denominators are kept per row (``stats``) so that the backward needs one exp pass:

TCL      log D = logsumexp( {L_p} U {-a L_p + log k1} U {L_n + log k2} ),   a = tau (or 1 if tempered)
         loss  = log D - mean_p L_p
         dL_n  = k2 e^{L_n} / D
         dL_p  = e^{L_p} / D  -  a k1 e^{-a L_p} / D  -  1/|P|

SupCon L_in   loss = lse_all - lse_P + log|P|;  dL_j = e^{L_j - lse_all} - [j in P] e^{L_j - lse_P}

NT-Xent  loss = (1/|P|) sum_p softplus(lse_N - L_p)
         dL_p = -sigmoid(lse_N - L_p) / |P|,   dL_n = w e^{L_n - lse_N},
         w    = (1/|P|) sum_p sigmoid(lse_N - L_p)

The backward kernels write the gradient over the chunk's own storage (``Chunk.exp_minus``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tunedcl.losses.chunked import Chunk


@dataclass(frozen=True)
class TCLKernel:
    temperature: float
    k1: float
    k2: float
    k1_uses_temperature: bool

    @property
    def pull_scale(self) -> float:
        """a in exp(-a L_p): exp(-s) = exp(-tau L); the tempered form exp(-s/tau) = exp(-L)."""
        return 1.0 if self.k1_uses_temperature else self.temperature

    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        pairs = chunk.pair_logits
        terms = [
            chunk.row_logsumexp(exclude_positives=True) + math.log(self.k2),
            chunk.pairs.logsumexp(pairs),
        ]
        if self.k1 > 0:
            terms.append(chunk.pairs.logsumexp(pairs * -self.pull_scale + math.log(self.k1)))
        log_d = torch.logsumexp(torch.stack(terms, dim=1), dim=1)
        mean_positive = chunk.pairs.sum(pairs) / chunk.pairs.counts.clamp_min(1)
        return log_d - mean_positive, log_d[:, None]

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_d = stats[:, 0]
        rows, pairs = chunk.pairs.rows, chunk.pair_logits
        pair_log_d = log_d[rows]
        pair_grad = torch.exp(pairs - pair_log_d) - (1.0 / chunk.pairs.counts)[rows]
        if self.k1 > 0:
            a = self.pull_scale
            pair_grad -= a * torch.exp(pairs * -a + (math.log(self.k1) - pair_log_d))
        grad = chunk.exp_minus(log_d - math.log(self.k2))
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad


@dataclass(frozen=True)
class SupConInKernel:
    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        log_all = chunk.row_logsumexp(exclude_positives=False)
        log_pos = chunk.pairs.logsumexp(chunk.pair_logits)
        loss = log_all - log_pos + chunk.pairs.counts.clamp_min(1).log()
        return loss, torch.stack([log_all, log_pos], dim=1)

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_all, log_pos = stats[:, 0], stats[:, 1]
        rows, pairs = chunk.pairs.rows, chunk.pair_logits
        pair_grad = torch.exp(pairs - log_all[rows]) - torch.exp(pairs - log_pos[rows])
        grad = chunk.exp_minus(log_all)
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad


@dataclass(frozen=True)
class NTXentKernel:
    def forward(self, chunk: Chunk) -> tuple[Tensor, Tensor]:
        log_neg = chunk.row_logsumexp(exclude_positives=True)
        margin = log_neg[chunk.pairs.rows] - chunk.pair_logits
        counts = chunk.pairs.counts.clamp_min(1)
        loss = chunk.pairs.sum(F.softplus(margin)) / counts
        weight = chunk.pairs.sum(torch.sigmoid(margin)) / counts
        return loss, torch.stack([log_neg, weight], dim=1)

    def backward(self, chunk: Chunk, stats: Tensor) -> Tensor:
        log_neg, weight = stats[:, 0], stats[:, 1]
        rows = chunk.pairs.rows
        pair_grad = -torch.sigmoid(log_neg[rows] - chunk.pair_logits) / chunk.pairs.counts[rows]
        grad = chunk.exp_minus(log_neg - weight.log())
        grad[rows, chunk.pairs.cols] = pair_grad
        return grad
