"""scratchprop.checkpoint: round trips, atomic writes, and clean errors for bad files."""

import json
import os

import numpy as np
import pytest

from scratchprop import TwoLayerNet
from scratchprop._atomic import atomic_write
from scratchprop.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def make_net(dtype=np.float64, sizes=(12, 5, 3)):
    net = TwoLayerNet(*sizes, weight_init_std=0.5, backend="numpy", dtype=dtype, seed=1)
    net.params["b1"][...] = np.arange(sizes[1])  # non-zero biases survive the round trip
    return net


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bit_exact(tmp_path, dtype):
    net = make_net(dtype)
    meta = {
        "epoch": 3,
        "iteration": 99,
        "history": [{"epoch": 1, "loss": float("nan")}],
        "seed": 2**40,
        "lr": 0.1,
        "np_scalar": np.float32(0.5),
    }
    path = save_checkpoint(tmp_path / "m.npz", net, meta, loss=[2.3, 1.5, 0.9])
    ck = load_checkpoint(path)
    for k in net.params_key:
        assert ck.params[k].dtype == np.dtype(dtype)
        assert np.array_equal(ck.params[k], net.params[k])
    assert ck.sizes == (12, 5, 3) and ck.dtype == np.dtype(dtype)
    assert ck.meta["epoch"] == 3 and ck.meta["seed"] == 2**40 and ck.meta["np_scalar"] == 0.5
    assert np.isnan(ck.meta["history"][0]["loss"])
    assert ck.meta["sizes"] == [12, 5, 3] and ck.meta["dtype"] == np.dtype(dtype).name
    assert ck.meta["backend"] == "numpy" and ck.meta["scratchprop_version"]
    assert np.array_equal(ck.loss, [2.3, 1.5, 0.9])
    x = np.random.default_rng(0).standard_normal((4, 12)).astype(dtype)
    assert np.array_equal(ck.make_net("numpy").predict(x), net.predict(x))
    assert leftovers(tmp_path) == []


def test_plain_npz_readable_without_scratchprop(tmp_path):
    save_checkpoint(tmp_path / "m.npz", make_net(), {"epoch": 1})
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert {"W1", "b1", "W2", "b2", "meta", "loss"} <= set(z.files)
        assert json.loads(str(z["meta"]))["epoch"] == 1


def test_name_without_npz_suffix_is_kept(tmp_path):
    path = save_checkpoint(tmp_path / "model", make_net())
    assert path == tmp_path / "model" and (tmp_path / "model").is_file()
    assert not (tmp_path / "model.npz").exists()
    load_checkpoint(tmp_path / "model")


def test_overwrite_is_atomic_and_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save_checkpoint(path, make_net(), {"epoch": 1})
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(CheckpointError, match="m.npz.*No space left"):
        save_checkpoint(path, make_net(), {"epoch": 2})
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert load_checkpoint(path).meta["epoch"] == 1


def test_atomic_write_removes_temp_on_exception(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert not target.exists() and leftovers(tmp_path) == []
    with atomic_write(target, "w") as fh:
        fh.write("done")
    assert target.read_text() == "done"
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def save_raw(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def good_meta():
    return np.array(json.dumps({"format": "scratchprop-checkpoint"}))


def params(D=6, H=4, C=3, dtype=np.float64):
    return {
        "W1": np.zeros((D, H), dtype),
        "b1": np.zeros(H, dtype),
        "W2": np.zeros((H, C), dtype),
        "b2": np.zeros(C, dtype),
    }


@pytest.mark.parametrize(
    "case, pattern",
    [
        ("missing", "no such checkpoint file"),
        ("directory", "not a regular file"),
        ("text", "not a checkpoint"),
        ("empty", "not a checkpoint"),
        ("no_keys", "missing W1, b1, W2, b2, meta"),
        ("no_meta", "missing meta"),
        ("bad_meta", "corrupt metadata"),
        ("foreign_meta", "format tag"),
        ("int_dtype", "dtype int64"),
        ("mixed_dtype", "mixed dtypes"),
        ("bad_b1", "inconsistent parameter shapes"),
        ("bad_W2", "inconsistent parameter shapes"),
        ("ndim", "must be W1 \\(D, H\\)"),
        ("pickled", "corrupt or truncated"),
        ("sizes_meta", "disagree"),
    ],
)
def test_bad_files_raise_checkpoint_error_naming_the_file(tmp_path, case, pattern):
    path = tmp_path / f"{case}.npz"
    p = params()
    if case == "directory":
        path.mkdir()
    elif case == "text":
        path.write_text("W1,b1\n1,2\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no_keys":
        save_raw(path, other=np.zeros(3))
    elif case == "no_meta":
        save_raw(path, **p)
    elif case == "bad_meta":
        save_raw(path, meta=np.array("{not json"), **p)
    elif case == "foreign_meta":
        save_raw(path, meta=np.array(json.dumps({"format": "other"})), **p)
    elif case == "int_dtype":
        p["W1"] = p["W1"].astype(np.int64)
        save_raw(path, meta=good_meta(), **p)
    elif case == "mixed_dtype":
        p["W2"] = p["W2"].astype(np.float32)
        save_raw(path, meta=good_meta(), **p)
    elif case == "bad_b1":
        p["b1"] = np.zeros(5)
        save_raw(path, meta=good_meta(), **p)
    elif case == "bad_W2":
        p["W2"] = np.zeros((5, 3))
        save_raw(path, meta=good_meta(), **p)
    elif case == "ndim":
        p["W1"] = np.zeros(24)
        save_raw(path, meta=good_meta(), **p)
    elif case == "pickled":
        save_raw(path, meta=good_meta(), **{**p, "W1": np.array([{"a": 1}], dtype=object)})
    elif case == "sizes_meta":
        save_raw(
            path, meta=np.array(json.dumps({"format": "scratchprop-checkpoint", "sizes": [6, 5, 3]})), **p
        )
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_and_corrupted_archives_are_rejected(tmp_path):
    full = save_checkpoint(
        tmp_path / "full.npz", make_net(sizes=(50, 20, 10)), {"epoch": 1}, loss=np.ones(100)
    ).read_bytes()
    for n in (4, 30, 200, len(full) // 2, len(full) - 10, len(full) - 1):
        path = tmp_path / f"cut{n}.npz"
        path.write_bytes(full[:n])
        with pytest.raises(CheckpointError, match=f"cut{n}.npz"):
            load_checkpoint(path)
    # flip bytes inside W1's payload: the CRC check catches it
    data = bytearray(full)
    start = full.index(b"W1.npy") + 300
    data[start : start + 8] = b"\xff" * 8
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="flipped.npz"):
        load_checkpoint(path)
