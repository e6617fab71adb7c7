"""``LayerNet.gradient`` in one kernel call (``_numba_mlp``): the layers' own bits, or their path."""

import numpy as np
import pytest

import scratchprop.numba as NB
from scratchprop import MultiLayerNet, MultiLayerNetExtend, threads
from scratchprop import _numba_mlp as fused

rng = np.random.default_rng(3)

# every attribute a layer's forward and backward leave (the ones the layer has)
ATTRS = (
    "x",
    "original_x_shape",
    "dW",
    "db",
    "input_shape",
    "batch_size",
    "xc",
    "xn",
    "std",
    "running_mean",
    "running_var",
    "dgamma",
    "dbeta",
    "mask",
    "y",
    "t",
    "loss",
)


def pair(cls=MultiLayerNetExtend, sizes=(12, [10, 10, 10], 5), **kw):
    return cls(*sizes, backend="numba", seed=2, **kw), cls(*sizes, backend="numba", seed=2, **kw)


def same(a, b):
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b, True)
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))


def assert_same_nets(a, b):
    for name, lb in list(b.layers.items()) + [("last_layer", b.last_layer)]:
        la = a.layers[name] if name != "last_layer" else a.last_layer
        for attr in ATTRS:
            if hasattr(lb, attr):
                assert same(getattr(la, attr), getattr(lb, attr)), (name, attr)
    for k in b.params:
        assert same(a.params[k], b.params[k]), k


def steps(a, b, x, t, n=3):
    """``n`` gradients of ``a`` (fused) and ``b`` (layer by layer) from the same draws."""
    for k in range(n):
        np.random.seed(k)
        assert fused.gradient(a, x, t)  # the path under test is taken (what a.gradient runs first)
        ga = a._grads()
        state_a = np.random.get_state()[1].copy()
        np.random.seed(k)
        gb = b.layered_gradient(x, t)
        assert np.array_equal(state_a, np.random.get_state()[1])  # the same draws, as many
        assert list(ga) == list(gb)
        for key in gb:
            assert same(ga[key], gb[key]), key
        assert_same_nets(a, b)
        for net, g in ((a, ga), (b, gb)):  # and the same next step
            for key in g:
                net.params[key] -= 0.1 * g[key]


NETS = {
    "extend": dict(use_batchnorm=True, use_dropout=True, dropout_ration=0.3),
    "batchnorm": dict(use_batchnorm=True),
    "dropout": dict(use_dropout=True),
    "plain": {},
    "decay": dict(use_batchnorm=True, weight_decay_lambda=0.1),
}


@pytest.mark.parametrize("kw", NETS.values(), ids=NETS.keys())
@pytest.mark.parametrize("batch", [1, 9, 100])
def test_fused_gradient_is_the_layers_own(kw, batch):
    a, b = pair(**kw)
    x, t = rng.random((batch, 12)), rng.integers(0, 5, batch)
    steps(a, b, x, t)


@pytest.mark.parametrize(
    "sizes, dtype, xdtype, onehot",
    [
        ((12, [7, 11], 5), np.float64, np.float64, True),  # unequal widths
        ((784, [100, 100], 10), np.float64, np.float32, False),  # float32 images, float64 weights
        ((12, [10, 10], 5), np.float32, np.float32, False),
        ((784, [100], 10), np.float32, np.float32, True),
    ],
)
def test_fused_gradient_shapes_and_dtypes(sizes, dtype, xdtype, onehot):
    kw = dict(use_batchnorm=True, use_dropout=True, dtype=dtype)
    a, b = pair(sizes=sizes, **kw)
    x = rng.random((64, sizes[0])).astype(xdtype)
    t = rng.integers(0, sizes[2], 64)
    t = np.eye(sizes[2])[t] if onehot else t
    steps(a, b, x, t)


def test_nets_it_does_not_cover_take_the_layers():
    x, t = rng.random((8, 12)), rng.integers(0, 5, 8)
    sig = MultiLayerNetExtend(12, [10, 10], 5, activation="sigmoid", use_batchnorm=True, backend="numba")
    assert not fused.gradient(sig, x, t)
    net = MultiLayerNet(12, [10], 5, backend="numba")
    assert not fused.gradient(net, x.reshape(8, 3, 4), t)  # not 2-D: the Affine flattens it
    assert not fused.gradient(net, x.astype(np.int64), t)
    with threads.one_thread_blas():  # a convnet's hold: its own rules for the products
        assert not fused.gradient(net, x, t) or not threads.can_hold_blas()
    ro = x.copy()
    ro.flags.writeable = False  # another Numba type: the layers take it
    assert not fused.gradient(net, ro, t)

    class Mine(MultiLayerNet):
        def predict(self, x, train_flg=False):  # what a subclass's gradient must run
            return 2 * super().predict(x, train_flg)

    assert not fused.gradient(Mine(12, [10], 5, backend="numba"), x, t)
    net.layers["Affine1"].W = net.layers["Affine1"].W.astype(np.float32)  # mixed dtypes
    assert not fused.gradient(net, x, t)
    assert net.gradient(x, t)["W1"].shape == (12, 10)  # and the net still trains, layer by layer


def test_one_compile_for_any_depth_and_deeper_nets_take_the_layers():
    x, t = rng.random((16, 12)), rng.integers(0, 5, 16)
    compiled = []
    for depth in (1, 2, 3, fused._K.GROUPS):
        assert fused.gradient(MultiLayerNetExtend(12, [6] * depth, 5, backend="numba"), x, t)
        compiled.append(len(fused._K.gradient.signatures))
    assert len(set(compiled)) == 1  # no depth compiled the kernel again
    deep = MultiLayerNetExtend(12, [6] * (fused._K.GROUPS + 1), 5, backend="numba")
    assert not fused.gradient(deep, x, t)
    assert deep.gradient(x, t)["W1"].shape == (12, 6)


def test_arrays_a_kernel_made_take_the_kernel():
    # Numba boxes arrays with a float64 dtype equal to NumPy's but not the same object
    a, b = pair(**NETS["extend"])
    copied = np.dtype("f8", copy=True)
    for net in (a, b):
        for name in ("Affine1", "Affine2"):
            layer = net.layers[name]
            layer.b = net.params["b" + name[-1]] = layer.b.view(copied)
    x, t = rng.random((9, 12)).view(copied), rng.integers(0, 5, 9)
    steps(a, b, x, t, n=1)


def test_a_generator_other_than_mt19937_takes_the_layers(monkeypatch):
    a, b = pair(**NETS["extend"])
    x, t = rng.random((9, 12)), rng.integers(0, 5, 9)
    monkeypatch.setattr(np.random.mtrand._rand, "_bit_generator", np.random.PCG64(1))
    assert not fused.gradient(a, x, t)


def test_a_bad_target_raises_before_any_layer_changes():
    a, b = pair(**NETS["extend"])
    x = rng.random((9, 12))
    a.gradient(x, rng.integers(0, 5, 9))
    before = {n: (ly.running_mean.copy(), ly.xc.copy()) for n, ly in a.layers.items() if hasattr(ly, "xc")}
    state = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="SoftmaxWithLoss"):
        a.gradient(x, np.full(9, 7))  # labels outside [0, 5)
    assert np.array_equal(state, np.random.get_state()[1])  # no draws
    for n, (mean, xc) in before.items():
        assert np.array_equal(a.layers[n].running_mean, mean) and np.array_equal(a.layers[n].xc, xc)
    with pytest.raises(ValueError, match="SoftmaxWithLoss") as layered:
        b.layered_gradient(x, np.full(9, 7))  # the layers' path: the same error, after its forward
    with pytest.raises(ValueError) as ours:
        a.gradient(x, np.full(9, 7))
    assert str(ours.value) == str(layered.value)


def test_arrays_a_caller_holds_are_never_overwritten():
    net = MultiLayerNetExtend(12, [10, 10], 5, backend="numba", use_batchnorm=True, use_dropout=True)
    x, t = rng.random((30, 12)), rng.integers(0, 5, 30)
    held = []
    for k in range(6):
        grads = net.gradient(x + k, t)  # the book's loop: the last step's grads held during the call
        layers = net.layers
        kept = [grads[key] for key in grads] + [net.last_layer.y]
        kept += [
            layers["Affine2"].x,
            layers["BatchNorm1"].xc,
            layers["BatchNorm2"].xn,
            layers["BatchNorm1"].std,
        ]
        kept += [
            layers["Activation_function1"].mask,
            layers["Dropout2"].mask,
            layers["BatchNorm2"].running_var,
        ]
        held.append([(a, a.copy()) for a in kept])
    for step in held:
        for a, copy in step:
            assert np.array_equal(a, copy)


def test_a_slice_of_a_kept_array_is_never_overwritten():
    net = MultiLayerNetExtend(12, [10, 10], 5, backend="numba", use_batchnorm=True, use_dropout=True)
    x, t = rng.random((30, 12)), rng.integers(0, 5, 30)
    net.gradient(x, t)
    part = net.layers["BatchNorm2"].xc[1:3]  # its base is the flat array the kernel writes
    mask = net.layers["Dropout1"].mask[:, 0]
    copies = part.copy(), mask.copy()
    for k in range(3):
        net.gradient(x + k + 1, t)
    assert np.array_equal(part, copies[0]) and np.array_equal(mask, copies[1])


def test_the_same_arrays_serve_step_after_step_when_nothing_holds_them():
    net = MultiLayerNetExtend(12, [10, 10], 5, backend="numba", use_batchnorm=True)
    x, t = rng.random((30, 12)), rng.integers(0, 5, 30)
    net.gradient(x, t)
    first = net.layers["BatchNorm1"].xc
    ids = {id(first)}
    del first
    for _ in range(3):
        net.gradient(x, t)
        ids.add(id(net.layers["BatchNorm1"].xc))
    assert len(ids) == 1
    assert NB.layer_net_gradient is fused.gradient


@pytest.mark.parametrize("least", [0, None], ids=["always", "default"])
@pytest.mark.parametrize(
    "sizes, dtype, drop",
    [
        ((784, [100] * 4, 10), np.float64, ()),  # the default pairs here: 20,000 draws a pair
        ((12, [10, 7, 10, 10, 6], 5), np.float64, ("Dropout2",)),  # a group without Dropout
        ((12, [10] * 3, 5), np.float32, ("Dropout1", "Dropout3")),
    ],
)
def test_dropout_drawn_on_openblas_worker_is_the_layers_own(monkeypatch, least, sizes, dtype, drop):
    """The masks of the next groups drawn on OpenBLAS's worker beside a hidden product
    (``threads.DRAWS_PAIR_MIN_ELEMENTS``; 0: wherever the kernel can): the same masks, bits and draws."""
    if least is not None:
        monkeypatch.setattr(threads, "DRAWS_PAIR_MIN_ELEMENTS", least)
    kw = dict(use_batchnorm=dtype == np.float64, use_dropout=True, dtype=dtype)
    a, b = pair(sizes=sizes, **kw)
    for net in (a, b):
        for name in drop:
            del net.layers[name]
    x, t = rng.random((100, sizes[0])).astype(dtype), rng.integers(0, sizes[2], 100)
    steps(a, b, x, t)
    if least is None and sizes[0] == 784:
        mode, _, _, _, _, share = a._fused_shapes[1]
        assert share != 0 and all(m == fused._nl._HERE for m in mode[1:])
        assert 2 * 100 * 100 >= threads.DRAWS_PAIR_MIN_ELEMENTS


def test_a_share_draws_masks_on_the_worker_while_this_thread_multiplies():
    """``kernels.mlp``'s share: products' records here and two masks' draws on OpenBLAS's worker
    in one ``run_pair``: the products' bits and ``np.random.rand(n) > ratio``, in order."""
    from numba import njit

    from scratchprop.kernels import gemm, mt19937
    from scratchprop.kernels import mlp as K
    from scratchprop.kernels import pair as P

    if not P.AVAILABLE:
        pytest.skip("no paired products here")

    @njit
    def run(a, W, C, state, masks, ratio, parts, P_, share, fn):
        rec = np.empty((2, K._R), np.int64)
        flat = rec.reshape(2 * K._R)
        here, there = flat[: K._R], flat[K._R :]
        n = K._draws_ahead(there, state, masks, ratio, parts, 100, 20, P_, 0, 2)
        here[1] = 0
        K._add_product(here, fn, a, a.shape[1], 1, W, C, 0, 60, False)  # two products here, in turn
        K._add_product(here, fn, a, a.shape[1], 1, W, C, 60, 100, False)
        P.run_pair(rec, share)
        return n

    @njit
    def here(a, W, C):
        gemm.product(a, a.shape[1], 1, W, C, 1.0, False)

    a, W = rng.standard_normal((100, 30)), rng.standard_normal((30, 40))
    C, want = np.empty((100, 40)), np.empty((100, 40))
    here(a, W, want)
    masks = np.zeros(2 * 100 * 20, np.bool_)  # two groups of 10: their Dropout masks from 2000
    np.random.seed(7)
    _, state = mt19937.global_state()
    ratio, parts, P_ = np.array([0.3, 0.6]), np.array([3, 2]), np.array([0, 10, 20, 25])
    share, fn = K.share_address(), P.share_address(np.float64)
    assert run(a, W, C, state, masks, ratio, parts, P_, share, fn) == 2000
    assert np.array_equal(C, want)
    after = np.random.get_state()[1].copy()
    np.random.seed(7)
    first, second = np.random.rand(100, 10) > 0.3, np.random.rand(100, 10) > 0.6
    assert np.array_equal(masks[2000:3000], first.ravel()) and np.array_equal(masks[3000:], second.ravel())
    assert np.array_equal(after, np.random.get_state()[1])


@pytest.mark.parametrize("kw", NETS.values(), ids=NETS.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hidden_weight_gradients_beside_the_first_layers_are_the_layers_own(kw, dtype):
    """A paired first layer (``PAIR``): the hidden layers' ``dW`` wait for the last pairing, this
    thread making them and the first rows of the first ``dW``, the worker the rest."""
    sizes, N = (784, [100, 60, 100], 10), 100 if dtype == np.float64 else 200  # float32: half the cost
    a, b = pair(sizes=sizes, dtype=dtype, **kw)
    x, t = rng.random((N, 784)).astype(dtype), rng.integers(0, 10, N)
    steps(a, b, x, t)
    mode, _, _, _, _, share = a._fused_shapes[1]
    assert mode[0] == fused._nl._PAIR and share != 0 and all(m == fused._nl._HERE for m in mode[1:])


def test_the_workers_share_beside_another_threads_blas_products(blas_busy):
    """Another thread keeps NumPy's BLAS busy (the pool the worker belongs to) while the fused
    gradient pairs its forward, draws its masks and makes its last dW on that pool: every call
    the layers' own gradients, from the same draws."""
    kw = dict(use_batchnorm=True, use_dropout=True)
    x, t = rng.random((100, 784)), rng.integers(0, 10, 100)
    net = MultiLayerNetExtend(784, [100] * 3, 10, backend="numba", seed=4, **kw)
    np.random.seed(3)
    want = {k: v.copy() for k, v in net.layered_gradient(x, t).items()}  # the layers' own path
    for _ in range(20):
        np.random.seed(3)
        got = net.gradient(x, t)
        for k in want:
            assert same(got[k], want[k]), k
