"""``ce``: the cross-entropy baseline (the same encoder trained end to end with a linear classifier).

One view per image (``data.n_views`` does not apply), no projection head, no hyperparameters of its own.
Evaluation scores its own classifier (``ce_top1``, reported beside the linear probe that every method gets)
besides kNN on the encoder.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from tunedcl.methods.base import Batch, Method, StepOutput, register_method
from tunedcl.models import LinearClassifier


@register_method("ce")
class CrossEntropy(Method):
    """Cross-entropy baseline: encoder + linear classifier trained end to end on one view."""

    uses_labels = True
    fixed_views = 1
    has_classifier = True

    def build(self, encoder: nn.Module, num_classes: int, *, projection_dim: int,
              projection_hidden: int | None, gather_distributed: bool) -> nn.Module:
        self.model = LinearClassifier(encoder, num_classes)
        return self.model

    def training_step(self, batch: Batch) -> StepOutput:
        images = batch.views[:, 0].contiguous(memory_format=batch.memory_format)
        return StepOutput(F.cross_entropy(batch.forward(images).float(), batch.labels))
