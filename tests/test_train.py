"""scratchprop.train: the notebook's loop from Python, epochs, resume, metrics, progress bar."""

import csv
import io
import json

import numpy as np
import pytest

from scratchprop import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet, get_backend
from scratchprop.checkpoint import load_checkpoint, save_checkpoint
from scratchprop.data import load_mnist
from scratchprop.optimizers import Adam
from scratchprop.progress import ProgressBar
from scratchprop.train import (
    TrainState,
    epoch_end,
    evaluate,
    iters_per_epoch,
    make_optimizer,
    train,
    write_metrics,
)


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


def small_net(hidden=16, dtype=np.float64, seed=0):
    return TwoLayerNet(784, hidden, 10, backend="numpy", dtype=dtype, seed=seed)


def test_epoch_arithmetic_follows_the_book():
    assert iters_per_epoch(60000, 100) == 600
    assert iters_per_epoch(8330, 100) == pytest.approx(83.3)
    assert iters_per_epoch(50, 100) == 1  # max(train_size / batch_size, 1)
    assert [epoch_end(k, 600) for k in range(4)] == [0, 600, 1200, 1800]
    ends = [epoch_end(k, 83.3) for k in range(1, 11)]
    assert ends == [84, 167, 250, 334, 417, 500, 584, 667, 750, 833]  # averages 83.3 per epoch


def test_train_epochs_rows_and_accuracy(mnist):
    train_data, test_data = mnist
    net = small_net(hidden=50, seed=1)
    seen = []
    result = train(
        net,
        train_data,
        test_data,
        epochs=3,
        batch_size=100,
        lr=0.1,
        seed=1,
        on_epoch=lambda row, st: seen.append((row["epoch"], st.iteration)),
    )
    st = result.state
    assert [r["epoch"] for r in st.history] == [1, 2, 3] and seen == [(1, 84), (2, 167), (3, 250)]
    assert st.iteration == 250 == len(st.loss) and st.epoch == 3 and result.iterations == 250
    assert not any(r["partial"] for r in st.history)
    assert st.history[0]["loss"] == pytest.approx(np.mean(st.loss[:84]))
    assert st.history[2]["loss"] == pytest.approx(np.mean(st.loss[167:250]))
    assert st.history[-1]["test_acc"] > 0.8
    assert st.history[-1]["seconds"] > 0 and result.samples == 25000 and result.samples_per_second > 0
    # the rows' accuracies are those of the final net on the whole sets
    assert st.history[-1]["train_acc"] == net.accuracy(train_data[0].astype(np.float64), train_data[1])
    assert st.history[-1]["test_acc"] == evaluate(net, *test_data)[1]


def test_iters_ending_mid_epoch_adds_a_partial_row(mnist):
    result = train(small_net(hidden=10), *mnist, iters=100, seed=0)
    rows = result.state.history
    assert [(r["epoch"], r["iteration"], r["partial"]) for r in rows] == [(1, 84, False), (2, 100, True)]
    assert result.state.epoch == 1
    assert rows[1]["loss"] == pytest.approx(np.mean(result.state.loss[84:100]))


@pytest.mark.parametrize("split", ["epochs", "iters"])
def test_resume_through_metadata_equals_an_uninterrupted_run(mnist, split):
    full_net = small_net()
    full = train(full_net, *mnist, iters=200, seed=5).state
    net = small_net()
    first = train(net, *mnist, **({"epochs": 1} if split == "epochs" else {"iters": 120}), seed=5).state
    meta = json.loads(json.dumps(first.to_meta()))  # as a checkpoint stores it
    state = TrainState.from_meta(meta, np.asarray(first.loss))
    resumed = small_net(seed=99)
    resumed.load_params(net.params)
    train(resumed, *mnist, iters=200 - state.iteration, state=state)
    for k in full_net.params_key:
        assert np.array_equal(resumed.params[k], full_net.params[k])
    assert state.loss == full.loss
    complete = [r for r in state.history if not r["partial"]]
    assert [(r["epoch"], r["iteration"], r["train_acc"]) for r in complete] == [
        (r["epoch"], r["iteration"], r["train_acc"]) for r in full.history if not r["partial"]
    ]


def test_float32_training(mnist):
    net = small_net(dtype=np.float32)
    result = train(net, *mnist, epochs=3, seed=0)
    assert net.params["W1"].dtype == np.float32
    assert result.state.history[-1]["test_acc"] > 0.8


def test_train_argument_errors(mnist):
    with pytest.raises(ValueError, match="exactly one"):
        train(small_net(), *mnist, epochs=1, iters=5)
    with pytest.raises(ValueError, match="exactly one"):
        train(small_net(), *mnist)
    with pytest.raises(ValueError, match="positive"):
        train(small_net(), *mnist, epochs=0)
    state = TrainState(seed=0, batch_size=50, train_size=len(mnist[0][0]))
    with pytest.raises(ValueError, match="batch size 50"):
        train(small_net(), *mnist, iters=1, batch_size=100, state=state)
    with pytest.raises(ValueError, match="lacks"):
        TrainState.from_meta({"seed": 0})


def test_evaluate_matches_net_and_is_chunk_independent(mnist):
    (x, t), _ = mnist
    net = small_net()
    train(net, *mnist, iters=50, seed=0)
    loss, acc, correct = evaluate(net, x, t)
    x64 = x.astype(np.float64)
    assert acc == net.accuracy(x64, t) and correct == round(acc * len(x))
    assert loss == pytest.approx(net.loss(x64, t), rel=1e-12)
    assert evaluate(net, x, t, chunk=997)[1:] == (acc, correct)
    onehot = np.eye(10)[t]
    assert evaluate(net, x, onehot)[1] == acc


ROWS = [
    {
        "epoch": 1,
        "iteration": 84,
        "loss": 2.0,
        "train_acc": 0.5,
        "test_acc": 0.25,
        "seconds": 1.5,
        "partial": False,
    },
    {
        "epoch": 2,
        "iteration": 100,
        "loss": float("nan"),
        "train_acc": 0.75,
        "test_acc": 0.5,
        "seconds": 2.0,
        "partial": True,
    },
]


def test_write_metrics_json_and_csv(tmp_path):
    write_metrics(tmp_path / "m.json", ROWS, {"lr": 0.1})
    doc = json.loads((tmp_path / "m.json").read_text())  # strict JSON: NaN became null
    assert doc["run"] == {"lr": 0.1} and doc["epochs"][0] == ROWS[0]
    assert doc["epochs"][1]["loss"] is None
    write_metrics(tmp_path / "m.CSV", ROWS)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "m.CSV").read_text())))
    assert list(rows[0]) == ["epoch", "iteration", "loss", "train_acc", "test_acc", "seconds", "partial"]
    assert rows[0]["epoch"] == "1" and float(rows[0]["test_acc"]) == 0.25 and rows[1]["partial"] == "1"
    with pytest.raises(ValueError, match="json or .csv"):
        write_metrics(tmp_path / "m.txt", ROWS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.CSV", "m.json"]


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_draws_only_on_a_terminal():
    plain = io.StringIO()
    bar = ProgressBar(stream=plain)
    for i in range(1, 11):
        bar.update(i, 10, loss=0.5)
    bar.clear()
    assert plain.getvalue() == ""
    tty = FakeTTY()
    bar = ProgressBar(stream=tty, min_interval=0.0, width=10)
    bar.update(5, 10, loss=0.25, prefix="epoch 1 ")
    assert "\r" in tty.getvalue() and "epoch 1 [=====>    ] 5/10" in tty.getvalue()
    assert "loss 0.2500" in tty.getvalue()
    bar.update(10, 10)
    assert "[==========] 10/10 100%" in tty.getvalue()
    bar.clear()
    assert tty.getvalue().endswith("\r")
    assert ProgressBar(stream=FakeTTY(), enabled=False).enabled is False


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float32_images_give_the_bits_of_converting_first(mnist, backend, dtype):
    # batches are gathered from the float32 set and promoted by the net's first product
    (x, t), (xt, tt) = mnist
    nets = [TwoLayerNet(784, 16, 10, backend=backend, dtype=dtype, seed=0) for _ in range(2)]
    for net, data in zip(nets, ((x, xt), (x.astype(dtype), xt.astype(dtype)))):
        train(net, (data[0], t), (data[1], tt), iters=30, batch_size=32, lr=0.1, seed=3)
    for k in nets[0].params:
        assert nets[0].params[k].tobytes() == nets[1].params[k].tobytes(), k


def test_train_reports_where_the_time_went(mnist):
    train_data, test_data = mnist
    result = train(small_net(), train_data, test_data, epochs=2, batch_size=100, lr=0.1, seed=0)
    assert result.eval_seconds > 0 and result.step_seconds > 0 and result.other_seconds >= 0
    parts = result.step_seconds + result.eval_seconds + result.prepare_seconds + result.other_seconds
    assert parts == pytest.approx(result.seconds, rel=1e-9)
    split = result.split()
    assert split.startswith("train_step ") and ", evaluation " in split and ", other " in split
    assert sum(int(p.split()[-1].rstrip("%")) for p in split.split(", ")) in (99, 100, 101)


# ------------------------------------------------- any net, any optimizer


def ext_net(backend="numpy", seed=0, dtype=np.float64):
    """A small MultiLayerNetExtend with batchnorm and dropout (dropout draws from np.random)."""
    return MultiLayerNetExtend(
        784,
        [16, 16],
        10,
        use_dropout=True,
        dropout_ratio=0.2,
        use_batchnorm=True,
        weight_decay_lambda=0.01,
        backend=backend,
        dtype=dtype,
        seed=seed,
    )


def running_stats(net):
    return {
        name: (layer.running_mean, layer.running_var)
        for name, layer in net.layers.items()
        if hasattr(layer, "running_mean")
    }


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adam_batchnorm_dropout_resume_through_a_checkpoint_is_bit_identical(mnist, backend, tmp_path):
    kw = {"batch_size": 200, "optimizer": "adam", "optimizer_param": {"lr": 0.002}, "eval_samples": 300}
    full_net = ext_net(backend)
    full = train(full_net, *mnist, iters=60, seed=4, **kw).state  # epoch 1 ends at 42: one full row
    net = ext_net(backend)
    first = train(net, *mnist, iters=35, seed=4, **kw).state
    path = save_checkpoint(
        tmp_path / "m.npz", net, first.to_meta(), loss=first.loss, optimizer_state=first.optimizer_state
    )
    np.random.seed(12345)  # whatever happens in between: the resumed run restores np.random
    ck = load_checkpoint(path)
    resumed = ck.make_net(backend)
    state = TrainState.from_meta(ck.meta, ck.loss, optimizer_state=ck.optimizer_state)
    assert state.optimizer == "adam" and state.optimizer_state["iter"] == 35
    result = train(resumed, *mnist, iters=25, state=state, batch_size=200, eval_samples=300)
    assert type(result.optimizer) is get_backend(backend).Adam
    for k in full_net.params:
        assert resumed.params[k].tobytes() == full_net.params[k].tobytes(), k
    for name, (mean, var) in running_stats(full_net).items():
        assert np.array_equal(running_stats(resumed)[name][0], mean)
        assert np.array_equal(running_stats(resumed)[name][1], var)
    assert state.loss == full.loss and state.iteration == 60
    key = ("epoch", "iteration", "loss", "train_acc", "test_acc", "partial")
    assert [[r[k] for k in key] for r in state.history[1:]] == [[r[k] for k in key] for r in full.history]
    assert state.np_random_state == full.np_random_state
    for key, value in full.optimizer_state.items():
        assert np.array_equal(state.optimizer_state[key], value), key


def test_a_net_without_dropout_leaves_np_random_alone(mnist):
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    state = train(MultiLayerNet(784, [8], 10, seed=0), *mnist, iters=5, seed=0, optimizer="momentum").state
    assert np.array_equal(np.random.get_state()[1], before) and state.np_random_state is None
    assert state.optimizer == "momentum" and set(state.optimizer_state) >= {"lr", "momentum", "v/W1"}


def test_the_recorded_loss_is_the_gradient_pass_with_weight_decay(mnist):
    (x, t), _ = mnist
    net = MultiLayerNet(784, [12, 12], 10, weight_decay_lambda=0.1, seed=0)
    before = MultiLayerNet(784, [12, 12], 10, weight_decay_lambda=0.1, seed=0)
    state = train(net, *mnist, iters=3, batch_size=50, seed=9, optimizer="sgd", lr=0.05).state
    mask = np.random.default_rng(9).choice(len(x), 50)  # the run's first batch
    expected = before.loss(x[mask].astype(np.float64), t[mask], train_flg=True)
    assert state.loss[0] == pytest.approx(float(expected), rel=1e-12)
    assert before.weight_decay() > 0.1  # the decay is part of it


def test_two_layer_sgd_keeps_the_fused_step_and_other_optimizers_take_gradients(mnist, monkeypatch):
    calls = []
    real = TwoLayerNet.train_step
    monkeypatch.setattr(TwoLayerNet, "train_step", lambda self, *a: calls.append(1) or real(self, *a))
    a, b = small_net(), small_net()
    train(a, *mnist, iters=10, seed=1)  # default: SGD, lr 0.1
    assert len(calls) == 10
    train(b, *mnist, iters=10, seed=1, optimizer="SGD", optimizer_param={"lr": 0.1})
    assert len(calls) == 20 and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    c = small_net()
    result = train(c, *mnist, iters=10, seed=1, optimizer="adagrad")
    assert len(calls) == 20 and type(result.optimizer).__name__ == "AdaGrad" and result.optimizer.lr == 0.01
    assert result.state.loss[-1] < result.state.loss[0]


def test_optimizer_arguments_and_mismatches(mnist):
    state = train(small_net(), *mnist, iters=3, seed=0, optimizer="rmsprop").state
    with pytest.raises(ValueError, match="optimizer 'rmsprop'; got 'adam'"):
        train(small_net(), *mnist, iters=1, state=state, optimizer="adam")
    with pytest.raises(ValueError, match="disagree"):
        train(small_net(), *mnist, iters=1, lr=0.1, optimizer_param={"lr": 0.2})
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(small_net(), *mnist, iters=1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="optimizer object"):
        train(small_net(), *mnist, iters=1, optimizer=Adam(), lr=0.1)
    # continuing a state: a new lr overrides the saved one, the rest is kept
    result = train(small_net(), *mnist, iters=1, state=state, lr=0.005)
    assert result.optimizer.lr == 0.005 and result.optimizer.decay_rate == 0.99
    assert make_optimizer(small_net(), "sgd").lr == 0.1 and make_optimizer(small_net(), "adam").lr == 0.001


def test_eval_samples_evaluates_the_first_samples(mnist):
    (x, t), (xt, tt) = mnist
    net = MultiLayerNet(784, [10], 10, seed=0)
    row = train(net, *mnist, iters=5, seed=0, eval_samples=100).state.history[-1]
    assert row["train_acc"] == net.accuracy(x[:100].astype(np.float64), t[:100])
    assert row["test_acc"] == net.accuracy(xt[:100].astype(np.float64), tt[:100])
