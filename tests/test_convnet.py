"""SimpleConvNet and DeepConvNet: the book's shapes, keys and layers, gradients, accuracy, pickle files, backends."""

import json
import os
import pickle

import numpy as np
import pytest

from scratchprop import DeepConvNet, SimpleConvNet, tolerances
from scratchprop.numpy import Convolution, Dropout, Pooling

TINY_CONV = {"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1}
# DeepConvNet's pads (conv 4 has 2), two 3x3 filters each: 8x8 -> 8 -> 8 -> 4 -> 4 -> 6 -> 3 -> 3 -> 3 -> 1
TINY_DEEP = [{"filter_num": 2, "filter_size": 3, "pad": p, "stride": 1} for p in (1, 1, 1, 2, 1, 1)]


def tiny_simple(seed=0, **kw):
    return SimpleConvNet(
        (1, 8, 8), TINY_CONV, hidden_size=5, output_size=3, weight_init_std=0.3, seed=seed, **kw
    )


def tiny_deep(seed=0, **kw):
    return DeepConvNet((1, 8, 8), *TINY_DEEP, hidden_size=4, output_size=3, seed=seed, **kw)


def batch(n, seed=0, shape=(1, 8, 8), classes=3):
    r = np.random.default_rng(seed)
    return r.standard_normal((n, *shape)), r.integers(0, classes, n)


# --- structure -------------------------------------------------------------------------------------


def test_simple_convnet_is_the_books():
    net = SimpleConvNet(seed=1)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {
        "W1": (30, 1, 5, 5),
        "b1": (30,),
        "W2": (4320, 100),
        "b2": (100,),
        "W3": (100, 10),
        "b3": (10,),
    }
    assert list(net.layers) == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2"]
    assert type(net.layers["Conv1"]) is Convolution and type(net.last_layer).__name__ == "SoftmaxWithLoss"
    pool = net.layers["Pool1"]
    assert (pool.pool_h, pool.pool_w, pool.stride, pool.pad) == (2, 2, 2, 0)
    assert net.layers["Conv1"].W is net.params["W1"] and net.layers["Affine2"].b is net.params["b3"]
    assert net.param_owner["W2"] == ("Affine1", "W")
    assert abs(np.std(net.params["W2"]) - 0.01) < 2e-4  # weight_init_std
    assert not np.any(net.params["b1"])


def test_deep_convnet_is_the_books():
    net = DeepConvNet(seed=2)
    shapes = {k: v.shape for k, v in net.params.items()}
    filters = [(16, 1), (16, 16), (32, 16), (32, 32), (64, 32), (64, 64)]
    for i, (fn, c) in enumerate(filters, 1):
        assert shapes[f"W{i}"] == (fn, c, 3, 3) and shapes[f"b{i}"] == (fn,)
    assert shapes["W7"] == (64 * 4 * 4, 50) and shapes["W8"] == (50, 10)
    assert list(net.layers) == [
        "Conv1", "Relu1", "Conv2", "Relu2", "Pool1",
        "Conv3", "Relu3", "Conv4", "Relu4", "Pool2",
        "Conv5", "Relu5", "Conv6", "Relu6", "Pool3",
        "Affine1", "Relu7", "Dropout1", "Affine2", "Dropout2",
    ]  # fmt: skip
    assert net.layers["Conv4"].pad == 2 and net.layers["Conv3"].pad == 1
    assert all(type(net.layers[f"Dropout{i}"]) is Dropout for i in (1, 2))
    assert net.layers["Dropout2"].dropout_ratio == 0.5
    assert [net.param_owner[f"W{i}"][0] for i in range(1, 9)] == [
        *(f"Conv{i}" for i in range(1, 7)),
        "Affine1",
        "Affine2",
    ]


def test_deep_convnet_he_init():
    # the book's hard-coded fan-ins, which the defaults reproduce
    fan_in = [1 * 3 * 3, 16 * 3 * 3, 16 * 3 * 3, 32 * 3 * 3, 32 * 3 * 3, 64 * 3 * 3, 64 * 4 * 4, 50]
    net = DeepConvNet(seed=3)
    for i, n in enumerate(fan_in, 1):
        W = net.params[f"W{i}"]
        tol = 0.05 if W.size > 10000 else 0.2
        assert abs(np.std(W) / np.sqrt(2.0 / n) - 1) < tol, (i, np.std(W))


def test_forward_shapes_and_dtypes():
    x, t = batch(3, shape=(1, 28, 28), classes=10)
    for net in (SimpleConvNet(seed=0), DeepConvNet(seed=0)):
        assert net.predict(x).shape == (3, 10)
        assert np.isfinite(net.loss(x, t))
    net32 = tiny_simple(dtype=np.float32)
    assert all(v.dtype == np.float32 for v in net32.params.values())
    x, _ = batch(2)
    assert net32.predict(x.astype(np.float32)).dtype == np.float32


def test_non_square_and_odd_sizes_work():
    # the book sizes both axes from input_dim[1], and int(30 * 12.5 * 12.5) rows for a 25x25 conv output
    net = SimpleConvNet((2, 9, 7), {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1}, 6, 3, seed=0)
    assert net.params["W2"].shape == (4 * 3 * 2, 6)  # conv 7x5, pooled 3x2
    x, t = batch(2, shape=(2, 9, 7))
    assert net.predict(x).shape == (2, 3)
    net = SimpleConvNet((1, 29, 29), seed=0)  # conv 25x25, pooled 12x12
    assert net.params["W2"].shape == (30 * 12 * 12, 100)
    assert net.predict(batch(1, shape=(1, 29, 29))[0]).shape == (1, 10)
    deep = DeepConvNet((3, 20, 24), seed=0)  # W7's rows follow the input: 64 * 3 * 3
    assert deep.params["W7"].shape == (64 * 3 * 3, 50)
    assert abs(np.std(deep.params["W1"]) / np.sqrt(2.0 / 27) - 1) < 0.2
    assert deep.predict(batch(2, shape=(3, 20, 24))[0]).shape == (2, 10)


def test_weight_init_std_names():
    net = SimpleConvNet(
        (1, 12, 12), {"filter_num": 20, "filter_size": 3, "pad": 1, "stride": 1}, 400, 10, "he", seed=4
    )
    assert abs(np.std(net.params["W2"]) / np.sqrt(2.0 / (20 * 6 * 6)) - 1) < 0.05


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: SimpleConvNet((1, 28)), ValueError, r"SimpleConvNet: input_dim must be 3 sizes"),
        (
            lambda: SimpleConvNet(conv_param={"filter_num": 3, "filter_size": 3}),
            ValueError,
            r"conv_param lacks 'pad', 'stride'",
        ),
        (
            lambda: SimpleConvNet(conv_param={**TINY_CONV, "stride": 0}),
            ValueError,
            r"conv_param\['stride'\] must be an integer >= 1",
        ),
        (
            lambda: SimpleConvNet((1, 3, 3), {**TINY_CONV, "filter_size": 5}),
            ValueError,
            r"SimpleConvNet: the input is too small for Conv1",
        ),
        (lambda: SimpleConvNet((1, 3, 3), TINY_CONV), ValueError, r"too small for Pool1"),
        (lambda: DeepConvNet((1, 2, 2)), ValueError, r"DeepConvNet: the input is too small for Pool3"),
        (lambda: DeepConvNet(conv_param_3=[]), TypeError, r"DeepConvNet: conv_param_3 must be a dict"),
        (lambda: SimpleConvNet(dtype=np.int32), TypeError, r"dtype must be a floating-point type"),
        (lambda: SimpleConvNet(weight_init_std="lecun"), ValueError, r"weight_init_std must be"),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_config_rebuilds_the_net():
    for net in (tiny_simple(), tiny_deep(), SimpleConvNet(seed=0), DeepConvNet(seed=0)):
        cfg = json.loads(json.dumps(net.config()))
        again = type(net)(**cfg, seed=0)
        assert {k: v.shape for k, v in again.params.items()} == {k: v.shape for k, v in net.params.items()}
        for k in net.params:
            np.testing.assert_array_equal(again.params[k], net.params[k])


# --- gradients -------------------------------------------------------------------------------------


def agree(g, ng, rtol=1e-5, floor=1e-3):
    """Every backprop entry within ``rtol`` of the central difference (relative, above ``floor``)."""
    for k in ng:
        assert g[k].shape == ng[k].shape, k
        err = np.abs(g[k] - ng[k]) / np.maximum(floor, np.abs(ng[k]))
        assert float(np.max(err)) < rtol, (k, float(np.max(err)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_simple_convnet_gradient_matches_numerical(backend):
    net = tiny_simple(seed=0, backend=backend)
    x, t = batch(2)
    g = net.gradient(x, t)
    assert sorted(g) == sorted(net.params)
    assert max(float(np.max(np.abs(v))) for v in g.values()) > 0.1  # not a dead net
    agree(g, net.numerical_gradient(x, t))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_deep_convnet_gradient_matches_numerical(backend):
    # numerical_gradient replays np.random for every loss, so both see the same Dropout masks
    net = tiny_deep(seed=0, backend=backend)
    x, t = batch(2)
    np.random.seed(0)
    ng = net.numerical_gradient(x, t)
    np.random.seed(0)
    g = net.gradient(x, t)
    assert sum(int(np.count_nonzero(v)) for v in g.values()) > 100
    agree(g, ng)


def test_deep_convnet_loss_trains_by_default():
    net = tiny_deep(seed=1)
    x, t = batch(4)
    np.random.seed(5)
    default = net.loss(x, t)
    np.random.seed(5)
    assert net.loss(x, t, train_flg=True) == default
    np.random.seed(5)
    assert net.loss(x, t, train_flg=False) != default
    # the test-mode loss draws nothing
    state = np.random.get_state()[1].copy()
    net.loss(x, t, train_flg=False)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    assert tiny_simple().loss(*batch(2)) == tiny_simple().loss(*batch(2), train_flg=False)


# --- accuracy --------------------------------------------------------------------------------------


def test_accuracy_counts_the_last_partial_batch():
    net = tiny_simple(seed=2)
    x, _ = batch(150, seed=3)
    t = np.argmax(net.predict(x), axis=1)  # every prediction right
    assert net.accuracy(x, t) == 1.0  # the book: 100 / 150, the last 50 skipped
    for bs in (1, 7, 100, 150, 1000):
        assert net.accuracy(x, t, batch_size=bs) == 1.0
    wrong = (t + 1) % 3
    wrong[:10] = t[:10]
    assert net.accuracy(x, wrong, batch_size=64) == 10 / 150
    onehot = np.eye(3)[wrong]
    assert net.accuracy(x, onehot, batch_size=64) == 10 / 150
    assert net.accuracy(x, wrong[:, None]) == 10 / 150


def test_accuracy_is_in_test_mode():
    net = tiny_deep(seed=3)
    x, t = batch(30, seed=4)
    state = np.random.get_state()[1].copy()
    want = np.mean(np.argmax(net.predict(x, train_flg=False), axis=1) == t)
    assert net.accuracy(x, t, batch_size=8) == want
    np.testing.assert_array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((np.ones((0, 1, 8, 8)), np.zeros(0, int)), ValueError, "SimpleConvNet.accuracy: the batch is empty"),
        ((np.ones((2, 64)), np.zeros(2, int)), ValueError, r"x must be 4-D"),
        ((np.ones((2, 1, 8, 8)), np.zeros(2, int), 0), ValueError, "batch_size must be a positive integer"),
        ((np.ones((2, 1, 8, 8)), np.array([0, 3])), ValueError, r"labels must lie in \[0, 3\)"),
    ],
)
def test_accuracy_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        tiny_simple().accuracy(*args)


# --- pickle files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tiny_simple, tiny_deep])
def test_save_and_load_params_round_trip(tmp_path, make):
    path = tmp_path / "params.pkl"
    net = make(seed=5)
    net.save_params(str(path))
    assert os.listdir(tmp_path) == ["params.pkl"]  # no temporary file left
    with open(path, "rb") as f:  # the book's format: a plain dict of arrays
        saved = pickle.load(f)
    assert type(saved) is dict and list(saved) == list(net.params)
    other = make(seed=6)
    arrays = {k: other.params[k] for k in other.params}
    other.load_params(str(path))
    for k in net.params:
        np.testing.assert_array_equal(other.params[k], net.params[k])
        assert other.params[k] is arrays[k]  # loaded in place: the layers still hold them
    x, _ = batch(3)
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_load_params_reads_the_books_pickle(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    book = tiny_simple(seed=7)
    params = book.params
    with open("params.pkl", "wb") as f:  # as the book's save_params writes it
        pickle.dump({k: v for k, v in params.items()}, f)
    net = tiny_simple(seed=8)
    net.load_params()  # the book's default file name
    x, t = batch(4)
    assert net.loss(x, t) == book.loss(x, t)
    net.save_params()
    assert sorted(os.listdir(tmp_path)) == ["params.pkl"]


def test_load_params_errors_leave_the_net_alone(tmp_path):
    net = tiny_simple(seed=9)
    before = {k: v.copy() for k, v in net.params.items()}
    path = tmp_path / "partial.pkl"
    with open(path, "wb") as f:
        pickle.dump({"W1": np.zeros_like(net.params["W1"])}, f)
    with pytest.raises(ValueError, match="SimpleConvNet: parameters lack 'b1'"):
        net.load_params(path)
    with open(path, "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(TypeError, match="SimpleConvNet.load_params: .* holds a list, not a dict"):
        net.load_params(path)
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])
    net.load_params({k: 2 * v for k, v in before.items()})  # a mapping, as checkpoints pass
    np.testing.assert_array_equal(net.params["W3"], 2 * before["W3"])


# --- backends --------------------------------------------------------------------------------------


def close(a, b, scale=10):
    tol = tolerances.equivalence(np.float64)
    size = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=0, atol=scale * (tol["rtol"] * size + tol["atol"]))


@pytest.mark.parametrize("make", [tiny_simple, tiny_deep])
def test_numba_backend_equals_numpy(make):
    ref, got = make(seed=10), make(seed=10, backend="numba")
    assert got.backend_name == "numba"
    for name in ("Relu1", "Conv1", "Pool1"):
        assert type(got.layers[name]).__module__.startswith("scratchprop._numba")
    for k in ref.params:
        np.testing.assert_array_equal(got.params[k], ref.params[k])
    x, t = batch(5, seed=11)
    close(got.predict(x), ref.predict(x))
    np.random.seed(12)
    a = ref.loss(x, t)
    np.random.seed(12)
    close(got.loss(x, t), a)
    np.random.seed(13)
    ga = ref.gradient(x, t)
    np.random.seed(13)
    gb = got.gradient(x, t)
    for k in ga:
        close(gb[k], ga[k])
    assert got.accuracy(x, t, batch_size=2) == ref.accuracy(x, t, batch_size=2)


def test_numba_conv_layers_subclass_the_reference_and_share_its_helpers():
    import scratchprop.numba as NB
    import scratchprop.numpy as NP

    for name in ("Convolution", "Pooling"):
        assert issubclass(getattr(NB, name), getattr(NP, name)) and getattr(NB, name) is not getattr(NP, name)
        assert getattr(NB, name).__module__ == "scratchprop._numba_" + ("conv" if name[0] == "C" else "pool")
    for name in ("im2col", "col2im", "conv_output_size"):
        assert getattr(NB, name) is getattr(NP, name)
    for name in ("Convolution", "Pooling", "im2col", "col2im", "conv_output_size"):
        assert name in NB.__all__ and name in NP.__all__
    assert Pooling is NP.Pooling


@pytest.mark.parametrize("make", [tiny_simple, tiny_deep])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_conv_relu_pairs_fused_give_the_layers_own_bits(make, dtype):
    # a Numba net runs each Conv + Relu pair in one pass (forward_relu / backward_relu); walking the
    # layers one by one must give the same bits, and the Relu the same mask
    import scratchprop.numba as NB

    fused, plain = make(seed=3, backend="numba", dtype=dtype), make(seed=3, backend="numba", dtype=dtype)
    assert sum(hasattr(layer, "forward_relu") for layer in fused.layers.values()) >= 1
    x, t = batch(4, seed=5)
    x = x.astype(dtype)

    def by_hand(net):
        y, layers = x, list(net.layers.values())
        for layer in layers:
            y = layer.forward(y, True) if isinstance(layer, NB.Dropout) else layer.forward(y)
        net.last_layer.forward(y, t)
        d = net.last_layer.backward(1)
        for layer in reversed(layers):
            d = layer.backward(d)
        return net._grads()

    np.random.seed(6)
    got = fused.gradient(x, t)
    assert fused.layers["Conv1"]._relu is fused.layers["Relu1"]  # the fused passes ran
    np.random.seed(6)
    want = by_hand(plain)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    np.testing.assert_array_equal(fused.layers["Relu1"].mask, plain.layers["Relu1"].mask)
    # the mask read (or set) after the forward: the pair's backward takes the Relu's own
    np.random.seed(6)
    fused.loss(x, t, train_flg=True)
    fused.layers["Relu1"].mask = fused.layers["Relu1"].mask | True  # every input blocked
    np.random.seed(6)
    g = fused.gradient(x, t)  # a fresh forward: fused again, the same gradient
    for k in want:
        np.testing.assert_array_equal(g[k], want[k])
    d = np.ones_like(fused.layers["Conv1"].forward_relu(x, fused.layers["Relu1"]))
    fused.layers["Relu1"].mask = np.ones(d.shape, bool)
    fused.layers["Conv1"].backward_relu(d, fused.layers["Relu1"])
    assert not fused.layers["Conv1"].db.any()  # the mask that was set counted


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_deep_convnet_runs_its_convolutions_in_one_region_each_way(monkeypatch, dtype):
    # consecutive Conv groups chain: one region forward, one backward, the layers' own bits
    from scratchprop import threads

    chained, plain = (
        tiny_deep(seed=3, backend="numba", dtype=dtype),
        tiny_deep(seed=3, backend="numba", dtype=dtype),
    )
    x, t = batch(9, seed=5)
    x = x.astype(dtype)
    regions, run = [], threads.run_chunks
    monkeypatch.setattr(threads, "run_chunks", lambda *a: regions.append(a[1]) or run(*a))
    np.random.seed(6)
    got = chained.gradient(x, t)
    assert len(regions) == 2 and chained.layers["Conv1"]._relu is chained.layers["Relu1"]
    regions.clear()
    monkeypatch.setattr(type(plain.layers["Conv1"]), "chain", None)  # every Conv group on its own
    np.random.seed(6)
    want = plain.gradient(x, t)
    assert len(regions) == 12  # six Conv groups, each way
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    np.testing.assert_array_equal(chained.predict(x), plain.predict(x))


def test_numba_chain_runs_what_it_queued_before_a_path_reads_values():
    # inside a chain (a net's own calls) outputs are filled at its end; a layer's path that reads
    # one (its Relu's own backward, a pooled Relu's output made when first read) runs the queue first
    import scratchprop.numba as NB
    from scratchprop import _numba_conv

    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 2, 8, 8))
    W1, W2 = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal((4, 4, 3, 3))

    def layers():
        c1, c2 = NB.Convolution(W1, np.zeros(4), pad=1), NB.Convolution(W2, np.ones(4), pad=1)
        return c1, NB.Relu(), c2, NB.Relu(), NB.Pooling(2, 2, stride=2)

    c1, r1, c2, r2, p = layers()
    want_mid = r2.forward(c2.forward(r1.forward(c1.forward(x))))
    want_out = p.forward(want_mid)
    dmid = rng.standard_normal(want_mid.shape)
    want_dx = c1.backward(r1.backward(c2.backward(r2.backward(dmid))))
    c1, r1, c2, r2, p = layers()
    with _numba_conv.chain():
        out = c2.forward_relu_pool(c1.forward_relu(x, r1), r2, p)
        mask = r2.mask  # the Conv + ReLU output of c2, made from c1's output queued until now
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(mask, want_mid <= 0)
    c2.forward_relu(c1.forward_relu(x, r1), r2)
    r1.mask = r1.mask.copy()  # the pair's state changed: its backward takes the Relu's own
    with _numba_conv.chain():
        d = c2.backward_relu(dmid, r2)
        dx = c1.backward_relu(d, r1)
    np.testing.assert_array_equal(dx, want_dx)


def test_numba_chain_of_two_batch_sizes_runs_each_with_its_own_chunks():
    import scratchprop.numba as NB
    from scratchprop import _numba_conv

    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    xs = [rng.standard_normal((n, 2, 6, 6)) for n in (3, 9)]  # the first has fewer chunks
    want = [NB.Convolution(W, b, pad=1).forward(x) for x in xs]
    layers = [NB.Convolution(W, b, pad=1) for _ in xs]
    with _numba_conv.chain():
        got = [layer.forward(x) for layer, x in zip(layers, xs)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
