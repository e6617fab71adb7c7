"""The command line with the chapter-7/8 convnets: ``--net simple-convnet`` and ``--net deep-convnet``
trained, checkpointed, resumed, evaluated and gradient-checked, and the options that do not fit them."""

import re

import numpy as np
import pytest
from test_cli import EPOCH_LINE, FINAL, assert_one_error_line, needs_numba, run

import scratchprop
from scratchprop._cli_nets import narrow_conv_config
from scratchprop.checkpoint import load_checkpoint
from scratchprop.data import FILE_STEMS, load_mnist, write_idx

SIMPLE = (
    "SimpleConvNet 1x28x28 (conv 30 5x5, pad 0, stride 1, pool 2x2, hidden 100, 10 outputs, init std 0.01)"
)
DEEP = (
    "DeepConvNet 1x28x28 (conv 16-16-32-32-64-64 3x3, pad 1-1-1-2-1-1, stride 1, pool 2x2, hidden 50, "
    "10 outputs, init he, dropout 0.5)"
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The first 100 training and 50 test digits of the bundled set as IDX files: an epoch of batch
    20 is 5 steps."""
    root = tmp_path_factory.mktemp("digits")
    (x, t), (xt, tt) = load_mnist(normalize=False, flatten=False)
    for split, images, labels in (("train", x[:100], t[:100]), ("test", xt[:50], tt[:50])):
        write_idx(root / FILE_STEMS[f"{split}_images"], images[:, 0])
        write_idx(root / FILE_STEMS[f"{split}_labels"], labels.astype(np.uint8))
    return root


@pytest.mark.parametrize(
    "net, backend, label",
    [
        ("simple-convnet", "numpy", SIMPLE),
        pytest.param("simple-convnet", "numba", SIMPLE, marks=needs_numba),
        ("deep-convnet", "numpy", DEEP),
    ],
)
def test_a_convnet_trains_resumes_bit_identically_and_evaluates(
    digits, tmp_path, capsys, net, backend, label
):
    args = ["--backend", backend, "--data", digits, "--net", net, "--batch-size", "20", "--seed", "0"]
    args += ["--optimizer", "adam"]
    rc, out, err = run(capsys, "train", *args, "--epochs", "1", "--save", tmp_path / "a.npz")
    assert rc == 0, err
    assert out.startswith(label + " | ") and "mnist (" in out and "100 train / 50 test" in out
    assert "optimizer adam, lr 0.001, batch size 20, seed 0, 1 epochs (an epoch is 5 iterations)" in out
    epochs = EPOCH_LINE.findall(out)
    assert [int(e[0]) for e in epochs] == [1] and epochs[0][2] == "5"
    assert 0 < float(epochs[0][3]) < 10  # the epoch's mean loss, near ln 10 at the start
    a = load_checkpoint(tmp_path / "a.npz")
    kind = {"simple-convnet": "SimpleConvNet", "deep-convnet": "DeepConvNet"}[net]
    fresh = getattr(scratchprop, kind)(seed=0)
    assert a.kind == kind and a.config == fresh.config() and a.input_shape == (1, 28, 28)
    assert a.sizes == (784, fresh.hidden_size, 10) and a.meta["iteration"] == 5 and a.optimizer == "adam"
    assert set(a.params) == set(fresh.params) and all(np.isfinite(v).all() for v in a.params.values())
    assert not np.array_equal(a.params["W1"], fresh.params["W1"])  # trained: not the seed's weights
    assert np.isfinite(a.loss).all() and len(a.loss) == 5

    rc, out, err = run(capsys, "train", "--backend", backend, "--data", digits, "--resume", tmp_path / "a.npz",
                       "--iters", "3", "--save", tmp_path / "b.npz")  # fmt: skip
    assert rc == 0, err
    assert out.startswith(label + " | ") and "resuming" in out and "optimizer adam, lr 0.001" in out
    rc, out, err = run(capsys, "train", *args, "--iters", "8", "--quiet", "--save", tmp_path / "c.npz")
    assert rc == 0, err
    b, c = load_checkpoint(tmp_path / "b.npz"), load_checkpoint(tmp_path / "c.npz")
    assert b.kind == kind and b.meta["iteration"] == 8 and b.config == c.config
    for k in c.params:
        assert b.params[k].tobytes() == c.params[k].tobytes(), k
    assert b.optimizer_state["iter"] == 8 and set(b.optimizer_state) == set(c.optimizer_state)
    assert all(np.array_equal(b.optimizer_state[k], v) for k, v in c.optimizer_state.items())
    assert np.array_equal(b.loss, c.loss)
    if net == "deep-convnet":  # Dropout's masks continued where they stopped
        assert b.meta["np_random_state"] is not None
        assert b.meta["np_random_state"] == c.meta["np_random_state"]

    rc, out, err = run(
        capsys, "evaluate", "--backend", backend, "--data", digits, "--model", tmp_path / "b.npz"
    )
    assert rc == 0, err
    assert f"{label}, float64" in out and "optimizer adam" in out
    rebuilt = b.make_net("numpy")
    assert all(rebuilt.params[k].tobytes() == c.params[k].tobytes() for k in c.params)
    (_, _), (xt, tt) = load_mnist(digits, flatten=False)
    correct = round(rebuilt.accuracy(xt, tt) * 50)
    assert f"accuracy {correct / 50:.4f} ({correct}/50)" in out.splitlines()[2]
    assert correct == round(b.meta["test_acc"] * 50)


def test_a_convnet_has_the_cli_defaults_and_prints_finite_final_numbers(digits, capsys):
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--data", digits, "--net", "deep-convnet",
                       "--iters", "2", "--batch-size", "10", "--seed", "1")  # fmt: skip
    assert rc == 0, err
    assert "optimizer sgd, lr 0.1, batch size 10, seed 1, 2 iterations" in out  # as for every net
    train_acc, test_acc = (float(v) for v in FINAL.search(out).groups())
    assert 0 <= train_acc <= 1 and 0 <= test_acc <= 1
    loss = float(re.search(r"epoch loss ([\d.]+)", out).group(1))
    assert 0 < loss < 10 and "nan" not in out


@pytest.mark.parametrize("net", ["simple-convnet", "deep-convnet"])
def test_gradcheck_of_a_convnet_passes_in_seconds(capsys, net):
    rc, out, err = run(capsys, "gradcheck", "--backend", "numpy", "--net", net, "--seed", "0")
    assert rc == 0, out + err
    kind = {"simple-convnet": "SimpleConvNet", "deep-convnet": "DeepConvNet"}[net]
    first = out.splitlines()[0]
    assert first.startswith(f"gradient check: {kind} 1x28x28 (conv 2")
    assert "hidden 5, 10 outputs" in first and first.endswith("first 3 mnist training samples, "
                                                              "backend numpy, float64, seed 0")  # fmt: skip
    small = getattr(scratchprop, kind)(**narrow_conv_config(net), seed=0)
    assert f"{2 * sum(v.size for v in small.params.values())} loss evaluations" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in ([k] for k in small.params)]
    assert [r[0] for r in rows if r[-1] == "yes"] == list(small.params)  # every parameter, in the table
    assert "every ReLU layer's mask and every Pooling layer's arg_max" in out
    assert "parameters restored bit-exactly: yes" in out and out.rstrip().endswith("gradient check PASSED")


@pytest.mark.parametrize("net", ["simple-convnet", "deep-convnet"])
@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--hidden", "50"], "--hidden applies to --net two-layer and mlp, not to the {net} net"),
        (["--activation", "relu"], "--activation applies to --net mlp, not to the {net} net"),
        (["--batchnorm"], "--batchnorm applies to --net mlp, not to the {net} net"),
        (["--dropout", "0.5"], "--dropout applies to --net mlp, not to the {net} net"),
        (["--weight-decay", "0.1"], "--weight-decay applies to --net mlp, not to the {net} net"),
        (["--weight-init", "he"], "--weight-init applies to --net mlp, not to the {net} net"),
    ],
)
@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_an_mlp_option_with_a_convnet_is_one_line(capsys, tmp_path, command, net, extra, fragment):
    rc, out, err = run(capsys, command, "--backend", "numpy", "--net", net, *extra, "--data", tmp_path / "no")
    assert rc == 2 and out == ""  # before the data is read: --data names no directory
    assert_one_error_line(err, fragment.format(net=net))


def test_resume_and_evaluate_of_a_convnet_reject_what_does_not_fit(digits, tmp_path, capsys):
    ck = tmp_path / "s.npz"
    base = ["--backend", "numpy", "--data", digits]
    assert run(capsys, "train", *base, "--net", "simple-convnet", "--iters", "1", "--batch-size", "10",
               "--quiet", "--save", ck)[0] == 0  # fmt: skip
    for extra, fragment in (
        (["--net", "mlp"], f"--net mlp differs from the checkpoint {ck} (simple-convnet)"),
        (["--net", "deep-convnet"], f"--net deep-convnet differs from the checkpoint {ck} (simple-convnet)"),
        (["--hidden", "100"], f"--hidden does not apply to the checkpoint {ck} (a simple-convnet net)"),
        (["--dropout", "0.5"], f"--dropout does not apply to the checkpoint {ck} (a simple-convnet net)"),
        (["--optimizer", "adam"], "--optimizer adam differs from sgd"),
    ):
        rc, out, err = run(capsys, "train", *base, "--resume", ck, "--iters", "1", *extra)
        assert rc == 2 and out == "", (extra, err)
        assert_one_error_line(err, fragment)
    assert run(capsys, "train", *base, "--resume", ck, "--net", "simple-convnet", "--iters", "1",
               "--quiet")[0] == 0  # fmt: skip
    small = tmp_path / "small"
    small.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("test", 10)):
        write_idx(small / FILE_STEMS[f"{split}_images"], rng.integers(0, 256, (n, 20, 20)).astype(np.uint8))
        write_idx(small / FILE_STEMS[f"{split}_labels"], rng.integers(0, 10, n).astype(np.uint8))
    fragment = f"checkpoint {ck} is a SimpleConvNet for 1x28x28 images and 10 classes but the mnist data has "
    for args in (["evaluate", "--model", ck], ["train", "--resume", ck, "--iters", "1"]):
        rc, out, err = run(capsys, *args, "--backend", "numpy", "--data", small)
        assert rc == 2 and out == ""
        assert_one_error_line(err, fragment + "1x20x20 images and 10 classes")
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--data", small, "--net", "deep-convnet",
                       "--iters", "1", "--batch-size", "5", "--quiet")  # fmt: skip
    assert rc == 0, err  # the convnets take the data's image size: 20x20 here
    for split, n in (("train", 20), ("test", 10)):
        write_idx(small / FILE_STEMS[f"{split}_images"], rng.integers(0, 256, (n, 4, 4)).astype(np.uint8))
    rc, out, err = run(capsys, "train", "--backend", "numpy", "--data", small, "--net", "simple-convnet")
    assert rc == 2 and "epoch" not in out
    assert_one_error_line(
        err, "SimpleConvNet: the input is too small for Conv1: a 5x5 window does not fit 4x4"
    )


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m["config"]["conv_param"].update(filter_num=0), "bad SimpleConvNet config"),
        (lambda m: m["config"].update(hidden_size=7), "inconsistent parameter shapes for the config"),
        (lambda m: m.update(sizes=[784, 50, 10]), "metadata sizes [784, 50, 10] disagree with the config"),
    ],
)
def test_a_convnet_checkpoint_that_disagrees_with_its_config_is_rejected(
    digits, tmp_path, capsys, change, fragment
):
    import json

    ck = tmp_path / "s.npz"
    assert run(capsys, "train", "--backend", "numpy", "--data", digits, "--net", "simple-convnet",
               "--iters", "1", "--batch-size", "10", "--quiet", "--save", ck)[0] == 0  # fmt: skip
    with np.load(ck) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    assert meta["sizes"] == [784, 100, 10] and meta["config"]["input_dim"] == [1, 28, 28]
    change(meta)
    with open(ck, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    rc, out, err = run(capsys, "evaluate", "--backend", "numpy", "--data", digits, "--model", ck)
    assert rc == 2 and out == ""
    assert_one_error_line(err, str(ck), fragment)
