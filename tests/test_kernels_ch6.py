"""The chapter-6 kernels (``scratchprop.kernels``: sigmoid, dropout, batchnorm, optim).

Each kernel against its naive version (the book's formula, in NumPy, in the
book's order): float64 to ``rtol=1e-12``, float32 to ``1e-5``, and bit for
bit where no ``exp`` is involved (the kernels make the reference's roundings
in the reference's order). Plus NaN propagation, dropout's ``-0.0``, the
optimizers' in-place updates and determinism.
"""

import numpy as np
import pytest

from scratchprop.kernels import batchnorm as K_bn
from scratchprop.kernels import dropout as K_do
from scratchprop.kernels import optim as K_opt
from scratchprop.kernels import sigmoid as K_sig

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
SIZES = [1, 7, 1000]
SHAPES = [(1, 5), (100, 100), (1000, 100)]


def close(a, ref, dt):
    assert a.dtype == ref.dtype == np.dtype(dt)
    assert a.shape == ref.shape
    np.testing.assert_allclose(a, ref, rtol=RTOL[dt], atol=0)


def same_bits(a, ref):
    assert a.dtype == ref.dtype and a.shape == ref.shape
    assert a.tobytes() == ref.tobytes()


def rand(rng, shape, dt, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dt)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- sigmoid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_sigmoid(rng, dt, n):
    x = rand(rng, n, dt, 4.0)
    out = 1 / (1 + np.exp(-x))  # the forward is NumPy's (see kernels/sigmoid.py)
    dout = rand(rng, n, dt)
    dx = np.empty_like(x)
    assert K_sig.backward(dout, out, dx) is dx
    same_bits(dx, K_sig.backward_naive(dout, out))
    same_bits(dx, dout * (1.0 - out) * out)


@pytest.mark.parametrize("dt", DTYPES)
def test_sigmoid_extremes_and_nan(dt):
    x = np.array([-1e4, -800.0, 1e4, np.nan, -np.inf, np.inf, 0.0, -0.0], dtype=dt)
    with np.errstate(over="ignore"):
        out = 1 / (1 + np.exp(-x))
    dout = np.array([1, 1, 1, 1, 1, 1, np.nan, 2], dtype=dt)
    dx = K_sig.backward(dout, out, np.empty_like(x))
    np.testing.assert_array_equal(dx, dout * (1.0 - out) * out)
    assert np.isnan(dx[3]) and np.isnan(dx[6])


# --- dropout ---------------------------------------------------------------------------------------


def _dropout_inputs(rng, n, dt):
    x = rand(rng, n, dt)
    x[::5] = -np.abs(x[::5])  # negative values, some of them dropped: -0.0
    if n > 3:
        x[3] = np.nan
        x[1] = -np.inf
    return x, rng.random(n)  # r float64, as np.random.rand


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dropout_train(rng, dt, n):
    x, r = _dropout_inputs(rng, n, dt)
    ratio = 0.5
    out, mask = np.empty_like(x), np.empty(n, dtype=bool)
    res = K_do.forward_train(x, r, ratio, out, mask)
    assert res[0] is out and res[1] is mask
    ref_mask = r > ratio
    with np.errstate(invalid="ignore"):
        ref = x * ref_mask
    np.testing.assert_array_equal(mask, ref_mask)
    same_bits(out, ref)  # -0.0 and NaN * 0 = NaN included
    with np.errstate(invalid="ignore"):
        same_bits(out, K_do.forward_train_naive(x, r, ratio)[0])
    np.testing.assert_array_equal(np.signbit(out), np.signbit(ref))
    dout, _ = _dropout_inputs(rng, n, dt)
    dx = np.empty_like(dout)
    assert K_do.backward(dout, mask, dx) is dx
    with np.errstate(invalid="ignore"):
        same_bits(dx, dout * mask)
        same_bits(dx, K_do.backward_naive(dout, mask))


@pytest.mark.parametrize("dt", DTYPES)
def test_dropout_negative_zero_and_nan(dt):
    x = np.array([-1.0, -0.0, 0.0, np.nan, -np.inf, 2.0], dtype=dt)
    r = np.zeros(6)  # every element dropped
    out, mask = K_do.forward_train(x, r, 0.5, np.empty_like(x), np.empty(6, dtype=bool))
    assert not mask.any()
    with np.errstate(invalid="ignore"):
        ref = x * mask
    same_bits(out, ref)  # NaN's sign included (the hardware's, for inf * 0)
    finite = [0, 1, 2, 5]
    assert np.signbit(out[finite]).tolist() == [True, True, False, False]
    assert np.isnan(out[3]) and np.isnan(out[4])  # NaN * 0 and inf * 0 are NaN, as in NumPy
    dx = K_do.backward(x, mask, np.empty_like(x))
    same_bits(dx, ref)
    kept = K_do.forward_train(x, np.ones(6), 0.5, np.empty_like(x), np.empty(6, dtype=bool))[0]
    same_bits(kept, x)


# --- batchnorm -------------------------------------------------------------------------------------

EPS = 10e-7  # the book's
NO = np.empty(0, bool)  # a BatchNormalization kernel's "no Relu / Dropout after it"


def _bn_forward(x, gamma, beta, eps=EPS):
    N, D = x.shape
    dt = x.dtype
    outs = tuple(np.empty((N, D), dt) for _ in range(3)) + tuple(np.empty(D, dt) for _ in range(3))
    assert K_bn.forward_train(x, gamma, beta, eps, *outs, NO, NO) is outs[0]
    return outs  # out, xc, xn, std, mu, var


def _bn_backward(dout, gamma, xc, xn, std):
    N, D = dout.shape
    dx, dgamma, dbeta = np.empty((N, D), dout.dtype), np.empty(D, dout.dtype), np.empty(D, dout.dtype)
    assert K_bn.backward(dout, gamma, xc, xn, std, dx, dgamma, dbeta) is dx
    return dx, dgamma, dbeta


def _bn_params(rng, D, dt):
    return 1.0 + rand(rng, D, dt, 0.1), rand(rng, D, dt, 0.1)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_train(rng, dt, shape):
    N, D = shape
    x = rand(rng, shape, dt, 3.0) + dt(0.5)
    gamma, beta = _bn_params(rng, D, dt)
    got = _bn_forward(x, gamma, beta)
    ref = K_bn.forward_train_naive(x, gamma, beta, EPS)
    for a, r in zip(got, ref):
        close(a, r, dt)
        same_bits(a, r)
    out, xc, xn, std, mu, var = got
    dout = rand(rng, shape, dt)
    back = _bn_backward(dout, gamma, xc, xn, std)
    for a, r in zip(back, K_bn.backward_naive(dout, gamma, xc, xn, std)):
        close(a, r, dt)
        same_bits(a, r)


@pytest.mark.parametrize("dt", DTYPES)
def test_batchnorm_single_column(rng, dt):
    """``D == 1``: NumPy sums pairwise there, the kernels in row order (close, not the same bits)."""
    x = rand(rng, (1000, 1), dt, 2.0) + dt(1.0)
    gamma, beta = _bn_params(rng, 1, dt)
    got = _bn_forward(x, gamma, beta)
    ref = K_bn.forward_train_naive(x, gamma, beta, EPS)
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, rtol=RTOL[dt], atol=RTOL[dt])
    dout = rand(rng, x.shape, dt)
    back = _bn_backward(dout, gamma, *got[1:4])
    for a, r in zip(back, K_bn.backward_naive(dout, gamma, *got[1:4])):
        np.testing.assert_allclose(a, r, rtol=10 * RTOL[dt], atol=10 * RTOL[dt])


@pytest.mark.parametrize("dt", DTYPES)
def test_batchnorm_nan_propagates(rng, dt):
    x = rand(rng, (50, 6), dt)
    x[7, 2] = np.nan
    gamma, beta = _bn_params(rng, 6, dt)
    got = _bn_forward(x, gamma, beta)
    ref = K_bn.forward_train_naive(x, gamma, beta, EPS)
    for a, r in zip(got, ref):
        np.testing.assert_array_equal(a, r)  # NaN where NumPy has NaN
    assert np.isnan(got[0][:, 2]).all() and not np.isnan(np.delete(got[0], 2, axis=1)).any()
    dout = rand(rng, x.shape, dt)
    dout[3, 4] = np.nan
    back = _bn_backward(dout, gamma, *got[1:4])
    for a, r in zip(back, K_bn.backward_naive(dout, gamma, *got[1:4])):
        np.testing.assert_array_equal(a, r)
    assert np.isnan(back[0][:, 4]).all() and np.isnan(back[1][4]) and np.isnan(back[2][4])


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_test_mode(rng, dt, shape):
    N, D = shape
    x = rand(rng, shape, dt)
    gamma, beta = _bn_params(rng, D, dt)
    rm, rv = rand(rng, D, dt, 0.1), np.abs(rand(rng, D, dt)) + dt(0.5)
    out = np.empty(shape, dt)
    assert K_bn.forward_test(x, gamma, beta, rm, rv, EPS, out) is out
    ref = K_bn.forward_test_naive(x, gamma, beta, rm, rv, EPS)
    close(out, ref, dt)
    same_bits(out, ref)


def test_batchnorm_test_mode_float64_running_stats(rng):
    """The book's running statistics are ``np.zeros(D)`` (float64): a float32 batch then computes in float64."""
    x = rand(rng, (100, 100), np.float32)
    gamma, beta = _bn_params(rng, 100, np.float32)
    rm, rv = rand(rng, 100, np.float64, 0.1), np.abs(rand(rng, 100, np.float64)) + 0.5
    ref = K_bn.forward_test_naive(x, gamma, beta, rm, rv, EPS)
    assert ref.dtype == np.float64
    out = K_bn.forward_test(x, gamma, beta, rm, rv, EPS, np.empty(x.shape, np.float64))
    same_bits(out, ref)


@pytest.mark.parametrize("dt", DTYPES)
def test_batchnorm_running_update(rng, dt):
    for D in (1, 5, 100):
        running, batch = rand(rng, D, dt), rand(rng, D, dt)
        out = np.empty(D, dt)
        assert K_bn.running_update(running, batch, 0.9, out) is out
        ref = K_bn.running_update_naive(running, batch, 0.9)
        close(out, ref, dt)
        same_bits(out, ref)
    # float64 running statistics (the book's) beside a float32 batch: NumPy's mixed arithmetic
    running, batch = rand(rng, 100, np.float64), rand(rng, 100, np.float32)
    ref = 0.9 * running + (1 - 0.9) * batch
    same_bits(K_bn.running_update(running, batch, 0.9, np.empty(100)), ref)


# --- optimizers ------------------------------------------------------------------------------------

LR_T = np.float64(0.001) * np.sqrt(1.0 - 0.999**3) / (1.0 - 0.9**3)  # the book's Adam, step 3: np.float64
OPTIMIZERS = {  # name: (number of state arrays, hyperparameters)
    "sgd": (0, (0.01,)),
    "momentum": (1, (0.01, 0.9)),
    "nesterov": (1, (0.01, 0.9)),
    "adagrad": (1, (0.01,)),
    "rmsprop": (1, (0.01, 0.99)),
    "adam": (2, (LR_T, 0.9, 0.999)),
    "adam_dtype_lr_t": (2, ("lr_t in dtype", 0.9, 0.999)),
}


def _opt_case(rng, name, n, dt):
    nstate, hyper = OPTIMIZERS[name]
    if hyper[0] == "lr_t in dtype":
        hyper = (dt(LR_T),) + hyper[1:]  # a reference whose lr_t is a Python float: float32 arithmetic
    p, g = rand(rng, n, dt), rand(rng, n, dt)
    state = [np.abs(rand(rng, n, dt, 0.1)) for _ in range(nstate)]
    if name in ("momentum", "nesterov"):
        state[0] = rand(rng, n, dt, 0.1)  # velocity: any sign
    return name.split("_dtype")[0], p, g, state, hyper


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_book(rng, name, n, dt):
    name, p, g, state, hyper = _opt_case(rng, name, n, dt)
    kernel, naive = getattr(K_opt, name), getattr(K_opt, name + "_naive")
    p_ref, state_ref = p.copy(), [s.copy() for s in state]
    ids = [id(a) for a in (p, *state)]
    for _ in range(3):  # a few steps: the state carries over
        g = rand(rng, n, dt)
        assert kernel(p, g, *state, *hyper) is None  # in place, nothing returned
        naive(p_ref, g, *state_ref, *hyper)
        close(p, p_ref, dt)
        same_bits(p, p_ref)
        for s, s_ref in zip(state, state_ref):
            same_bits(s, s_ref)
    assert [id(a) for a in (p, *state)] == ids
    assert all(a.dtype == np.dtype(dt) for a in (p, *state))


@pytest.mark.parametrize("dt", DTYPES)
def test_adam_lr_t_type(rng, dt):
    """``lr_t`` keeps its type: the book's np.float64 makes float64 arithmetic, a dtype scalar the dtype's."""
    name, p, g, (m, v), (_, b1, b2) = _opt_case(rng, "adam", 1000, dt)
    for lr_t in (LR_T, dt(LR_T)):
        p1, m1, v1 = p.copy(), m.copy(), v.copy()
        K_opt.adam(p1, g, m1, v1, lr_t, b1, b2)
        p2, m2, v2 = p.copy(), m.copy(), v.copy()
        p2 -= lr_t * (m2 + (1 - b1) * (g - m2)) / (np.sqrt(v2 + (1 - b2) * (g**2 - v2)) + 1e-7)
        same_bits(p1, p2)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_nan_propagates(rng, name, dt):
    name, p, g, state, hyper = _opt_case(rng, name, 7, dt)
    g[2] = np.nan
    p_ref, state_ref = p.copy(), [s.copy() for s in state]
    getattr(K_opt, name)(p, g, *state, *hyper)
    getattr(K_opt, name + "_naive")(p_ref, g, *state_ref, *hyper)
    assert np.isnan(p[2]) and not np.isnan(np.delete(p, 2)).any()
    np.testing.assert_array_equal(p, p_ref)
    for s, s_ref in zip(state, state_ref):
        np.testing.assert_array_equal(s, s_ref)


# --- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", DTYPES)
def test_deterministic(rng, dt):
    """Two calls on the same inputs give the same bits, for every kernel."""

    def twice(f, *arrays_and_scalars, outs):
        res = []
        for _ in range(2):
            fresh = [np.empty(o.shape, o.dtype) for o in outs]
            f(*arrays_and_scalars, *fresh)
            res.append(b"".join(a.tobytes() for a in fresh))
        assert res[0] == res[1]

    N, D = 1000, 100
    x, d = rand(rng, (N, D), dt), rand(rng, (N, D), dt)
    flat, dflat = x.reshape(-1), d.reshape(-1)
    gamma, beta = _bn_params(rng, D, dt)
    twice(K_sig.backward, dflat, flat, outs=[flat])
    r = rng.random(flat.size)
    twice(K_do.forward_train, flat, r, 0.5, outs=[flat, np.empty(flat.size, bool)])
    twice(K_do.backward, dflat, r > 0.5, outs=[flat])
    bn_outs = [x, x, x, gamma, gamma, gamma]
    twice(lambda *a: K_bn.forward_train(*a, NO, NO), x, gamma, beta, EPS, outs=bn_outs)
    _, xc, xn, std, _, _ = _bn_forward(x, gamma, beta)
    twice(K_bn.backward, d, gamma, xc, xn, std, outs=[x, gamma, gamma])
    for name in OPTIMIZERS:
        name, p, g, state, hyper = _opt_case(rng, name, 1000, dt)
        runs = []
        for _ in range(2):
            arrays = [p.copy(), *(s.copy() for s in state)]
            getattr(K_opt, name)(arrays[0], g, *arrays[1:], *hyper)
            runs.append(b"".join(a.tobytes() for a in arrays))
        assert runs[0] == runs[1]
