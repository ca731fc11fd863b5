"""Handwritten-digit datasets: IDX files, local copies, cache and download.

Importing this package is cheap and never imports Keras, so the CLI can load
data before the Keras backend is chosen.
"""

from digits.datasets.arrays import MNIST_SIDE, to_inputs
from digits.datasets.idx import read_idx, write_idx
from digits.datasets.sources import (
    DATASETS,
    Dataset,
    DatasetSpec,
    default_cache_dir,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "MNIST_SIDE",
    "default_cache_dir",
    "load_dataset",
    "read_idx",
    "to_inputs",
    "write_idx",
]
