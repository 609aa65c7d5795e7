"""The labelled memory queue: FIFO behaviour, and the loss with a queue equals the dense loss on
[batch; queue] with queue rows excluded as anchors."""

from __future__ import annotations

import pytest
import torch

from loss_reference import reference_losses
from tunedcl import NTXentLoss, SupConLoss, TCLLoss
from tunedcl.losses import MemoryQueue
from tunedcl.losses.functional import ntxent_loss, supcon_loss, tcl_loss


def test_fifo_order_and_wrap_around() -> None:
    queue = MemoryQueue(5)
    assert len(queue) == 0 and queue.features.shape == (0, 0)
    rows = torch.arange(14, dtype=torch.float32)[:, None].repeat(1, 3)
    queue.enqueue(rows[:3], torch.arange(3))
    assert queue.ids.tolist() == [0, 1, 2]
    queue.enqueue(rows[3:7], torch.arange(3, 7))  # wraps: 0 and 1 are overwritten
    assert len(queue) == 5
    assert queue.ids.tolist() == [2, 3, 4, 5, 6]
    assert queue.features[:, 0].tolist() == [2, 3, 4, 5, 6]
    queue.enqueue(rows[7:14], torch.arange(7, 14))  # more than the queue holds: newest 5 survive
    assert queue.ids.tolist() == [9, 10, 11, 12, 13]
    assert queue.features[:, 1].tolist() == [9, 10, 11, 12, 13]
    queue.reset()
    assert len(queue) == 0


def test_self_supervised_entries_are_stored_with_id_minus_one() -> None:
    queue = MemoryQueue(4)
    queue.enqueue(torch.randn(3, 2), None)
    assert queue.ids.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match=r"holds self-supervised .* this call is labelled"):
        queue.enqueue(torch.randn(1, 2), torch.tensor([0]))


def test_bad_queue_arguments() -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"queue size must be an integer >= 1"):
            MemoryQueue(bad)
    with pytest.raises(ValueError, match=r"queue_size must be an integer >= 0; got -1"):
        TCLLoss(queue_size=-1)
    with pytest.raises(ValueError, match=r"queue must be a tunedcl.losses.MemoryQueue or None; got list"):
        tcl_loss(torch.randn(4, 2, 3), queue=[])
    queue = MemoryQueue(8)
    with pytest.raises(ValueError, match=r"mask cannot be combined with a memory queue"):
        tcl_loss(torch.randn(4, 3), mask=torch.eye(4, dtype=torch.bool), queue=queue)
    queue.enqueue(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"holds 3-dimensional rows; got 5-dimensional"):
        queue.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))


LOSSES = {
    "tcl": (lambda **kw: tcl_loss(temperature=0.2, k1=50.0, k2=2.0, **kw),
            dict(loss="tcl", temperature=0.2, k1=50.0, k2=2.0)),
    "supcon-in": (lambda **kw: supcon_loss(temperature=0.2, variant="in", **kw),
                  dict(loss="supcon-in", temperature=0.2)),
    "ntxent": (lambda **kw: ntxent_loss(temperature=0.3, **kw), dict(loss="ntxent", temperature=0.3)),
}


def _batch_with_queue_reference(batch: torch.Tensor, ids: torch.Tensor, queue_rows: torch.Tensor,
                                 queue_ids: torch.Tensor, reference_kwargs: dict) -> torch.Tensor:
    """Reference per-anchor losses of the batch rows inside [batch; queue] (queue rows not anchors)."""
    rows = torch.cat([batch.reshape(-1, batch.shape[-1]), queue_rows]).double()
    labels = torch.cat([ids, queue_ids])
    return reference_losses(rows, labels, None, **reference_kwargs)[: ids.shape[0]]


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("chunk_size", [0, None, 3])
def test_supervised_queue_equals_dense_loss_on_batch_plus_queue(name: str, chunk_size: int | None) -> None:
    fn, reference_kwargs = LOSSES[name]
    g = torch.Generator().manual_seed(30)
    queue = MemoryQueue(7)
    past = torch.nn.functional.normalize(torch.randn(9, 6, generator=g, dtype=torch.float64), dim=1)
    past_labels = torch.tensor([0, 5, 1, 5, 2, 6, 0, 1, 7])
    queue.enqueue(past, past_labels)  # keeps the last 7
    batch = torch.randn(5, 2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 3, 5, 4])  # 3 and 4 only have their other view; 5 only in the queue
    per_anchor = fn(features=batch, labels=labels, queue=queue, reduction="none", chunk_size=chunk_size)
    expected = _batch_with_queue_reference(batch, labels.repeat_interleave(2), past[2:], past_labels[2:],
                                           reference_kwargs)
    torch.testing.assert_close(per_anchor, expected, rtol=1e-10, atol=1e-10)
    # The gradient reaches the batch only (queue rows are detached), and matches the reference's.
    reference_leaf = batch.detach().clone().requires_grad_(True)
    _batch_with_queue_reference(reference_leaf, labels.repeat_interleave(2), past[2:], past_labels[2:],
                                reference_kwargs).sum().backward()
    per_anchor.sum().backward()
    torch.testing.assert_close(batch.grad, reference_leaf.grad, rtol=1e-9, atol=1e-10)
    # The batch (10 rows) was enqueued after the loss: the 7-row queue now holds its last 7 rows.
    assert queue.ids.tolist() == labels.repeat_interleave(2)[-7:].tolist()


@pytest.mark.parametrize("chunk_size", [0, None])
def test_self_supervised_queue_entries_are_negatives_only(chunk_size: int | None) -> None:
    g = torch.Generator().manual_seed(31)
    queue = MemoryQueue(6)
    past = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    queue.enqueue(past, None)
    batch = torch.randn(3, 2, 4, generator=g, dtype=torch.float64)
    per_anchor = tcl_loss(batch, queue=queue, reduction="none", chunk_size=chunk_size)
    instance = torch.arange(3).repeat_interleave(2)
    unique_negative_ids = -1 - torch.arange(6)  # never equal to each other or to the batch
    expected = _batch_with_queue_reference(batch, instance, past, unique_negative_ids,
                                           dict(loss="tcl", temperature=0.1, k1=5000.0))
    torch.testing.assert_close(per_anchor, expected, rtol=1e-10, atol=1e-10)
    assert queue.ids.tolist() == [-1] * 6


@pytest.mark.parametrize("cls", [TCLLoss, SupConLoss, NTXentLoss])
def test_module_owns_queue_updates_in_training_and_round_trips_through_state_dict(cls) -> None:
    loss = cls(queue_size=10)
    features, labels = torch.randn(3, 2, 8), torch.tensor([0, 1, 0])
    loss(features, labels)
    assert len(loss.queue) == 6
    loss.eval()
    loss(features, labels)
    assert len(loss.queue) == 6  # eval mode reads the queue but does not feed it
    loss.train()
    loss(features, labels)
    assert len(loss.queue) == 10
    restored = cls(queue_size=10)
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(restored.queue.features, loss.queue.features)
    assert torch.equal(restored.queue.ids, loss.queue.ids)
    nxt = torch.randn(3, 2, 8)
    torch.testing.assert_close(restored(nxt, labels), loss(nxt, labels))


def test_queue_gives_positives_to_singletons() -> None:
    loss = TCLLoss(queue_size=16)
    features = torch.randn(4, 8)
    labels = torch.tensor([0, 1, 2, 3])  # no positive inside the batch
    assert loss(features, labels).item() == 0.0
    assert loss(torch.randn(4, 8), labels).item() > 0.0  # now the queue holds each label once
