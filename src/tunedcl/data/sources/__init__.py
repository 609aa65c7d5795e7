"""Dataset sources: readers for each format, registered by name, behind `load_dataset`.

One module per format: `idx` (MNIST, Fashion-MNIST), `cifar` (CIFAR-10/100 pickles), `bundled`
(Animal-MNIST, scikit-learn digits), `image_folder` (class-per-folder trees); `core` holds the
`Dataset`/`Split` contract and the registry (`DATASETS`), `files` the search paths, checksums and downloads.
Importing this package registers every source.
"""

from tunedcl.data.sources import bundled, cifar, idx, image_folder  # noqa: F401  (registers the sources)
from tunedcl.data.sources.core import DATASETS, Dataset, Split, list_datasets, load_dataset, register_dataset

__all__ = ["DATASETS", "Dataset", "Split", "list_datasets", "load_dataset", "register_dataset"]
