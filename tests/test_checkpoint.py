"""scratchprop.checkpoint: round trips, atomic writes, and clean errors for bad files."""

import json
import os

import numpy as np
import pytest

from scratchprop import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from scratchprop._atomic import atomic_write
from scratchprop.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scratchprop.train import train


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


# ------------------------------------------------- every net kind, format version 2


def trained(kind, backend="numpy", optimizer="adam"):
    """A net of ``kind`` after a few training steps (running statistics, optimizer state)."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((40, 12)), rng.integers(0, 3, 40)
    if kind == "TwoLayerNet":
        net = TwoLayerNet(12, 5, 3, weight_init_std=0.5, backend=backend, seed=1)
    elif kind == "MultiLayerNet":
        net = MultiLayerNet(12, [6, 5], 3, activation="sigmoid", weight_init_std=0.3, backend=backend, seed=1)
    else:
        net = MultiLayerNetExtend(
            12, [6, 5], 3, weight_decay_lambda=0.1, use_dropout=True, dropout_ratio=0.3,
            use_batchnorm=True, backend=backend, seed=1,
        )  # fmt: skip
    state = train(net, (x, t), (x, t), iters=4, batch_size=8, seed=0, optimizer=optimizer).state
    return net, state


@pytest.mark.parametrize("kind", ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_every_net_kind_round_trips(tmp_path, kind, backend):
    net, state = trained(kind, backend)
    path = save_checkpoint(
        tmp_path / "m.npz", net, state.to_meta(), loss=state.loss, optimizer_state=state.optimizer_state
    )
    ck = load_checkpoint(path)
    assert ck.kind == kind and ck.meta["net"] == kind and ck.meta["format_version"] == 2
    assert ck.optimizer == "adam" and ck.optimizer_state["iter"] == 4
    assert set(ck.params) == set(net.params)
    for k in net.params:
        assert ck.params[k].tobytes() == net.params[k].tobytes(), k
    assert set(ck.optimizer_state) == set(state.optimizer_state)
    for k, v in state.optimizer_state.items():
        assert np.array_equal(ck.optimizer_state[k], v), k
    if kind != "TwoLayerNet":
        assert ck.config == net.config() and ck.sizes == (12, 6, 5, 3)
    stats = {
        n: (la.running_mean, la.running_var) for n, la in net.layers.items() if hasattr(la, "running_mean")
    }
    assert (
        set(ck.running) == set(stats) == ({"BatchNorm1", "BatchNorm2"} if kind.endswith("Extend") else set())
    )
    for name, (mean, var) in stats.items():
        assert np.array_equal(ck.running[name][0], mean) and np.array_equal(ck.running[name][1], var)
    with np.load(path) as z:
        names = set(z.files)
    assert "opt/m/W1" in names and "opt/v/b2" in names
    if kind.endswith("Extend"):
        assert {"running_mean/BatchNorm1", "running_var/BatchNorm2", "gamma1", "beta2"} <= names
    x = np.random.default_rng(1).standard_normal((7, 12))
    for other in ("numpy", "numba"):
        again = ck.make_net(other)
        assert type(again).__name__ == kind
        np.testing.assert_allclose(again.predict(x), net.predict(x), rtol=1e-12, atol=1e-13)


def test_an_untrained_batchnorm_net_has_no_running_statistics(tmp_path):
    net = MultiLayerNetExtend(12, [6], 3, use_batchnorm=True, seed=0)
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.npz", net))
    assert ck.running == {} and ck.optimizer_state is None
    assert ck.make_net().layers["BatchNorm1"].running_mean is None


def test_a_version_1_file_still_loads(tmp_path):
    net = make_net()
    meta = {
        "format": "scratchprop-checkpoint",
        "format_version": 1,
        "sizes": [12, 5, 3],
        "lr": 0.1,
        "epoch": 2,
    }
    path = save_raw(tmp_path / "v1.npz", meta=np.array(json.dumps(meta)), loss=np.ones(3), extra=np.zeros(2),
                    **{k: net.params[k] for k in net.params_key})  # fmt: skip
    ck = load_checkpoint(path)
    assert ck.kind == "TwoLayerNet" and ck.optimizer == "sgd" and ck.optimizer_state is None
    assert ck.sizes == (12, 5, 3) and ck.running == {} and ck.meta["epoch"] == 2
    x = np.random.default_rng(0).standard_normal((4, 12))
    assert np.array_equal(ck.make_net().predict(x), net.predict(x))


def v2_file(tmp_path, change):
    """An Extend checkpoint after Adam steps, rewritten with ``change(arrays, meta)`` applied."""
    net, state = trained("MultiLayerNetExtend")
    path = save_checkpoint(
        tmp_path / "m.npz", net, state.to_meta(), loss=state.loss, optimizer_state=state.optimizer_state
    )
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    path.unlink()
    return save_raw(path, meta=np.array(json.dumps(meta)), **arrays)


@pytest.mark.parametrize(
    "change, pattern",
    [
        (lambda a, m: m.update(format_version=3), "format version 3 by a newer scratchprop"),
        (lambda a, m: m.update(net="ConvNet"), "unknown net 'ConvNet'"),
        (lambda a, m: m.pop("config"), "needs its config"),
        (lambda a, m: m["config"].update(activation="tanh"), "bad MultiLayerNetExtend config"),
        (lambda a, m: a.pop("gamma2"), "parameters missing: gamma2"),
        (lambda a, m: a.update(W2=np.zeros((6, 4))), "inconsistent parameter shapes for the config"),
        (lambda a, m: a.update(W9=np.zeros(3)), "unexpected member 'W9'"),
        (lambda a, m: a.update({"running_mean/BatchNorm1": np.zeros(5)}), "running_mean/BatchNorm1 must be"),
        (lambda a, m: a.pop("running_var/BatchNorm2"), "BatchNorm2 has one running statistic"),
        (lambda a, m: a.update({"running_mean/BatchNorm7": np.zeros(5)}), "no BatchNorm layer 'BatchNorm7'"),
        (lambda a, m: a.update({"opt/m/W7": np.zeros(3)}), "'W7' is not a parameter"),
        (lambda a, m: a.update({"opt/m/W1": np.zeros((2, 2))}), "opt/m/W1 must be a float array"),
        (lambda a, m: [a.pop(k) for k in list(a) if k.startswith("opt/")], "lacks its m arrays"),
        (lambda a, m: [a.pop(f"opt/{s}/b1") for s in "mv"], "optimizer state m covers"),
        (lambda a, m: a.pop("opt/v/b1"), "name different parameters"),
        (lambda a, m: m["optimizer_state"].update(beta1=2.0), "does not fit adam"),
        (lambda a, m: m["optimizer_state"].pop("iter"), "does not fit adam"),
        (lambda a, m: m.pop("optimizer"), "without the optimizer's name"),
        (lambda a, m: m.update(sizes=[12, 6, 3]), "disagree with the config"),
    ],
)
def test_bad_version_2_files_raise_one_line_naming_the_file(tmp_path, change, pattern):
    path = v2_file(tmp_path, change)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
