"""The direct convolution (``kernels/conv_direct.py``): the Numba Convolution's forward, ``dx`` and
``dW`` without an unfolded matrix, where it applies (stride 1, filters in blocks of four, a map
wide enough); the reference's values, the unfold path's values, and its own bits at any thread
count."""

import numba
import numpy as np
import pytest

from scratchprop import _numba_conv as nb
from scratchprop import _numba_layers as nb_layers
from scratchprop import _numpy_conv as ref
from scratchprop import threads
from scratchprop.kernels import conv_direct as K
from scratchprop.tolerances import equivalence

DTYPES = [np.float64, np.float32]
needs_simd = pytest.mark.skipif(not K.FAST, reason="no AVX2 and FMA here: the layer keeps unfold + product")


def _close(got, want, dt):
    tol = equivalence(dt)
    assert got.shape == want.shape and got.dtype == np.dtype(dt)
    assert np.max(np.abs(got - want)) <= tol["rtol"] * np.max(np.abs(want)) + tol["atol"]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize(
    "C, F, S, FS, pad",
    [
        (3, 8, 10, 3, 1),
        (16, 16, 28, 3, 1),
        (1, 4, 9, 5, 2),
        (4, 4, 7, 3, 0),
        (2, 32, 8, 3, 2),
        (3, 16, 5, 3, 1),
        (1, 48, 6, 3, 1),
        (4, 16, 8, 3, 1),
    ],
)
def test_kernels_give_the_references_values(dt, C, F, S, FS, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((C, S, S)).astype(dt)
    W = rng.standard_normal((F, C, FS, FS)).astype(dt)
    dout_shape = (F, S + 2 * pad - FS + 1, S + 2 * pad - FS + 1)
    dout = rng.standard_normal(dout_shape).astype(dt)
    Hp, Wp = S + 2 * pad, S + 2 * pad
    OH, OW = dout_shape[1:]
    npos = K.positions(F, OH * Wp, np.dtype(dt).itemsize)
    off = np.array(
        [(c * Hp + kh) * Wp + kw for c in range(C) for kh in range(FS) for kw in range(FS)], np.intp
    )
    xp = np.full(C * Hp * Wp + npos + FS, np.nan, dt)  # pad_rows must write every value read
    K.pad_rows(x.reshape(C, -1), 0, S, S, pad, xp)
    full = np.empty((F, npos), dt)
    K.convolve(W.reshape(F, -1), xp, off, full)
    out = np.empty(dout_shape, dt)
    K.to_image(full, Wp, np.zeros(0, dt), False, out)
    layer = ref.Convolution(W.astype(np.float64), np.zeros(F), 1, pad)
    _close(out, layer.forward(x[None].astype(np.float64))[0].astype(dt), dt)
    rows = np.empty((F, 3 + OH * OW), dt)
    b = rng.standard_normal(F).astype(dt)
    K.to_rows(full, Wp, OH, OW, b, rows, 3)  # with the bias and the ReLU, as to_image does them
    assert np.array_equal(rows[:, 3:].reshape(dout_shape), np.maximum(out + b[:, None, None], 0))
    biased = np.empty_like(out)
    K.to_image(full, Wp, b, True, biased)
    assert np.array_equal(biased, np.maximum(out + b[:, None, None], 0))
    K.to_image(full, Wp, b, False, biased)
    assert np.array_equal(biased, out + b[:, None, None])
    xp2 = np.full_like(xp, np.nan)
    K.pad_rows(np.concatenate([np.zeros((C, 2), dt), x.reshape(C, -1)], axis=1), 2, S, S, pad, xp2)
    assert np.array_equal(xp2, xp)
    # the filter gradient, from the gradient over the padded positions
    if C * FS * FS % K.TAPS == 0 and F % K.lanes(np.dtype(dt).itemsize) == 0:
        D = np.full((OH * Wp, F), np.nan, dt)
        K.from_rows(dout.reshape(F, -1), 0, OH, OW, Wp, D)
        dWT = np.ones((C * FS * FS, F), dt)  # it adds to what is there
        K.filter_gradient(D, xp, off, dWT)
        layer.backward(dout[None].astype(np.float64))
        _close(dWT - 1, layer.dW.reshape(F, -1).T.astype(dt), dt)


def _layer_run(x, W, b, dout, fused):
    """The Numba layer's outputs: alone, ``fused="relu"`` with the Relu after it (one pass each
    way), or ``True`` with the Relu and a 2x2 Pooling after it."""
    conv = nb.Convolution(W, b, 1, 1)
    if fused is True:
        relu, pool = nb_layers.Relu(), nb.Pooling(2, 2, 2)
        out = conv.forward_relu_pool(x, relu, pool)
        dx = conv.backward_relu_pool(dout, relu, pool)
    elif fused == "relu":
        relu = nb_layers.Relu()
        out = conv.forward_relu(x, relu)
        dx = conv.backward_relu(dout, relu)
    else:
        out = conv.forward(x)
        dx = conv.backward(dout)
    return conv, [out, dx, conv.dW, conv.db]


def _deep_case(dt, N=3, C=16, F=16, S=28, fused=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, S, S)).astype(dt)
    W = (rng.standard_normal((F, C, 3, 3)) * 0.1).astype(dt)
    b = rng.standard_normal(F).astype(dt)
    dout = rng.standard_normal((N, F, S // 2, S // 2) if fused is True else (N, F, S, S)).astype(dt)
    return x, W, b, dout


@needs_simd
@pytest.mark.parametrize("fused", [False, "relu", True])
@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("C, F, S", [(16, 16, 28), (4, 16, 14), (8, 32, 18)])
def test_layer_takes_it_and_matches_the_reference_and_the_unfold(monkeypatch, dt, C, F, S, fused):
    args = _deep_case(dt, C=C, F=F, S=S, fused=fused)
    conv, direct = _layer_run(*args, fused)
    assert {"xp", "full", "DT", "dxp", "dfull"} <= set(conv._scratch)  # forward, dW and dx took it
    monkeypatch.setattr(nb, "DIRECT_MIN_FILL", 2.0)  # never: unfold + product
    conv, unfolded = _layer_run(*args, fused)
    assert not {"xp", "full", "DT", "dxp", "dfull"} & set(conv._scratch)
    x, W, b, dout = args
    r = ref.Convolution(W.astype(np.float64), b.astype(np.float64), 1, 1)
    out = r.forward(x.astype(np.float64))
    if fused is True:
        pool = ref.Pooling(2, 2, 2)
        mask = out <= 0
        out = pool.forward(np.where(mask, 0, out))
        d = pool.backward(dout.astype(np.float64))
        d[mask] = 0
        dx = r.backward(d)
    elif fused == "relu":
        mask = out <= 0
        out = np.where(mask, 0, out)
        d = dout.astype(np.float64)
        d[mask] = 0
        dx = r.backward(d)
    else:
        dx = r.backward(dout.astype(np.float64))
    for got, other, want in zip(direct, unfolded, [out, dx, r.dW, r.db]):
        _close(got, want.astype(dt), dt)
        _close(got, other, dt)


def test_it_does_not_apply_where_it_would_not_pay_or_cannot_run(monkeypatch):
    f32 = np.dtype(np.float32)
    monkeypatch.setattr(K, "FAST", True)
    assert nb._direct(f32, 16, 3, 3, 28, 28, 16) is not None
    monkeypatch.setattr(K, "FAST", False)
    assert nb._direct(f32, 16, 3, 3, 28, 28, 16) is None  # no AVX2 / FMA: unfold + product
    monkeypatch.setattr(K, "FAST", True)
    assert nb._direct(f32, 16, 3, 3, 7, 7, 16) is None  # 49 outputs of 72 (AVX2) or 80 computed
    assert nb._direct(f32, 30, 5, 5, 24, 24, 1) is None  # 30 filters: not in blocks of four
    x, W, b, dout = _deep_case(np.float32, C=4, F=8, S=15)
    conv = nb.Convolution(W, b, stride=2, pad=1)
    conv.forward(x)
    assert "xp" not in conv._scratch  # stride 2: unfold + product


@needs_simd
@pytest.mark.parametrize("dt", DTYPES)
def test_the_same_bits_at_every_thread_count(monkeypatch, dt):
    args = _deep_case(dt, N=7, C=8, F=8, S=14)
    monkeypatch.setattr(threads, "CONV_MIN_ELEMENTS", 0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _layer_run(*args, False)[1]
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _layer_run(*args, False)[1]
    finally:
        numba.set_num_threads(before)
    # out and dx come image by image: the same bits; dW and db are summed per chunk
    for a, b in zip(one[:2], many[:2]):
        assert a.tobytes() == b.tobytes()


@needs_simd
def test_float32_images_with_float64_filters():
    x, W, b, dout = _deep_case(np.float64, C=8, F=8, S=14)
    x32 = x.astype(np.float32)
    conv, got = _layer_run(x32, W, b, dout, False)
    assert "xp" in conv._scratch and conv._scratch["xp"].dtype == np.float64
    r = ref.Convolution(W, b, 1, 1)
    want = [r.forward(x32), r.backward(dout)]  # the reference's float32 images, as float64
    for g, w in zip(got, [*want, r.dW, r.db]):
        _close(g, w, np.float64)
