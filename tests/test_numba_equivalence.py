"""The Numba backend against the NumPy reference, op by op, forward and backward.

Batch sizes 1..1000, N-D and 1-D inputs, float32 / float64 / mixed / uint8,
C, Fortran, strided and read-only inputs, serial and ``prange`` kernels
(1 and 2 threads), and every kernel against its naive loop version.
Tolerances come from :mod:`scratchprop.tolerances`.
"""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchprop.numba as B
import scratchprop.numpy as P
from scratchprop import tolerances
from scratchprop.kernels import affine as K_affine
from scratchprop.kernels import relu as K_relu
from scratchprop.kernels import softmax_loss as K_sl

BATCHES = [1, 2, 3, 7, 64, 257, 1000]
DTYPES = {  # name: (x dtype, W / b dtype)
    "f64": (np.float64, np.float64),
    "f32": (np.float32, np.float32),
    "f32x_f64W": (np.float32, np.float64),
    "u8x_f64W": (np.uint8, np.float64),
}
LAYOUTS = ["C", "F", "strided", "readonly"]
rng = np.random.default_rng(1234)


def assert_equiv(got, want, dtype=None, floor=0.0):
    """Same shape and dtype, and within the equivalence tolerance of ``want``'s dtype.

    ``|got - want| <= rtol * max(max|want|, floor) + atol``. A loss is the
    difference of O(1) terms (``logsumexp(x) - x[t]``), so its rounding is
    relative to 1, not to a near-zero loss: compare losses with ``floor=1``.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    tol = tolerances.equivalence(dtype or want.dtype)
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
        return
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[~finite], want[~finite])  # NaN and +-inf exactly
    if finite.any():
        g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
        scale = max(np.max(np.abs(w)), floor)
        err = np.max(np.abs(g - w))
        assert err <= tol["rtol"] * scale + tol["atol"], f"max error {err:g} vs scale {scale:g}"


def layout(a, how):
    """``a`` (same values) as C, Fortran, strided (non-contiguous) or read-only."""
    a = np.asarray(a)
    if how == "C":
        return np.ascontiguousarray(a)
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided":
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype) if a.ndim else a.copy()
        if a.ndim == 0:
            return big
        big[..., ::2] = a
        return big[..., ::2]
    r = a.copy()
    r.flags.writeable = False
    return r


def data(shape, dtype):
    if np.dtype(dtype).kind == "u":
        return rng.integers(0, 256, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = numba.get_num_threads()
    numba.set_num_threads(min(request.param, numba.config.NUMBA_NUM_THREADS))
    yield request.param
    numba.set_num_threads(old)


def run_affine(M, x, W, b, dout=None):
    layer = M.Affine(W, b)
    out = layer.forward(x)
    dout = np.ones_like(out) * 0.5 + out * 0.25 if dout is None else dout
    dx = layer.backward(dout)
    return out, dx, layer.dW, layer.db


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("dt", list(DTYPES))
@pytest.mark.parametrize("N", BATCHES)
def test_affine(N, dt, how):
    xdt, wdt = DTYPES[dt]
    x = layout(data((N, 13), xdt), how)
    W = layout(data((13, 6), wdt), how)
    b = layout(data((6,), wdt), how)
    for got, want in zip(run_affine(B, x, W, b), run_affine(P, x, W, b)):
        assert_equiv(got, want)


@pytest.mark.parametrize("N", [1, 64, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_mnist_sized(N, dtype):
    x, W, b = data((N, 784), dtype), data((784, 100), dtype) * 0.01, data((100,), dtype)
    for got, want in zip(run_affine(B, x, W, b), run_affine(P, x, W, b)):
        assert_equiv(got, want)


@pytest.mark.parametrize("shape", [(5, 2, 3, 4), (1, 24), (24,), (3, 1, 24)])
def test_affine_nd_and_single_sample(shape):
    x = data(shape, np.float64)
    W, b = data((24, 7), np.float64), data((7,), np.float64)
    got, want = run_affine(B, x, W, b), run_affine(P, x, W, b)
    for g, w in zip(got, want):
        assert_equiv(g, w)
    assert got[1].shape == shape  # dx in the input's original shape


def test_affine_mixed_bias_dtype_and_int_dout():
    x, W, b = data((4, 5), np.float32), data((5, 3), np.float32), data((3,), np.float64)
    assert_equiv(run_affine(B, x, W, b)[0], run_affine(P, x, W, b)[0])
    dout = rng.integers(-3, 3, (4, 3))  # an integer dout: NumPy's dtypes for dx, dW, db
    for got, want in zip(run_affine(B, x, W, b, dout)[1:], run_affine(P, x, W, b, dout)[1:]):
        assert_equiv(got, want)


@pytest.mark.parametrize("xdt", [np.float32, np.uint8])
def test_affine_converted_input_buffer_is_reused_and_never_stale(xdt):
    # float32 images with float64 weights: converted into the layer's buffer, once per forward
    W, b = data((784, 30), np.float64) * 0.01, data((30,), np.float64)
    layer, ref = B.Affine(W, b), P.Affine(W, b)
    bufs = []
    for seed in range(3):
        x = (np.random.default_rng(seed).random((50, 784)) * 255).astype(xdt)
        dout = data((50, 30), np.float64)
        assert_equiv(layer.forward(x), ref.forward(x))
        assert layer.x is x  # the input as given, as the reference keeps it
        for got, want in zip(
            (layer.backward(dout), layer.dW, layer.db), (ref.backward(dout), ref.dW, ref.db)
        ):
            assert_equiv(got, want)
        bufs.append(layer._xbuf)
    assert bufs[0] is bufs[1] is bufs[2]
    other = data((7, 784), np.float32)  # another batch size: a fresh buffer, the right result
    assert_equiv(layer.forward(other), ref.forward(other))


def test_affine_float16_falls_back():
    x, W, b = data((3, 4), np.float16), data((4, 2), np.float16), data((2,), np.float16)
    for got, want in zip(run_affine(B, x, W, b), run_affine(P, x, W, b)):
        assert_equiv(got, want, np.float32)


def test_affine_sees_in_place_updates():
    W, b = data((4, 3), np.float64), data((3,), np.float64)
    x = data((2, 4), np.float64)
    layer = B.Affine(W, b)
    first = layer.forward(x)
    W -= 0.5
    b += 1.0
    assert_equiv(layer.forward(x), P.Affine(W, b).forward(x))
    assert not np.allclose(first, layer.forward(x))


def special(shape, dtype):
    a = data(shape, dtype)
    flat = a.reshape(-1)
    if np.dtype(dtype).kind == "f" and flat.size >= 6:
        flat[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-30]
    return a


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.bool_])
@pytest.mark.parametrize("N", BATCHES)
def test_relu(N, dtype, how, threads):
    x = layout(special((N, 9), dtype), how)
    dout = layout(data((N, 9), np.float64 if dtype == np.bool_ else dtype), how)
    ref, fast = P.Relu(), B.Relu()
    assert_equiv(fast.forward(x), ref.forward(x))
    np.testing.assert_array_equal(fast.mask, ref.mask)
    assert_equiv(fast.backward(dout), ref.backward(dout))


@pytest.mark.parametrize("shape", [(), (7,), (3, 4, 5), (40, 1000)])
def test_relu_shapes_through_the_kernels(shape, kernels_always):
    x, dout = special(shape, np.float64), data(shape, np.float64)
    ref, fast = P.Relu(), B.Relu()
    assert_equiv(fast.forward(x), ref.forward(x))
    np.testing.assert_array_equal(fast.mask, ref.mask)
    assert_equiv(fast.backward(dout), ref.backward(dout))


def targets(kind, N, C, dtype):
    labels = rng.integers(0, C, N)
    if kind == "labels":
        return labels.astype(np.int8 if C < 100 else np.int64)
    if kind == "labels_N1":
        return labels.reshape(N, 1).astype(np.uint16)
    if kind == "labels_u64":
        return labels.astype(np.uint64)
    if kind == "float_labels":
        return labels.astype(np.float64)
    if kind == "onehot":
        return np.eye(C, dtype=dtype)[labels]
    p = rng.random((N, C)).astype(dtype) + 0.1
    return p / p.sum(axis=1, keepdims=True)


def run_swl(M, x, t, dout=1):
    layer = M.SoftmaxWithLoss()
    loss = layer.forward(x, t)
    return loss, layer.y, layer.backward(dout)


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("kind", ["labels", "labels_N1", "labels_u64", "float_labels", "onehot", "probs"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", BATCHES)
def test_softmax_with_loss(N, dtype, kind, how):
    x = layout(data((N, 10), dtype) * 3, how)
    t = layout(targets(kind, N, 10, dtype), how)
    got, want = run_swl(B, x, t), run_swl(P, x, t)
    assert type(got[0]) is type(want[0])
    for g, w in zip(got, want):
        assert_equiv(g, w)


@pytest.mark.parametrize("dout", [1, 2.5, True, np.float64(0.5), np.array(2.0)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_with_loss_dout_and_single_sample(dtype, dout):
    for x, t in [
        (data((4, 6), dtype), np.array([0, 5, 2, 2])),
        (data((6,), dtype), 3),
        (data((6,), dtype), np.eye(6, dtype=dtype)[1]),
        (data((1, 6), dtype), [4]),
    ]:
        for g, w in zip(run_swl(B, x, t, dout), run_swl(P, x, t, dout)):
            assert_equiv(g, w, dtype)  # a float64 dout widens float32 results, not their accuracy


def test_softmax_with_loss_huge_logits_and_ints():
    x = np.array([[1000.0, -1000.0, 0.0], [1e308, 1e308, -1e308]])
    for g, w in zip(run_swl(B, x, [0, 1]), run_swl(P, x, [0, 1])):
        assert_equiv(g, w)
    xi = rng.integers(-5, 5, (3, 4))
    for g, w in zip(run_swl(B, xi, [0, 1, 3]), run_swl(P, xi, [0, 1, 3])):
        assert_equiv(g, w)


@pytest.mark.parametrize("kind", ["labels", "probs"])
def test_softmax_with_loss_large_batch(kind):
    x = data((3000, 10), np.float64)
    t = targets(kind, 3000, 10, np.float64)
    for g, w in zip(run_swl(B, x, t), run_swl(P, x, t)):
        assert_equiv(g, w)


@pytest.mark.parametrize("shape", [(5,), (4, 7), (2, 3, 5), (1000, 10)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
def test_softmax_function(shape, dtype):
    x = layout(data(shape, dtype), "F") if len(shape) > 1 else data(shape, dtype)
    assert_equiv(B.softmax(x), P.softmax(x))


@pytest.mark.parametrize("kind", ["labels", "labels_N1", "onehot", "probs"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_error(kind, dtype):
    y = P.softmax(data((7, 5), dtype))
    t = targets(kind, 7, 5, dtype)
    got, want = B.cross_entropy_error(y, t), P.cross_entropy_error(y, t)
    assert type(got) is type(want)
    assert_equiv(got, want)
    assert_equiv(B.cross_entropy_error(y[0], t[0]), P.cross_entropy_error(y[0], t[0]))


def test_numerical_gradient_is_the_reference_loop():
    W = data((3, 2), np.float64)
    g = B.numerical_gradient(lambda w: float(np.sum(w**2)), W)
    assert_equiv(g, P.numerical_gradient(lambda w: float(np.sum(w**2)), W), np.float32)


# ----------------------------------------------------------------- kernels vs naive loops


@pytest.mark.parametrize("N", [1, 2, 33])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernels_against_naive(N, dtype):
    x, W, b, dout = data((N, 11), dtype), data((11, 4), dtype), data((4,), dtype), data((N, 4), dtype)
    assert_equiv(
        K_affine.forward(x, W, b, np.empty((N, W.shape[1]), dtype)),
        K_affine.forward_naive(x, W, b).astype(dtype),
    )
    want = K_affine.backward_naive(dout, x, W)
    got = K_affine.backward(dout, x, W, True, np.empty_like(x), np.empty_like(W))
    for g, w in zip(got, want):
        assert_equiv(g, w.astype(dtype))
    flat = special((N * 7,), dtype)

    def relu_out():
        return np.empty_like(flat), np.empty(flat.shape, np.bool_)

    for got, want in zip(K_relu.forward(flat, *relu_out()), K_relu.forward_naive(flat)):
        assert_equiv(got, want)
    mask = flat <= 0
    assert_equiv(K_relu.backward(flat, mask, np.empty_like(flat)), K_relu.backward_naive(flat, mask))
    s, labels = data((N, 6), dtype), rng.integers(0, 6, N)
    y, loss = K_sl.forward(s, labels, np.empty((0, 0), dtype))
    y_naive, loss_naive = K_sl.forward_naive(s, labels)
    assert_equiv(y, y_naive.astype(dtype))
    assert_equiv(np.float64(loss), np.float64(loss_naive), dtype)


# ----------------------------------------------------------------- property test


@settings(max_examples=40, deadline=None)
@given(
    N=st.integers(1, 40),
    D=st.integers(1, 20),
    H=st.integers(1, 12),
    C=st.integers(1, 8),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_layer_chain_property(N, D, H, C, dtype, seed):
    r = np.random.default_rng(seed)
    x = r.standard_normal((N, D)).astype(dtype)
    W1, b1 = r.standard_normal((D, H)).astype(dtype), r.standard_normal(H).astype(dtype)
    W2, b2 = r.standard_normal((H, C)).astype(dtype), r.standard_normal(C).astype(dtype)
    t = r.integers(0, C, N)
    results = []
    for M in (B, P):
        a1, relu, a2, last = M.Affine(W1, b1), M.Relu(), M.Affine(W2, b2), M.SoftmaxWithLoss()
        loss = last.forward(a2.forward(relu.forward(a1.forward(x))), t)
        dx = a1.backward(relu.backward(a2.backward(last.backward())))
        results.append((loss, last.y, dx, a1.dW, a1.db, a2.dW, a2.db))
    # N(0, 1) data on tiny shapes cancels: a float32 dot of 8 O(1) terms that sums
    # to 0.008 carries ~3e-7 of rounding in either backend, so the scale is at
    # least the data's, 1 (floor=1), not the small result's
    for got, want in zip(*results):
        assert_equiv(got, want, floor=1.0)


@pytest.mark.parametrize(
    "x",
    [
        np.array(-2.0),
        np.array(3.0),
        np.array(1.5, np.float32),
        np.arange(-3, 3, dtype=">f8"),
        np.arange(-300, 300, dtype=">f4").reshape(20, 30),
    ],
    ids=["0d-neg", "0d-pos", "0d-f32", "big-endian", "big-endian-2d"],
)
def test_relu_output_types_match_the_reference(x):
    ref, fast = P.Relu(), B.Relu()
    for got, want in (
        (fast.forward(x), ref.forward(x)),
        (fast.backward(np.ones_like(x)), ref.backward(np.ones_like(x))),
    ):
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(0, 784), (0, 4, 196)])
def test_affine_empty_batch_matches_the_reference(shape):
    W, b = data((784, 10), np.float64), data((10,), np.float64)
    got, want = (
        run_affine(B, np.zeros(shape), W, b, np.zeros((0, 10))),
        run_affine(P, np.zeros(shape), W, b, np.zeros((0, 10))),
    )
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
