"""Datasets for scratchprop: IDX files, MNIST-format loading, downloads.

Public API
----------
DataError
    Raised for every missing, unreadable or malformed data file
    (a subclass of ValueError).
read_idx(path, *, ndim=None), write_idx(path, array)
    Read / atomically write unsigned-byte IDX files, raw or gzip.
load_mnist(root=None, normalize=True, flatten=True, one_hot_label=False, *, dataset="mnist")
    The book's loader; ``root=None`` loads the bundled 10,000-digit real
    MNIST subset in :data:`BUNDLED_DIR`.
find_dataset_files(root=None, dataset="mnist")
    Where ``load_mnist`` would read from.
download(dataset, root, *, mirrors=None, checksums=None, timeout=30.0, log=None)
    Fetch and verify the full MNIST or Fashion-MNIST files.
"""

from .download import download  # noqa: E402  (shadows the submodule name on purpose)
from .idx import DataError, read_idx, write_idx
from .mnist import (
    BUNDLED_DIR,
    DATASETS,
    DEBIAN_FASHION_MNIST_DIR,
    FILE_STEMS,
    find_dataset_files,
    load_mnist,
)

__all__ = [
    "BUNDLED_DIR",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "DataError",
    "FILE_STEMS",
    "download",
    "find_dataset_files",
    "load_mnist",
    "read_idx",
    "write_idx",
]
