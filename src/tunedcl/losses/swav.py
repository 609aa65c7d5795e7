r"""SwAV's swapped prediction loss and the Sinkhorn-Knopp codes (Caron et al., NeurIPS 2020).

Each view's L2-normalised projection z is scored against K L2-normalised prototypes c_k (``s = z C^T``, a
cosine in [-1, 1]). The scores of one view give the *codes* Q of that view, a soft assignment of the batch
to the prototypes under an equipartition constraint (paper eq. 3, approximated by Sinkhorn-Knopp):

    Q* = argmax_{Q in Q}  Tr(Q^T C^T Z) + eps H(Q),    Q = {Q in R+^{K x B} : Q 1_B = 1_K / K,  Q^T 1_K = 1_B / B}

    Q* = Diag(u) exp(C^T Z / eps) Diag(v),   u, v from alternately rescaling rows and columns

and the codes are ``q_b = B Q*_{:, b}`` (each sample's code sums to 1; each prototype receives B/K of the
batch's mass). The prediction of view w is the softmax of its scores at temperature tau,
``p_b^(w) = softmax(s_b^(w) / tau)``, and each view predicts the codes of the others (the swap):

    L = 1 / (B V (V - 1))  sum_b  sum_{v != w}  - sum_k  q_bk^(v) log p_bk^(w)

For two views this is ``(l(z_1, q_2) + l(z_2, q_1)) / 2``: the paper's eq. 1 halved, as solo-learn
averages over the ordered pairs. The codes are targets: no gradient flows through them.

Sinkhorn-Knopp is run in log space. Rescaling the rows to 1/K and the columns to 1/B only adds constants
that the next rescaling removes, so ``iterations`` rounds of the paper's loop (after its normalisation by
the total) equal

    L <- S / eps;  repeat: L <- L - logsumexp_b L (per prototype);  L <- log_softmax_k L (per sample);  q = e^L

which is finite for every finite score (each logsumexp subtracts its maximum), where the exp form
overflows or divides 0 by 0 once a score gap exceeds ~88 eps in float32.

A queue of past projections (SwAV's remedy for small batches) adds rows to the Sinkhorn problem only: their
scores (against the current prototypes) enlarge the batch the equipartition is spread over, and only the
codes of the batch's own rows are used.

Under DDP (``gather_distributed=True``) the scores of every rank are gathered (without gradient) before
Sinkhorn-Knopp, in rank order, and each rank keeps its own rows' codes: every rank computes exactly the codes
one process would compute on the global batch (solo-learn instead all-reduces the row and column sums, which
agrees up to floating-point summation order). The prediction term stays a local mean, so DDP's averaging of
gradients gives the gradient of the global loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tunedcl import distributed
from tunedcl._checks import bad_argument, check_bool, check_int, check_real
from tunedcl.losses.family import register_loss


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, iterations: int = 3, epsilon: float = 0.05) -> Tensor:
    """SwAV's codes from prototype scores: ``iterations`` rounds of Sinkhorn-Knopp, in log space.

    Args:
        scores: ``[..., N, K]`` scores of N samples against K prototypes (any leading dimensions: each
            ``[N, K]`` slice is its own problem). Finite.
        iterations: rounds of (prototype rescaling, sample rescaling), at least 1 (3 in the paper).
        epsilon: the entropy weight (0.05 in the paper): smaller gives sharper codes.

    Returns:
        ``[..., N, K]`` codes without gradient, in float64 for float64 scores and float32 otherwise: each
        sample's code sums to 1; each prototype's column sums to N/K up to the convergence of the iterations.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> codes = sinkhorn_knopp(torch.rand(6, 3), iterations=50)  # 6 samples, 3 prototypes
        >>> codes.sum(dim=1)
        tensor([1.0000, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000])
        >>> codes.sum(dim=0)
        tensor([2.0000, 2.0000, 2.0000])
    """
    iterations = check_int("iterations", iterations, low=1, owner="sinkhorn_knopp")
    epsilon = check_real("epsilon", epsilon, low=0.0, low_inclusive=False, owner="sinkhorn_knopp")
    if scores.dim() < 2 or not scores.is_floating_point():
        raise bad_argument("scores", scores, "a floating-point tensor [..., N, K]", owner="sinkhorn_knopp")
    dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    log_codes = scores.to(dtype) / epsilon
    for _ in range(iterations):
        log_codes = log_codes - torch.logsumexp(log_codes, dim=-2, keepdim=True)  # per prototype
        log_codes = torch.log_softmax(log_codes, dim=-1)  # per sample: its code sums to 1
    return log_codes.exp()


@register_loss("swav")
class SwAVLoss(nn.Module):
    r"""SwAV's swapped prediction: each view predicts the Sinkhorn-Knopp codes of the other views.

        L = 1 / (B V (V - 1))  sum_b  sum_{v != w}  - sum_k  q_bk^(v) log softmax(s_b^(w) / tau)_k

    with ``q^(v) = sinkhorn_knopp(s^(v))`` over the batch (and the queued rows, if given), without gradient.
    See the module docstring for the equations and their sources.

    Args:
        temperature: tau of the prediction's softmax (0.1 in the paper and solo-learn).
        sinkhorn_iterations: Sinkhorn-Knopp rounds (3 in the paper and solo-learn).
        sinkhorn_epsilon: the entropy weight eps of the codes (0.05 in the paper and solo-learn).
        gather_distributed: under torch.distributed, compute the codes over every rank's scores (gathered in
            rank order, no gradient), so they equal one process's codes of the global batch.

    Called as ``loss(scores, queued_scores=None)``:
        scores: ``[B, V, K]`` scores of the B samples' V views against the K prototypes (cosines: the
            projections and the prototypes L2-normalised). Gradients flow through the prediction term.
        queued_scores: ``[Q, V, K]`` scores of queued past projections against the current prototypes, or
            None. They join each view's Sinkhorn-Knopp problem only (under DDP, pass the same queue on every
            rank: it is not gathered).

    Returns the scalar loss (finite for finite scores).

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> z = F.normalize(torch.randn(8, 2, 16), dim=-1)
        >>> prototypes = F.normalize(torch.randn(5, 16), dim=-1)
        >>> loss = SwAVLoss(temperature=0.1)(z @ prototypes.T)
        >>> bool(loss > 0)
        True
    """

    def __init__(self, temperature: float = 0.1, sinkhorn_iterations: int = 3, sinkhorn_epsilon: float = 0.05,
                 gather_distributed: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.sinkhorn_iterations = sinkhorn_iterations
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.gather_distributed = gather_distributed
        self.check()

    def check(self) -> None:
        """Validate the hyperparameters as currently set (at construction and at every call)."""
        owner = "SwAVLoss"
        self.temperature = check_real("temperature", self.temperature, low=0.0, low_inclusive=False, owner=owner)
        self.sinkhorn_iterations = check_int("sinkhorn_iterations", self.sinkhorn_iterations, low=1, owner=owner)
        self.sinkhorn_epsilon = check_real("sinkhorn_epsilon", self.sinkhorn_epsilon, low=0.0, low_inclusive=False,
                                           owner=owner)
        check_bool("gather_distributed", self.gather_distributed, owner=owner)

    def codes(self, scores: Tensor, queued_scores: Tensor | None = None) -> Tensor:
        """``[B, V, K]`` codes of the batch's views (no gradient), each view's over the batch (gathered over
        ranks with ``gather_distributed``) and the queued rows."""
        batch = scores.shape[0]
        rows = scores.detach()
        start = 0
        if self.gather_distributed:
            distributed.require_process_group("gather_distributed")
            distributed.check_equal_sizes(batch, "gather_distributed", scores.device)
            rows = distributed.gather(rows)
            start = distributed.rank() * batch
        if queued_scores is not None:
            rows = torch.cat([rows, queued_scores.detach().to(rows.dtype)])
        codes = sinkhorn_knopp(rows.transpose(0, 1), self.sinkhorn_iterations, self.sinkhorn_epsilon)  # [V, N, K]
        return codes[:, start : start + batch].transpose(0, 1)

    def forward(self, scores: Tensor, queued_scores: Tensor | None = None) -> Tensor:
        self.check()
        owner = "SwAVLoss"
        if scores.dim() != 3 or scores.shape[1] < 2 or not scores.is_floating_point() or scores.shape[0] < 1:
            raise bad_argument("scores", scores, "a floating-point tensor [B, V, K] with B >= 1 and V >= 2", owner)
        if queued_scores is not None and (
            queued_scores.dim() != 3 or queued_scores.shape[1:] != scores.shape[1:]
            or not queued_scores.is_floating_point()
        ):
            allowed = f"None or a floating-point tensor [Q, {scores.shape[1]}, {scores.shape[2]}] (as the scores)"
            raise bad_argument("queued_scores", queued_scores, allowed, owner)
        codes = self.codes(scores, queued_scores)
        compute = torch.float64 if scores.dtype == torch.float64 else torch.float32
        log_predictions = F.log_softmax(scores.to(compute) / self.temperature, dim=-1)
        views = scores.shape[1]
        # cross[v, w] = sum over the batch of -<q^(v), log p^(w)>; the diagonal (a view predicting itself) is left
        # out. A product and a sum rather than einsum, which autocast would run in bf16.
        cross = -(codes.to(compute)[:, :, None, :] * log_predictions[:, None, :, :]).sum(dim=(0, 3))
        swapped = cross.sum() - cross.diagonal().sum()
        return swapped / (scores.shape[0] * views * (views - 1))

    def extra_repr(self) -> str:
        text = f"temperature={self.temperature}, sinkhorn_iterations={self.sinkhorn_iterations}, "
        text += f"sinkhorn_epsilon={self.sinkhorn_epsilon}"
        return text + (", gather_distributed=True" if self.gather_distributed else "")


__all__ = ["SwAVLoss", "sinkhorn_knopp"]
