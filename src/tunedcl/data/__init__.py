"""Data: dataset sources (`load_dataset`) and, alongside, batched augmentations.

>>> from tunedcl.data import load_dataset, list_datasets   # doctest: +SKIP
>>> ds = load_dataset("fashion-mnist")                      # doctest: +SKIP
>>> ds.train.images.shape, ds.train.labels.dtype            # doctest: +SKIP
(torch.Size([60000, 1, 28, 28]), torch.int64)
"""

from tunedcl.data.sources import DATASETS, Dataset, Split, list_datasets, load_dataset, register_dataset

__all__ = ["DATASETS", "Dataset", "Split", "list_datasets", "load_dataset", "register_dataset"]
