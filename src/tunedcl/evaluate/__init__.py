"""Evaluation of frozen encoders: features, linear probes, weighted kNN and retrieval metrics.

    >>> from tunedcl.evaluate import extract_features, fit_linear_probe, knn_classify  # doctest: +SKIP
    >>> ds = load_dataset("fashion-mnist")                                             # doctest: +SKIP
    >>> train = extract_features(encoder, ds.train.images, ds.mean, ds.std)            # doctest: +SKIP
    >>> test = extract_features(encoder, ds.test.images, ds.mean, ds.std)              # doctest: +SKIP
    >>> fit_linear_probe(train, ds.train.labels, test, ds.test.labels).top1            # doctest: +SKIP
    >>> knn_classify(train, ds.train.labels, test, ds.test.labels).top1                # doctest: +SKIP

``paper_linear_probe`` runs the paper's protocol instead (a linear layer trained on augmented images,
SGD lr 0.5, 50 epochs by default). This package uses ``tunedcl.models`` and ``tunedcl.data``; it knows
nothing of the losses or of training.
"""

from tunedcl.evaluate.features import extract_features
from tunedcl.evaluate.knn import KNNResult, knn_classify, knn_scores
from tunedcl.evaluate.linear_probe import ProbeResult, fit_linear_probe, paper_linear_probe
from tunedcl.evaluate.retrieval import RetrievalResult, retrieval_metrics

__all__ = [
    "KNNResult",
    "ProbeResult",
    "RetrievalResult",
    "extract_features",
    "fit_linear_probe",
    "knn_classify",
    "knn_scores",
    "paper_linear_probe",
    "retrieval_metrics",
]
