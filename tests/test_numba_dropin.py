"""Drop-in use: the book's own net with only its import changed, and TwoLayerNet(backend="numba").

The book's class (``booknet.py``) is built once against the NumPy layers
and once against the Numba layers; same seeds, same data, same results.
``TwoLayerNet(backend="numba")`` goes through the fused hooks
(``net_gradient`` / ``net_train_step``), which must agree with the NumPy
net: loss, the four gradients, 20 SGD steps, and the layer state left behind.
"""

import numpy as np
import pytest
from booknet import book_net_class, book_train_step
from test_numba_equivalence import assert_equiv

import scratchprop.numba as B
from scratchprop import TwoLayerNet, _numba_net

KEYS = ("W1", "b1", "W2", "b2")
rng = np.random.default_rng(7)


def book_pair(sizes, seed=0):
    nets = []
    for module in ("scratchprop.numpy", "scratchprop.numba"):
        np.random.seed(seed)
        nets.append(book_net_class(module)(*sizes))
    return nets


def test_book_net_imports_the_numba_layers():
    net = book_net_class("scratchprop.numba")(4, 3, 2)
    assert type(net.layers["Affine1"]) is B.Affine
    assert type(net.layers["Relu1"]) is B.Relu
    assert type(net.lastLayer) is B.SoftmaxWithLoss
    assert net.layers["Affine1"].W is net.params["W1"]


@pytest.mark.parametrize("N", [1, 3, 32, 257])
@pytest.mark.parametrize("onehot", [False, True])
def test_book_net_training_agrees(N, onehot):
    ref, fast = book_pair((784, 50, 10))
    x = rng.random((N, 784)).astype(np.float32)  # MNIST-like float32 images, float64 weights
    labels = rng.integers(0, 10, N)
    t = np.eye(10)[labels] if onehot else labels
    assert_equiv(fast.loss(x, t), ref.loss(x, t), floor=1)
    g_ref, g_fast = ref.gradient(x, t), fast.gradient(x, t)
    for k in KEYS:
        assert_equiv(g_fast[k], g_ref[k])
    for _ in range(5):
        book_train_step(ref, x, t, 0.1)
        book_train_step(fast, x, t, 0.1)
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])
    assert fast.accuracy(x, t) == ref.accuracy(x, t)


def test_book_net_in_place_updates_are_seen():
    _, net = book_pair((6, 5, 3))
    x = rng.random((4, 6))
    before = net.predict(x).copy()
    net.params["W1"] -= 0.5  # in place: the layers hold these very arrays
    net.params["b2"] += 1.0
    after = net.predict(x)
    assert not np.allclose(before, after)
    ref = book_pair((6, 5, 3))[0]
    ref.params["W1"] -= 0.5
    ref.params["b2"] += 1.0
    assert_equiv(after, ref.predict(x))


def test_book_net_numerical_gradient_matches_backprop():
    ref, fast = book_pair((5, 4, 3), seed=3)
    x, t = rng.standard_normal((2, 5)), np.array([0, 2])
    num_fast, num_ref = fast.numerical_gradient(x, t), ref.numerical_gradient(x, t)
    bp = fast.gradient(x, t)
    for k in KEYS:
        assert np.any(num_fast[k] != 0), k
        np.testing.assert_allclose(num_fast[k], num_ref[k], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(num_fast[k], bp[k], rtol=1e-4, atol=1e-7)


def net_pair(sizes=(784, 100, 10), dtype=np.float64, seed=5):
    return (
        TwoLayerNet(*sizes, backend="numpy", dtype=dtype, seed=seed),
        TwoLayerNet(*sizes, backend="numba", dtype=dtype, seed=seed),
    )


@pytest.mark.parametrize("N", [1, 2, 7, 64, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_layer_net_hooks_agree(N, dtype):
    ref, fast = net_pair(dtype=dtype)
    x = rng.random((N, 784)).astype(dtype)
    t = rng.integers(0, 10, N)
    g_ref, g_fast = ref.gradient(x, t), fast.gradient(x, t)
    assert_equiv(fast.lastLayer.loss, ref.lastLayer.loss, floor=1)
    for k in KEYS:
        assert_equiv(g_fast[k], g_ref[k])
    assert_equiv(fast.loss(x, t), ref.loss(x, t), floor=1)
    for _ in range(20):
        if dtype == np.float32:
            # float32 steps amplify rounding (each W1 gradient is ~2% off its float64
            # value at N = 1000, in either implementation): compare step by step
            fast.load_params(ref.params)
        l_ref, l_fast = ref.train_step(x, t, 0.1), fast.train_step(x, t, 0.1)
        assert_equiv(l_fast, l_ref, floor=1)
        for k in KEYS:
            assert_equiv(fast.params[k], ref.params[k])
    for k in KEYS:
        assert fast.params[k] is fast.layers["Affine1" if k[1] == "1" else "Affine2"].__dict__[k[0]]


HOOK_CASES = [
    "onehot",
    "probs",
    "N1_labels",
    "uint8_x",
    "f32x_f64net",
    "f64x_f32net",
    "single_sample",
    "nd_input",
    "fortran_x",
    "readonly_x",
]


def hook_case(case, N=5):
    """``(x, t)`` of 12 features and 4 classes in the form ``case`` names."""
    x, t = rng.random((N, 12)), rng.integers(0, 4, N)
    if case == "onehot":
        t = np.eye(4)[t]
    elif case == "probs":
        t = rng.random((N, 4)) + 0.1
        t /= t.sum(axis=1, keepdims=True)
    elif case == "N1_labels":
        t = t.reshape(N, 1).astype(np.uint8)
    elif case == "uint8_x":
        x = rng.integers(0, 256, (N, 12)).astype(np.uint8)
    elif case == "f32x_f64net":
        x = x.astype(np.float32)
    elif case == "single_sample":
        x, t = x[0], t[0]
    elif case == "nd_input":
        x = x.reshape(N, 3, 4)
    elif case == "fortran_x":
        x = np.asfortranarray(x)
    elif case == "readonly_x":
        x.flags.writeable = False
        t.flags.writeable = False
    return x, t


@pytest.mark.parametrize("case", HOOK_CASES)
def test_two_layer_net_hook_inputs(case):
    dtype = np.float32 if case == "f64x_f32net" else np.float64
    ref, fast = net_pair((12, 6, 4), dtype=dtype)
    x, t = hook_case(case)
    g_ref, g_fast = ref.gradient(x, t), fast.gradient(x, t)
    for k in KEYS:
        assert_equiv(g_fast[k], g_ref[k], np.float32 if case == "f64x_f32net" else None)
    for _ in range(3):
        assert_equiv(fast.train_step(x, t, 0.05), ref.train_step(x, t, 0.05), floor=1)
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])
        assert fast.params[k].dtype == dtype


def assert_forward_state_equal(fast, ref):
    for name in ("Affine1", "Affine2"):
        a, b = fast.layers[name], ref.layers[name]
        assert a.original_x_shape == b.original_x_shape
        assert_equiv(a.x, b.x)
    np.testing.assert_array_equal(fast.layers["Relu1"].mask, ref.layers["Relu1"].mask)


@pytest.mark.parametrize("case", HOOK_CASES + ["N1", "N2", "N300"])
def test_predict_hook_agrees(case):
    # TwoLayerNet(backend="numba").predict (and so loss and accuracy) is one fused forward pass
    dtype = np.float32 if case == "f64x_f32net" else np.float64
    ref, fast = net_pair((12, 6, 4), dtype=dtype)
    for k in ("b1", "b2"):  # the biases start at zero: make them count
        fast.params[k][:] = ref.params[k][:] = rng.standard_normal(ref.params[k].shape)
    x, t = hook_case(case, int(case[1:])) if case[1:].isdigit() else hook_case(case)
    tol = np.float32 if case == "f64x_f32net" else None
    fast.layers["Relu1"].forward(-np.ones((2, 6)))  # a mask left from other data must not survive
    y_ref, y_fast = ref.predict(x), fast.predict(x)
    h_first = fast.layers["Affine2"].x
    assert y_fast.shape == y_ref.shape and y_fast.dtype == y_ref.dtype
    assert_equiv(y_fast, y_ref, tol)
    assert_forward_state_equal(fast, ref)
    # the state is the layers': backward by hand from here gives the reference's gradients
    assert_equiv(fast.lastLayer.forward(y_fast, t), ref.lastLayer.forward(y_ref, t), tol, floor=1)
    d_ref, d_fast = ref.lastLayer.backward(), fast.lastLayer.backward()
    for name in ("Affine2", "Relu1", "Affine1"):
        d_ref, d_fast = ref.layers[name].backward(d_ref), fast.layers[name].backward(d_fast)
        assert_equiv(d_fast, d_ref, tol)
    for name in ("Affine1", "Affine2"):
        assert_equiv(fast.layers[name].dW, ref.layers[name].dW, tol)
    assert_equiv(fast.loss(x, t), ref.loss(x, t), tol, floor=1)
    assert fast.accuracy(x, t) == ref.accuracy(x, t)
    again = fast.predict(x)  # fresh arrays: the earlier scores and hidden state are kept
    assert again is not y_fast and fast.layers["Affine2"].x is not h_first
    np.testing.assert_array_equal(again, y_fast)
    np.testing.assert_array_equal(fast.layers["Affine2"].x, h_first)


def test_predict_hook_sees_in_place_updates_and_other_nets():
    ref, fast = net_pair((12, 6, 4))
    x = rng.random((7, 12))
    for net in (ref, fast):
        net.params["W1"] *= -1.5  # in place: the next predict must read it
    assert_equiv(fast.predict(x), ref.predict(x))

    class Scaled(TwoLayerNet):  # another predict: the hook is not used
        def predict(self, x):
            return 2 * super().predict(x)

    ref, fast = Scaled(12, 6, 4, backend="numpy", seed=1), Scaled(12, 6, 4, backend="numba", seed=1)
    assert_equiv(fast.predict(x), ref.predict(x))
    assert_equiv(fast.loss(x, np.arange(7) % 4), ref.loss(x, np.arange(7) % 4), floor=1)


def test_hook_layer_state_is_sensible():
    ref, fast = net_pair((12, 6, 4))
    x, t = rng.random((3, 12)), np.array([0, 3, 1])
    fast.gradient(x, t)
    ref.gradient(x, t)
    for name in ("Affine1", "Affine2"):
        a, b = fast.layers[name], ref.layers[name]
        assert a.original_x_shape == b.original_x_shape
        assert_equiv(a.x, b.x)
        assert_equiv(a.dW, b.dW)
        assert_equiv(a.db, b.db)
    np.testing.assert_array_equal(fast.layers["Relu1"].mask, ref.layers["Relu1"].mask)
    assert_equiv(fast.lastLayer.y, ref.lastLayer.y)
    assert fast.lastLayer.t is t
    # the layers can carry on by hand from the fused state
    assert_equiv(fast.lastLayer.backward(), ref.lastLayer.backward())
    assert_equiv(
        fast.layers["Relu1"].backward(np.ones((3, 6))), ref.layers["Relu1"].backward(np.ones((3, 6)))
    )
    loss = fast.train_step(x, t, 0.1)
    assert loss == fast.lastLayer.loss


def test_hook_fallbacks_agree():
    ref, fast = net_pair((8, 5, 3))
    x, t = rng.random((4, 8)), np.array([0, 1, 2, 0])
    for net in (ref, fast):  # a NumPy-scalar lr: the update is NumPy's, as in the reference
        net.train_step(x, t, np.float32(0.1))
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])

    class Decay(TwoLayerNet):  # another loss: the fused hook must not take it
        def loss(self, x, t):
            return super().loss(x, t) + 0.5

    ref, fast = Decay(8, 5, 3, backend="numpy", seed=5), Decay(8, 5, 3, backend="numba", seed=5)
    assert _numba_net._prepare(fast, x, t) is None
    g_ref, g_fast = ref.gradient(x, t), fast.gradient(x, t)
    for k in KEYS:
        assert_equiv(g_fast[k], g_ref[k])
    assert_equiv(fast.train_step(x, t, 0.1), ref.train_step(x, t, 0.1), floor=1)


def test_hook_with_replaced_params_array():
    ref, fast = net_pair((8, 5, 3))
    x, t = rng.random((4, 8)), np.array([0, 1, 2, 0])
    for net in (ref, fast):  # the layers no longer hold params["W1"]: not the standard net
        net.params["W1"] = net.params["W1"].copy()
    assert _numba_net._prepare(fast, x, t) is None
    for k in KEYS:
        assert_equiv(fast.gradient(x, t)[k], ref.gradient(x, t)[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lr", [0.1, np.float32(0.1), np.float64(0.1)])
def test_train_step_numpy_scalar_learning_rates(dtype, lr):
    ref, fast = net_pair((12, 6, 4), dtype=dtype)
    x, t = rng.random((5, 12)), rng.integers(0, 4, 5)
    for _ in range(3):
        assert_equiv(fast.train_step(x, t, lr), ref.train_step(x, t, lr), floor=1)
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])


def test_batch_one_step_on_sparse_images_agrees():
    # the fused batch-1 update skips W1 rows whose pixel is 0 (MNIST: most of them)
    ref, fast = net_pair()
    x = rng.random((1, 784))
    x[0, rng.random(784) < 0.8] = 0.0
    t = rng.integers(0, 10, 1)
    for _ in range(20):
        assert_equiv(fast.train_step(x, t, 0.1), ref.train_step(x, t, 0.1), floor=1)
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])
    zero_rows = x[0] == 0
    assert np.all(np.isfinite(fast.params["W1"][zero_rows]))


def test_batch_one_step_with_non_finite_gradient_matches_the_reference():
    # an inf weight makes dh non-finite: then 0 * dh is NaN and no row may be skipped
    ref, fast = net_pair((12, 6, 4))
    x = rng.random((1, 12))
    x[0, :6] = 0.0
    t = np.array([1])
    for net in (ref, fast):
        net.params["W2"][2, 1] = np.inf
    with np.errstate(all="ignore"):
        ref.train_step(x, t, 0.1)
        fast.train_step(x, t, 0.1)
    for k in KEYS:
        np.testing.assert_array_equal(np.isnan(fast.params[k]), np.isnan(ref.params[k]))
        np.testing.assert_array_equal(np.isinf(fast.params[k]), np.isinf(ref.params[k]))


def _other_forms(x, t):
    """The same batch in forms that ``train_step``'s quick check turns away (see _prepare_common)."""
    ro = x.copy()
    ro.flags.writeable = False
    return {
        "int32 labels": (x, t.astype(np.int32)),
        "read-only x": (ro, t),
        "strided x": (np.repeat(x, 2, axis=1)[:, ::2], t),
        "list labels": (x, list(t)),
        "int lr": (x, t),
    }


@pytest.mark.parametrize("form", ["int32 labels", "read-only x", "strided x", "list labels", "int lr"])
@pytest.mark.parametrize("N", [1, 4, 300])
def test_train_step_quick_and_full_checks_give_the_same_bits(form, N):
    a, b = (TwoLayerNet(20, 12, 5, backend="numba", seed=3) for _ in range(2))
    x, t = rng.random((N, 20)), rng.integers(0, 5, N)
    x2, t2 = _other_forms(x, t)[form]
    lr = 1 if form == "int lr" else 1.0
    assert _numba_net._prepare_common(a, x, t, 1.0) is not None
    assert _numba_net._prepare_common(b, x2, t2, lr) is None
    for _ in range(3):
        assert a.train_step(x, t, 1.0) == b.train_step(x2, t2, lr)
    for k in KEYS:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.lastLayer.t is t and b.lastLayer.t is t2


def test_train_step_quick_check_sees_parameters_changed_in_place():
    ref, fast = net_pair((8, 5, 3))
    x, t = rng.random((4, 8)), np.array([0, 1, 2, 0])
    fast.train_step(x, t, 0.1)
    fast.params["W1"].flags.writeable = False  # after a quick step: the next one must refuse
    with pytest.raises(ValueError, match="read-only"):
        fast.train_step(x, t, 0.1)
    fast.params["W1"].flags.writeable = True
    ref.train_step(x, t, 0.1)
    for net in (ref, fast):  # a reshape in place: the reference's error, not a kernel reading past b2
        net.params["b2"].shape = (1, 3)
        with pytest.raises(ValueError, match=r"b must have shape \(3,\)"):
            net.train_step(x, t, 0.1)
    assert _numba_net._prepare_common(fast, x, t, 0.1) is None
    for k in KEYS:
        assert_equiv(fast.params[k], ref.params[k])
