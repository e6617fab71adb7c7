"""Load MNIST-format datasets (MNIST, Fashion-MNIST) with the book's API.

``load_mnist`` keeps the signature and return value of ``dataset/mnist.py``
from "Deep Learning from Scratch"; instead of downloading, it reads the four
standard IDX files from a directory, or the small real dataset bundled with
this package (10,000 genuine MNIST digits, see ``bundled/PROVENANCE.md``).

Where files are looked for, given ``root`` (first complete set wins)::

    root/                       files directly in root
    root/MNIST/raw/             torchvision layout ("FashionMNIST/raw" for
                                dataset="fashion-mnist"); where
                                scratchprop.data.download writes
    root/raw/
    root/mnist/                 ("fashion-mnist/" for Fashion-MNIST)

Each file may be gzip-compressed (``.gz``) or not; an uncompressed copy is
preferred when both exist.

Fashion-MNIST from Debian: ``apt-get install dataset-fashion-mnist``
installs the four ``.gz`` files in ``/usr/share/datasets/fashion-mnist``
(:data:`DEBIAN_FASHION_MNIST_DIR`), which is also the default root for
``dataset="fashion-mnist"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .idx import DataError, read_idx

__all__ = [
    "BUNDLED_DIR",
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "FILE_STEMS",
    "candidate_dirs",
    "find_dataset_files",
    "load_mnist",
]

#: Directory holding the bundled 10,000-digit MNIST subset (IDX .gz files).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
#: Where Debian's ``dataset-fashion-mnist`` package installs its files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Supported datasets -> torchvision's folder name for them.
DATASETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}

#: The four standard file names (without ``.gz``), keyed by role.
FILE_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_DEFAULT_ROOTS = {"mnist": BUNDLED_DIR, "fashion-mnist": DEBIAN_FASHION_MNIST_DIR}
N_CLASSES = 10


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return dataset


def candidate_dirs(root: str | os.PathLike, dataset: str = "mnist") -> list[Path]:
    """Return the directories searched for `dataset` under `root`, in order.

    Parameters
    ----------
    root : str or path-like
        The dataset root given by the user.
    dataset : {"mnist", "fashion-mnist"}
        Which dataset.

    Returns
    -------
    list of pathlib.Path
    """
    root = Path(root)
    return [root, root / DATASETS[_check_dataset(dataset)] / "raw", root / "raw", root / dataset]


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def find_dataset_files(root: str | os.PathLike | None = None, dataset: str = "mnist") -> dict[str, Path]:
    """Locate the four standard files of `dataset` under `root`.

    Parameters
    ----------
    root : str or path-like, optional
        Dataset root; None means the default (bundled MNIST subset, or
        Debian's Fashion-MNIST directory).
    dataset : {"mnist", "fashion-mnist"}
        Which dataset.

    Returns
    -------
    dict
        Role (keys of :data:`FILE_STEMS`) -> path of the file.

    Raises
    ------
    DataError
        If `root` does not exist or no searched directory holds all four
        files; the message lists every directory searched and what was
        missing there.
    """
    _check_dataset(dataset)
    root = Path(_DEFAULT_ROOTS[dataset] if root is None else root)
    if not root.is_dir():
        hint = ""
        if dataset == "fashion-mnist" and root == DEBIAN_FASHION_MNIST_DIR:
            hint = " (install Debian's dataset-fashion-mnist package or pass root=)"
        raise DataError(f"{dataset} root directory {root} does not exist{hint}")
    report = []
    for directory in candidate_dirs(root, dataset):
        if not directory.is_dir():
            report.append(f"  {directory}: no such directory")
            continue
        found = {role: _find_file(directory, stem) for role, stem in FILE_STEMS.items()}
        missing = [FILE_STEMS[r] + "[.gz]" for r, p in found.items() if p is None]
        if not missing:
            return found
        report.append(f"  {directory}: missing {', '.join(missing)}")
    raise DataError(
        f"could not find the four {dataset} IDX files under {root}; looked in:\n" + "\n".join(report)
    )


def _load_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"image/label count mismatch: {images_path} holds {len(images)} images "
            f"but {labels_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() >= N_CLASSES:
        raise DataError(f"{labels_path}: expected labels 0..{N_CLASSES - 1}, found {int(labels.max())}")
    return images, labels


def _convert(
    images: np.ndarray, labels: np.ndarray, normalize: bool, flatten: bool, one_hot_label: bool
) -> tuple[np.ndarray, np.ndarray]:
    n, rows, cols = images.shape
    x = images.reshape(n, rows * cols) if flatten else images.reshape(n, 1, rows, cols)
    if normalize:
        x = x.astype(np.float32) / np.float32(255.0)
    if one_hot_label:
        t = np.zeros((n, N_CLASSES), dtype=np.float32)
        t[np.arange(n), labels] = 1.0
    else:
        t = labels.astype(np.int64)
    return x, t


def load_mnist(
    root: str | os.PathLike | None = None,
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    dataset: str = "mnist",
):
    """Load an MNIST-format dataset, as ``load_mnist`` in the book.

    Parameters
    ----------
    root : str or path-like, optional
        Directory with the four IDX files (see the module docstring for the
        layouts searched). None loads the bundled 10,000-digit MNIST subset
        (8,330 train / 1,670 test) for ``dataset="mnist"`` and
        ``/usr/share/datasets/fashion-mnist`` for ``dataset="fashion-mnist"``.
    normalize : bool, default True
        If True, images are float32 in [0, 1] (pixel / 255); otherwise the
        original uint8 values 0..255.
    flatten : bool, default True
        If True, images have shape (N, 784); otherwise (N, 1, 28, 28).
    one_hot_label : bool, default False
        If True, labels are one-hot float32 of shape (N, 10); otherwise
        int64 class indices of shape (N,).
    dataset : {"mnist", "fashion-mnist"}, keyword-only
        Which dataset (both use the same file names and format).

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuples of numpy.ndarray

    Raises
    ------
    DataError
        If the files cannot be found, are malformed, or an image file and
        its label file hold different numbers of samples.
    """
    files = find_dataset_files(root, dataset)
    out = []
    for split in ("train", "test"):
        images, labels = _load_split(files[f"{split}_images"], files[f"{split}_labels"])
        out.append(_convert(images, labels, normalize, flatten, one_hot_label))
    return tuple(out[0]), tuple(out[1])
