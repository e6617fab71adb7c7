"""The ``scratchprop`` command line, end to end on the bundled MNIST subset."""

import contextlib
import csv
import gzip
import importlib.util
import io
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scratchprop
from scratchprop import tolerances
from scratchprop.checkpoint import load_checkpoint
from scratchprop.cli import main
from scratchprop.data import BUNDLED_DIR, FILE_STEMS, write_idx

HAVE_NUMBA_BACKEND = importlib.util.find_spec("scratchprop.numba") is not None
needs_numba = pytest.mark.skipif(
    not HAVE_NUMBA_BACKEND, reason="scratchprop.numba (the Numba backend) does not exist yet"
)
SCRIPT = Path(sys.executable).with_name("scratchprop")
EPOCH_LINE = re.compile(
    r"^epoch (\d+)( \(partial\))?  iter (\d+)  loss ([\d.]+)  "
    r"train acc, test acc \| ([\d.]+), ([\d.]+)  \[[\d.]+ s\]$",
    re.M,
)
FINAL = re.compile(r"final: train acc ([\d.]+), test acc ([\d.]+)")


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(err, *fragments):
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scratchprop: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short numpy training run writing a checkpoint, JSON metrics and a plot."""
    d = tmp_path_factory.mktemp("trained")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(
            [
                "train",
                "--backend",
                "numpy",
                "--epochs",
                "3",
                "--hidden",
                "50",
                "--seed",
                "1",
                "--save",
                str(d / "model.npz"),
                "--metrics",
                str(d / "metrics.json"),
                "--plot",
                str(d / "curves.png"),
            ]
        )
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue(), "dir": d}


def test_train_reaches_accuracy_and_prints_the_notebook_lines(trained):
    assert trained["rc"] == 0, trained["err"]
    out = trained["out"]
    epochs = EPOCH_LINE.findall(out)
    assert [int(e[0]) for e in epochs] == [1, 2, 3] and [int(e[2]) for e in epochs] == [84, 167, 250]
    train_acc, test_acc = map(float, FINAL.search(out).groups())
    assert test_acc > 0.8 and train_acc > 0.8  # chance is 0.1
    assert (train_acc, test_acc) == (float(epochs[-1][4]), float(epochs[-1][5]))
    for fragment in (
        "TwoLayerNet 784-50-10",
        "backend numpy, float64",
        "seed 1",
        "mnist (bundled): 8330 train / 1670 test",
        "samples/s",
        "threads BLAS",
        "wrote checkpoint",
    ):
        assert fragment in out
    assert re.search(r"wall time after the first step: train_step \d+%, evaluation \d+%, other \d+%", out)
    # not a terminal: no progress bar at all
    assert trained["err"] == "" and "\r" not in out and "it/s" not in out


def test_train_writes_valid_checkpoint_metrics_and_plot(trained):
    d = trained["dir"]
    ck = load_checkpoint(d / "model.npz")
    assert ck.sizes == (784, 50, 10) and ck.dtype == np.float64
    meta = ck.meta
    assert (meta["epoch"], meta["iteration"], meta["dataset"], meta["backend"]) == (3, 250, "mnist", "numpy")
    assert (meta["lr"], meta["batch_size"], meta["seed"]) == (0.1, 100, 1)
    assert meta["scratchprop_version"] == scratchprop.__version__ and len(ck.loss) == 250
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3]
    test_acc = float(FINAL.search(trained["out"]).group(2))
    assert f"{meta['test_acc']:.4f}" == f"{test_acc:.4f}"
    doc = json.loads((d / "metrics.json").read_text())
    assert [r["epoch"] for r in doc["epochs"]] == [1, 2, 3]
    assert set(doc["epochs"][0]) >= {"epoch", "iteration", "loss", "train_acc", "test_acc", "seconds"}
    assert doc["epochs"] == meta["history"] and doc["run"]["dataset"] == "mnist"
    png = (d / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    assert sorted(p.name for p in d.iterdir()) == ["curves.png", "metrics.json", "model.npz"]


def test_evaluate_reports_the_final_test_accuracy(trained, capsys):
    rc, out, err = run(capsys, "evaluate", "--backend", "numpy", "--model", trained["dir"] / "model.npz")
    assert rc == 0 and err == ""
    meta = load_checkpoint(trained["dir"] / "model.npz").meta
    test = re.search(r"test:\s+loss ([\d.]+)  accuracy ([\d.]+) \((\d+)/(\d+)\)", out)
    train_ = re.search(r"train:\s+loss ([\d.]+)  accuracy ([\d.]+) \((\d+)/(\d+)\)", out)
    assert int(test.group(4)) == 1670 and int(train_.group(4)) == 8330
    assert int(test.group(3)) == round(meta["test_acc"] * 1670)
    assert int(train_.group(3)) == round(meta["train_acc"] * 8330)
    assert test.group(2) == FINAL.search(trained["out"]).group(2)


def test_resume_continues_epochs_and_equals_an_uninterrupted_run(tmp_path, capsys):
    common = ["train", "--backend", "numpy", "--hidden", "20", "--quiet"]
    assert run(capsys, *common, "--seed", "7", "--epochs", "2", "--save", tmp_path / "a.npz")[0] == 0
    rc, out, err = run(
        capsys,
        "train",
        "--backend",
        "numpy",
        "--resume",
        tmp_path / "a.npz",
        "--epochs",
        "1",
        "--save",
        tmp_path / "b.npz",
        "--metrics",
        tmp_path / "b.csv",
    )
    assert rc == 0, err
    assert [int(e[0]) for e in EPOCH_LINE.findall(out)] == [3]
    assert "resuming" in out and "at epoch 2, iteration 167" in out
    assert run(capsys, *common, "--seed", "7", "--epochs", "3", "--save", tmp_path / "c.npz")[0] == 0
    a, b, c = (load_checkpoint(tmp_path / f"{n}.npz") for n in "abc")
    assert [r["epoch"] for r in b.meta["history"]] == [1, 2, 3] and b.meta["iteration"] == 250
    assert b.meta["history"][:2] == a.meta["history"]
    assert len(b.loss) == 250 and np.array_equal(b.loss[:167], a.loss)
    for k in ("W1", "b1", "W2", "b2"):
        assert not np.array_equal(b.params[k], a.params[k])
        assert np.array_equal(b.params[k], c.params[k]), k  # the batch RNG continued exactly
    key = ("epoch", "iteration", "loss", "train_acc", "test_acc")
    rows_b, rows_c = ([[r[k] for k in key] for r in ck.meta["history"]] for ck in (b, c))
    assert rows_b == rows_c
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["test_acc"]) == b.meta["test_acc"]


def test_resume_rejects_mismatches(tmp_path, capsys):
    ck = tmp_path / "m.npz"
    assert (
        run(
            capsys,
            "train",
            "--backend",
            "numpy",
            "--hidden",
            "10",
            "--iters",
            "5",
            "--seed",
            "0",
            "--save",
            ck,
            "--quiet",
        )[0]
        == 0
    )
    base = ["train", "--backend", "numpy", "--resume", ck, "--iters", "5"]
    for extra, fragment in (
        (["--hidden", "20"], "--hidden 20 differs"),
        (["--dtype", "float32"], "--dtype float32 differs"),
        (["--batch-size", "50"], "--batch-size 50 differs"),
        (["--seed", "3"], "--seed 3 differs"),
    ):
        rc, out, err = run(capsys, *base, *extra)
        assert rc == 2 and out == ""
        assert_one_error_line(err, fragment, str(ck))
    # a dataset with another input size (8x8 images)
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        write_idx(small / FILE_STEMS[f"{split}_images"], rng.integers(0, 256, (n, 8, 8)))
        write_idx(small / FILE_STEMS[f"{split}_labels"], rng.integers(0, 10, n))
    rc, out, err = run(capsys, *base, "--data", small)
    assert rc == 2
    assert_one_error_line(err, "784-10-10", "64 features")
    rc, out, err = run(capsys, "evaluate", "--backend", "numpy", "--model", ck, "--data", small)
    assert rc == 2
    assert_one_error_line(err, "784-10-10", "64 features")


def test_gradcheck_numpy_passes(capsys):
    rc, out, err = run(
        capsys, "gradcheck", "--backend", "numpy", "--batch", "3", "--hidden", "10", "--seed", "0"
    )
    assert rc == 0, out + err
    for fragment in (
        "first 3 mnist training samples",
        "numerical time: ",
        "backprop time: ",
        "W1: ",
        "b2: ",
        "gradient check PASSED",
    ):
        assert fragment in out


def test_gradcheck_failure_exits_1(capsys, monkeypatch):
    monkeypatch.setitem(tolerances.GRADCHECK, np.dtype(np.float64), {"rtol": 0.0, "floor": 1e-6})
    rc, out, err = run(capsys, "gradcheck", "--backend", "numpy", "--hidden", "10", "--seed", "0")
    assert rc == 1 and "gradient check FAILED" in out


@needs_numba
def test_gradcheck_numba_passes(capsys):
    rc, out, err = run(
        capsys, "gradcheck", "--backend", "numba", "--batch", "3", "--hidden", "10", "--seed", "0"
    )
    assert rc == 0, out + err
    assert "backend numba" in out and "gradient check PASSED" in out


@needs_numba
@pytest.mark.parametrize("seed", ["1", "3", "4", "7", "12", "14", "15"])
def test_gradcheck_passes_at_the_seeds_that_crossed_a_kink(capsys, seed):
    # each of these seeds puts a hidden unit within h of its ReLU kink: FAILED before
    rc, out, err = run(capsys, "gradcheck", "--seed", seed)
    assert rc == 0, out + err
    assert f"seed {seed}" in out.splitlines()[0] and f"seed: {seed}" in out
    assert "kinks: W1 has" in out and "left out of the verdict" in out and "gradient check PASSED" in out


@needs_numba
def test_gradcheck_prints_the_seed_it_drew(capsys):
    rc, out, err = run(capsys, "gradcheck")
    seed = re.search(r", seed (\d+)$", out.splitlines()[0])
    assert seed and f"seed: {seed.group(1)}" in out


@needs_numba
def test_train_numba_backend(tmp_path, capsys):
    rc, out, err = run(
        capsys,
        "train",
        "--backend",
        "numba",
        "--threads",
        "1",
        "--epochs",
        "2",
        "--hidden",
        "50",
        "--seed",
        "1",
        "--dtype",
        "float32",
        "--save",
        tmp_path / "m.npz",
    )
    assert rc == 0, err
    assert float(FINAL.search(out).group(2)) > 0.75
    assert "backend numba, float32, threads numba 1, kernels' BLAS " in out
    ck = load_checkpoint(tmp_path / "m.npz")
    assert ck.meta["backend"] == "numba" and ck.dtype == np.float32
    rc, out, err = run(capsys, "evaluate", "--backend", "numba", "--model", tmp_path / "m.npz")
    assert rc == 0 and f"({round(ck.meta['test_acc'] * 1670)}/1670)" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["train", "--epochs", "0"], "--epochs: must be a positive integer, got '0'"),
        (["train", "--iters", "-3"], "--iters: must be a positive integer"),
        (["train", "--batch-size", "0"], "--batch-size: must be a positive integer"),
        (["train", "--hidden", "-1"], "--hidden: must be a positive integer"),
        (["train", "--lr", "0"], "--lr: must be a positive number"),
        (["train", "--lr", "nan"], "--lr: must be a positive number"),
        (["train", "--seed", "x"], "--seed: must be an integer >= 0, got 'x'"),
        (["train", "--seed", "-1"], "--seed: must be an integer >= 0, got '-1'"),
        (["gradcheck", "--seed", "-1"], "--seed: must be an integer >= 0, got '-1'"),
        (["train", "--backend", "torch"], "invalid choice: 'torch'"),
        (["train", "--dataset", "cifar10"], "invalid choice: 'cifar10'"),
        (["train", "--dtype", "float16"], "invalid choice: 'float16'"),
        (["train", "--epochs", "2", "--iters", "5"], "not allowed with argument --epochs"),
        (["train", "--backend", "numpy", "--data", "{tmp}/missing"], "missing: no such directory"),
        (["train", "--backend", "numpy", "--metrics", "{tmp}/m.txt"], "must end in .json or .csv"),
        (["train", "--backend", "numpy", "--plot", "{tmp}/p.jpg"], "must end in .png"),
        (["train", "--backend", "numpy", "--save", "{tmp}/no/dir/m.npz"], "does not exist"),
        (["train", "--backend", "numpy", "--threads", "2"], "--threads applies to --backend numba only"),
        (["train", "--backend", "numba", "--threads", "0"], "--threads must be between 1 and"),
        (["train", "--backend", "numba", "--threads", "100000"], "--threads must be between 1 and"),
        (["train", "--backend", "numpy", "--resume", "{tmp}/none.npz"], "none.npz: no such checkpoint"),
        (["gradcheck", "--batch", "0"], "--batch: must be a positive integer"),
        (["train", "--hidden", "100,x"], "--hidden: must be a positive integer or comma-separated"),
        (["train", "--hidden", "100,,5"], "got '100,,5'"),
        (["gradcheck", "--hidden", "0,3"], "--hidden: must be a positive integer"),
        (["train", "--net", "cnn"], "invalid choice: 'cnn'"),
        (["train", "--activation", "tanh"], "invalid choice: 'tanh'"),
        (
            ["train", "--weight-init", "glorot"],
            "--weight-init: must be relu, he, sigmoid, xavier or a positive",
        ),
        (
            ["train", "--weight-init", "-0.1"],
            "--weight-init: must be relu, he, sigmoid, xavier or a positive",
        ),
        (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["train", "--dropout", "1"], "--dropout: must be a number between 0 and 1"),
        (["train", "--dropout", "x"], "--dropout: must be a number between 0 and 1"),
        (["train", "--weight-decay", "-1"], "--weight-decay: must be a number >= 0"),
        (["train", "--weight-decay", "inf"], "--weight-decay: must be a number >= 0"),
        (
            ["train", "--backend", "numpy", "--net", "two-layer", "--batchnorm"],
            "--batchnorm applies to --net mlp",
        ),
        (
            ["train", "--backend", "numpy", "--net", "two-layer", "--activation", "sigmoid"],
            "--activation applies",
        ),
        (["train", "--backend", "numpy", "--hidden", "10,10"], "the two-layer net has one hidden layer"),
        (["gradcheck", "--backend", "numpy", "--hidden", "10,10"], "the two-layer net has one hidden layer"),
        (["gradcheck", "--backend", "numpy", "--batch", "9000"], "exceeds the 8330 training samples"),
        (["evaluate"], "required: --model"),
        (["download"], "required: --root"),
        (["download", "--root", "{tmp}", "--dataset", "emnist"], "invalid choice: 'emnist'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path, args, fragment):
    rc, out, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert rc == 2 and out == ""
    assert_one_error_line(err, fragment)
    assert list(tmp_path.iterdir()) == []  # nothing written


def _idx_set(root, train_shape, test_shape):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, shape in (("train", train_shape), ("test", test_shape)):
        write_idx(root / FILE_STEMS[f"{split}_images"], rng.integers(0, 256, shape))
        write_idx(root / FILE_STEMS[f"{split}_labels"], rng.integers(0, 10, shape[0]))
    return root


@pytest.mark.parametrize("command", ["train", "gradcheck"])
@pytest.mark.parametrize(
    "train_shape, test_shape, fragment",
    [
        ((0, 28, 28), (10, 28, 28), "the training set has no images"),
        ((20, 28, 28), (0, 28, 28), "the test set has no images"),
        ((20, 10, 10), (10, 28, 28), "training images have 100 pixels but test images 784"),
    ],
)
def test_bad_data_sets_exit_2_before_any_step(capsys, tmp_path, command, train_shape, test_shape, fragment):
    root = _idx_set(tmp_path / "d", train_shape, test_shape)
    rc, out, err = run(capsys, command, "--backend", "numpy", "--data", root)
    assert rc == 2 and "epoch" not in out
    assert_one_error_line(err, str(root), fragment)


def test_an_idx_header_whose_dimensions_overflow_int64_is_rejected(capsys, tmp_path):
    root = _idx_set(tmp_path / "d", (20, 28, 28), (10, 28, 28))
    # 320 * 107367629 * 536903681 = 2**64 + 64: an int64 product wraps to the 64 bytes present
    dims = np.array([320, 107367629, 536903681], dtype=">u4").tobytes()
    path = root / FILE_STEMS["train_images"]
    path.write_bytes(b"\x00\x00\x08\x03" + dims + bytes(64))
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--data", root)
    assert rc == 2
    assert_one_error_line(err, str(path))


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
        ("rng_state", [1, 2], "rng_state is not a NumPy generator state"),
        ("rng_state", {"bit_generator": "PCG64"}, "rng_state is not a NumPy generator state"),
        ("seed", -3, "seed must be an integer >= 0, got -3"),
        ("epoch", "2", "epoch must be an integer >= 0, got '2'"),
        ("seconds", float("nan"), "seconds must be a number >= 0"),
    ],
)
def test_a_checkpoint_with_a_bad_field_exits_2(capsys, tmp_path, field, value, fragment):
    from scratchprop.checkpoint import save_checkpoint

    ck = tmp_path / "m.npz"
    assert (
        run(
            capsys,
            "train",
            "--backend",
            "numpy",
            "--hidden",
            "10",
            "--iters",
            "5",
            "--seed",
            "0",
            "--save",
            ck,
            "--quiet",
        )[0]
        == 0
    )
    good = load_checkpoint(ck)
    net = good.make_net("numpy")
    save_checkpoint(ck, net, {**good.meta, field: value}, loss=good.loss)
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--resume", ck, "--iters", "5")
    assert rc == 2 and out == ""
    assert_one_error_line(err, str(ck), fragment)


def test_fashion_mnist_without_data_explains_how_to_get_it(capsys, monkeypatch, tmp_path):
    import scratchprop.data

    monkeypatch.setattr(scratchprop.data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--dataset", "fashion-mnist")
    assert rc == 2
    assert_one_error_line(err, "scratchprop download --dataset fashion-mnist", "dataset-fashion-mnist")


def copy_bundled(dest):
    dest.mkdir()
    for stem in FILE_STEMS.values():
        (dest / stem).write_bytes(gzip.decompress((BUNDLED_DIR / f"{stem}.gz").read_bytes()))
    return dest


def test_data_dir_is_used_and_corrupt_data_is_rejected(tmp_path, capsys):
    data = copy_bundled(tmp_path / "data")
    rc, out, err = run(
        capsys,
        "train",
        "--backend",
        "numpy",
        "--data",
        data,
        "--iters",
        "20",
        "--hidden",
        "10",
        "--seed",
        "0",
    )
    assert rc == 0 and f"mnist ({data}): 8330 train / 1670 test" in out
    images = data / FILE_STEMS["train_images"]
    images.write_bytes(images.read_bytes()[:5000])  # truncated IDX file
    for cmd in (["train", "--iters", "5"], ["gradcheck"]):
        rc, out, err = run(capsys, *cmd, "--backend", "numpy", "--data", data)
        assert rc == 2
        assert_one_error_line(err, str(images), "truncated")
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--data", tmp_path, "--iters", "5")
    assert rc == 2
    assert_one_error_line(err, "could not find the four mnist IDX files")


@pytest.mark.parametrize("content", [b"not a zip at all", b"PK\x03\x04truncated", b""])
def test_corrupt_checkpoint_is_rejected(tmp_path, capsys, content):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    for cmd in (["evaluate", "--model", bad], ["train", "--resume", bad, "--iters", "5"]):
        rc, out, err = run(capsys, *cmd, "--backend", "numpy")
        assert rc == 2 and out == ""
        assert_one_error_line(err, str(bad))


def test_truncated_checkpoint_is_rejected(trained, tmp_path, capsys):
    data = (trained["dir"] / "model.npz").read_bytes()
    bad = tmp_path / "cut.npz"
    bad.write_bytes(data[: len(data) // 2])
    rc, out, err = run(capsys, "evaluate", "--backend", "numpy", "--model", bad)
    assert rc == 2
    assert_one_error_line(err, str(bad), "corrupt or truncated")


def test_plot_without_matplotlib_fails_before_training(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    rc, out, err = run(
        capsys, "train", "--backend", "numpy", "--plot", tmp_path / "p.png", "--save", tmp_path / "m.npz"
    )
    assert rc == 2 and out == ""
    assert_one_error_line(err, "--plot needs matplotlib", "pip install")
    assert list(tmp_path.iterdir()) == []


def test_download_offline_exits_1_with_one_line(tmp_path, capsys):
    rc, out, err = run(
        capsys, "download", "--root", tmp_path, "--mirror", "http://127.0.0.1:9/", "--timeout", "5"
    )
    assert rc == 1
    assert_one_error_line(err, "could not download", "127.0.0.1:9", "offline")
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_info_prints_versions(capsys):
    rc, out, err = run(capsys, "info")
    assert rc == 0
    for fragment in (
        "numpy:",
        np.__version__,
        "python:",
        "numba:",
        "scipy:",
        "BLAS (numpy build):",
        "BLAS (numba kernels):",
        "numba threading layer:",
        "numba threads:",
        "CPU:",
        "CPU cores:",
        "scratchprop:",
    ):
        assert fragment in out
    import numba

    assert numba.__version__ in out


def test_help_documents_the_defaults(capsys):
    rc, out, err = run(capsys, "train", "--help")
    assert rc == 0
    text = " ".join(out.split())
    for fragment in (
        "default: 100, as the notebook",
        "default: 0.1",
        "default: numba",
        "--metrics",
        "--resume",
        "--threads",
        "--quiet",
        "--iters",
        "--epochs",
    ):
        assert fragment in text
    assert run(capsys, "--version")[1].strip() == f"scratchprop {scratchprop.__version__}"


def test_python_dash_m_trains_without_progress_bar_when_piped(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scratchprop",
            "train",
            "--backend",
            "numpy",
            "--iters",
            "100",
            "--hidden",
            "20",
            "--seed",
            "0",
            "--metrics",
            str(tmp_path / "m.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar, no warnings
    assert "epoch 2 (partial)  iter 100" in proc.stdout and "final: " in proc.stdout
    assert len(list(csv.DictReader((tmp_path / "m.csv").open()))) == 2


@pytest.mark.skipif(not SCRIPT.exists(), reason="console script not installed next to this Python")
def test_console_script(tmp_path):
    proc = subprocess.run(
        [str(SCRIPT), "train", "--backend", "numpy", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "scratchprop: error: argument --epochs: must be a positive integer, got '0'"
    ]
    proc = subprocess.run(
        [str(SCRIPT), "evaluate", "--model", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "x.npz: no such checkpoint file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_scratchprop_stays_cheap():
    code = (
        "import sys, scratchprop, scratchprop.cli; "
        "print(sorted(m for m in ('numba', 'matplotlib', 'scratchprop.numba') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.parametrize("option, name", [("--save", "m.npz"), ("--metrics", "m.csv"), ("--plot", "p.png")])
def test_an_output_that_cannot_be_written_exits_2_before_training(capsys, option, name):
    pytest.importorskip("matplotlib")
    target = f"/proc/{name}"  # a directory nobody can create files in, root included
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--iters", "5", option, target)
    assert rc == 2 and out == ""
    assert_one_error_line(err, f"{option} {target}: cannot write in /proc")
    assert ".tmp" not in err


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.mkdir(), "a directory; give a file name"),
        (lambda p: os.mkfifo(p), "not a regular file"),
    ],
)
def test_an_output_that_is_not_a_regular_file_is_refused(capsys, tmp_path, make, fragment):
    target = tmp_path / "m.npz"
    make(target)
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--iters", "5", "--save", target)
    assert rc == 2
    assert_one_error_line(err, f"--save {target}: {fragment}")


def test_a_device_is_never_replaced(capsys):
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--iters", "5", "--save", "/dev/null")
    assert rc == 2 and "not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlinked_output_is_written_through(capsys, tmp_path):
    real = tmp_path / "real.npz"
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    rc, out, err = run(
        capsys,
        "train",
        "--backend",
        "numpy",
        "--hidden",
        "10",
        "--iters",
        "5",
        "--seed",
        "0",
        "--save",
        link,
        "--quiet",
    )
    assert rc == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert load_checkpoint(real).meta["iteration"] == 5


def test_stale_temp_files_of_ours_are_removed_on_the_next_write(capsys, tmp_path):
    stale, fresh, other = (
        tmp_path / ".m.npz.abc123.tmp",
        tmp_path / ".m.npz.def456.tmp",
        tmp_path / ".other.npz.abc.tmp",
    )
    for p in (stale, fresh, other):
        p.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    rc, out, err = run(
        capsys,
        "train",
        "--backend",
        "numpy",
        "--hidden",
        "10",
        "--iters",
        "5",
        "--seed",
        "0",
        "--save",
        tmp_path / "m.npz",
        "--quiet",
    )
    assert rc == 0, err
    assert not stale.exists()  # ours, left by a killed run: gone
    assert fresh.exists()  # ours but recent: maybe another run's, kept
    assert other.exists()  # not this file's: kept


@needs_numba
@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS=0: must be a positive integer"),
        ({"NUMBA_NUM_THREADS": "abc"}, "NUMBA_NUM_THREADS=abc: must be a positive integer"),
        ({"NUMBA_THREADING_LAYER": "bogus"}, "NUMBA_THREADING_LAYER=bogus: Numba cannot start its threads"),
    ],
)
def test_a_bad_numba_environment_is_one_line(tmp_path, env, fragment):
    res = subprocess.run(
        [sys.executable, "-m", "scratchprop", "train", "--iters", "2", "--quiet"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.stderr
    assert_one_error_line(res.stderr, fragment)


@needs_numba
@pytest.mark.parametrize("delay", [0.15, 0.6, 1.5])
def test_ctrl_c_at_any_time_is_one_line_and_exit_130(tmp_path, delay):
    # start-up (imports, JIT cache), the first step, or inside a compiled kernel mid-training
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchprop", "train", "--iters", "100000", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scratchprop: interrupted"), err


def test_an_interrupt_inside_a_kernel_counts_as_ctrl_c():
    from scratchprop.cli import interrupted

    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemError("CPUDispatcher(...) returned a result with an exception set")  # noqa: B904 - implicit chaining, as Numba does
    except SystemError as exc:
        assert interrupted(exc)
    assert not interrupted(SystemError("something else")) and not interrupted(ValueError())


# ------------------------------------------------- the chapter-6 nets and the book's optimizers

MLP = ["--net", "mlp", "--hidden", "32,32", "--optimizer", "adam", "--lr", "0.002", "--batchnorm"]
MLP += ["--dropout", "0.2", "--weight-decay", "0.001", "--seed", "3"]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_train_mlp_resumes_bit_identically_and_evaluates(tmp_path, capsys, backend):
    be = ["--backend", backend]
    rc, out, err = run(capsys, "train", *be, *MLP, "--epochs", "1", "--save", tmp_path / "a.npz")
    assert rc == 0, err
    assert (
        "MultiLayerNetExtend 784-32-32-10 (relu, init relu, batchnorm, dropout 0.2, weight decay 0.001)"
        in out
    )
    assert "optimizer adam, lr 0.002, batch size 100, seed 3" in out and "(Adam steps" in out
    assert [int(e[0]) for e in EPOCH_LINE.findall(out)] == [1]
    rc, out, err = run(capsys, "train", *be, "--resume", tmp_path / "a.npz", "--iters", "30",
                       "--save", tmp_path / "b.npz")  # fmt: skip
    assert rc == 0, err
    assert "resuming" in out and "optimizer adam, lr 0.002" in out
    rc, out, err = run(capsys, "train", *be, *MLP, "--iters", "114", "--quiet", "--save", tmp_path / "c.npz")
    assert rc == 0, err
    b, c = load_checkpoint(tmp_path / "b.npz"), load_checkpoint(tmp_path / "c.npz")
    assert b.kind == "MultiLayerNetExtend" and b.meta["iteration"] == 114 and b.optimizer == "adam"
    for k in c.params:
        assert b.params[k].tobytes() == c.params[k].tobytes(), k
    assert set(b.running) == {"BatchNorm1", "BatchNorm2"}
    for name, pair in c.running.items():
        assert all(np.array_equal(u, v) for u, v in zip(b.running[name], pair))
    assert set(b.optimizer_state) == set(c.optimizer_state) and b.optimizer_state["iter"] == 114
    assert all(np.array_equal(b.optimizer_state[k], v) for k, v in c.optimizer_state.items())
    assert np.array_equal(b.loss, c.loss) and b.meta["np_random_state"] == c.meta["np_random_state"]
    rc, out, err = run(capsys, "evaluate", *be, "--model", tmp_path / "b.npz")
    assert rc == 0, err
    assert "MultiLayerNetExtend 784-32-32-10" in out and "optimizer adam" in out
    assert f"({round(b.meta['test_acc'] * 1670)}/1670)" in out


def test_train_plain_mlp_with_sigmoid_and_sgd(tmp_path, capsys):
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--activation", "sigmoid", "--hidden", "20",
                       "--weight-init", "0.1", "--epochs", "1", "--seed", "0", "--save", tmp_path / "m.npz")  # fmt: skip
    assert rc == 0, err
    assert "MultiLayerNet 784-20-10 (sigmoid, init std 0.1)" in out and "optimizer sgd, lr 0.1" in out
    ck = load_checkpoint(tmp_path / "m.npz")
    assert ck.kind == "MultiLayerNet" and ck.config["weight_init_std"] == 0.1 and ck.optimizer == "sgd"


def test_resume_of_an_mlp_rejects_mismatches(tmp_path, capsys):
    ck = tmp_path / "m.npz"
    args = ["train", "--backend", "numpy", "--iters", "3", "--quiet", "--save", ck, *MLP[:-2], "--seed", "0"]
    assert run(capsys, *args)[0] == 0
    base = ["train", "--backend", "numpy", "--resume", ck, "--iters", "2"]
    for extra, fragment in (
        (["--optimizer", "sgd"], "--optimizer sgd differs from adam"),
        (["--net", "two-layer"], "--net two-layer differs"),
        (["--hidden", "32"], "--hidden 32 differs from the checkpoint"),
        (["--activation", "sigmoid"], "--activation sigmoid differs"),
        (["--weight-init", "xavier"], "--weight-init xavier differs"),
        (["--weight-decay", "0.5"], "--weight-decay 0.5 differs"),
        (["--dropout", "0.3"], "--dropout 0.3 differs from the checkpoint"),
        (["--dtype", "float32"], "--dtype float32 differs"),
    ):
        rc, out, err = run(capsys, *base, *extra)
        assert rc == 2 and out == "", (extra, err)
        assert_one_error_line(err, fragment, str(ck))
    for extra in (["--weight-init", "he"], ["--hidden", "32,32"], ["--batchnorm"], ["--optimizer", "adam"]):
        assert run(capsys, *base, *extra, "--quiet")[0] == 0, extra  # the same values are fine
    plain = tmp_path / "plain.npz"
    assert run(capsys, "train", "--backend", "numpy", "--net", "mlp", "--hidden", "8", "--iters", "2",
               "--quiet", "--save", plain)[0] == 0  # fmt: skip
    rc, out, err = run(
        capsys, "train", "--backend", "numpy", "--resume", plain, "--batchnorm", "--iters", "1"
    )
    assert rc == 2
    assert_one_error_line(err, "--batchnorm differs from the checkpoint", "(no batchnorm)")
    two = tmp_path / "two.npz"
    assert run(capsys, "train", "--backend", "numpy", "--hidden", "8", "--iters", "2", "--quiet",
               "--save", two)[0] == 0  # fmt: skip
    rc, out, err = run(
        capsys, "train", "--backend", "numpy", "--resume", two, "--activation", "relu", "--iters", "1"
    )
    assert rc == 2
    assert_one_error_line(err, "--activation does not apply to the checkpoint", "two-layer")


def test_resume_of_a_version_1_checkpoint_continues_with_sgd(tmp_path, capsys):
    import json

    ck = tmp_path / "m.npz"
    args = ["--backend", "numpy", "--hidden", "10", "--seed", "0", "--quiet"]
    assert run(capsys, "train", *args, "--iters", "5", "--save", ck)[0] == 0
    with np.load(ck) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    for key in ("net", "optimizer", "optimizer_state", "np_random_state"):
        meta.pop(key, None)
    meta["format_version"] = 1
    with open(ck, "wb") as fh:  # as the previous version wrote it
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    assert run(capsys, "train", "--backend", "numpy", "--resume", ck, "--iters", "5", "--save", ck)[0] == 0
    assert run(capsys, "train", *args, "--iters", "10", "--save", tmp_path / "full.npz")[0] == 0
    a, b = load_checkpoint(ck), load_checkpoint(tmp_path / "full.npz")
    assert a.meta["format_version"] == 2 and a.optimizer == "sgd"
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params)
    rc, out, err = run(
        capsys, "train", "--backend", "numpy", "--resume", ck, "--optimizer", "adam", "--iters", "1"
    )
    assert rc == 2
    assert_one_error_line(err, "--optimizer adam differs from sgd")


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_gradcheck_mlp_with_batchnorm_and_dropout_passes(capsys, backend):
    rc, out, err = run(capsys, "gradcheck", "--backend", backend, "--net", "mlp", "--hidden", "6,5",
                       "--batchnorm", "--dropout", "0.3", "--weight-decay", "0.1", "--seed", "0")  # fmt: skip
    assert rc == 0, out + err
    first = out.splitlines()[0]
    assert first.startswith("gradient check: MultiLayerNetExtend 784-6-5-10 (relu, init relu, batchnorm")
    assert first.endswith(", seed 0") and "gamma1: " in out and "beta2: " in out
    assert "kinks: found by comparing every ReLU layer's mask" in out and "gradient check PASSED" in out
