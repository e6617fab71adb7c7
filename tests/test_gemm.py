"""Products on the calling thread (``kernels/gemm.py``) and where the layers take them (rule 1 of
``scratchprop.threads``): the float64 product's values for any shape, nothing written past ``C``,
NaN carried, the same bits every call; the Affine layer and the fused net on either path."""

import numpy as np
import pytest
from numba import njit

import scratchprop
from scratchprop import _numba_layers as nb_layers
from scratchprop import threads
from scratchprop.kernels import gemm as G
from scratchprop.kernels import pair as P
from scratchprop.numba import Affine
from scratchprop.numpy import Affine as RefAffine
from scratchprop.tolerances import equivalence

DTYPES = [np.float64, np.float32]
pytestmark = pytest.mark.skipif(not G.FAST, reason="no AVX2 and FMA here: the products stay in BLAS")
rng = np.random.default_rng(0)


@njit
def _product(A, sa, sk, B, C, alpha, add):
    G.product(A, sa, sk, B, C, alpha, add)


def _close(got, want, dt):
    tol = equivalence(dt)
    assert (
        np.max(np.abs(got - want), initial=0) <= tol["rtol"] * np.max(np.abs(want), initial=0) + tol["atol"]
    )


# shapes around the blocks: rows in whole blocks and not, columns below a vector, in whole
# blocks, between them; an empty inner dimension
SHAPES = [(8, 5, 3), (33, 784, 100), (7, 50, 13), (16, 100, 10), (9, 3, 48), (24, 17, 49), (3, 0, 30)]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N, K, M", SHAPES)
def test_product_and_its_transposed_form_match_float64(dt, N, K, M):
    A, B = rng.standard_normal((N, K)).astype(dt), rng.standard_normal((K, M)).astype(dt)
    C0 = rng.standard_normal((N, M)).astype(dt)
    want = C0.astype(np.float64) - 0.5 * (A.astype(np.float64) @ B)
    C = C0.copy()
    _product(A, K, 1, B, C, -0.5, True)
    _close(C, want, dt)
    C = np.full((N, M), np.nan, dt)  # without add, C's old values are never used
    _product(A, K, 1, B, C, 1.0, False)
    _close(C, A.astype(np.float64) @ B, dt)
    AT = np.ascontiguousarray(A.T)  # op(A) = AT.T: sa = 1, sk = AT's row length
    C2 = np.full((N, M), np.nan, dt)
    _product(AT, 1, N, B, C2, 1.0, False)
    np.testing.assert_array_equal(C2, C)  # the same sums in the same order


@pytest.mark.parametrize("dt", DTYPES)
def test_nothing_is_written_past_C_and_the_bits_repeat(dt):
    N, K, M = 11, 40, 21
    A, B = rng.standard_normal((N, K)).astype(dt), rng.standard_normal((K, M)).astype(dt)
    buf = np.full(N * M + 64, 7.0, dt)
    C = buf[: N * M].reshape(N, M)
    _product(A, K, 1, B, C, 1.0, False)
    assert np.all(buf[N * M :] == 7.0)
    again = np.empty_like(C)
    _product(A, K, 1, B, again, 1.0, False)
    np.testing.assert_array_equal(again, C)


@pytest.mark.parametrize("dt", DTYPES)
def test_nan_reaches_its_row_and_no_other(dt):
    A, B = rng.standard_normal((16, 9)).astype(dt), rng.standard_normal((9, 30)).astype(dt)
    A[5, 3] = np.nan
    C = np.empty((16, 30), dt)
    _product(A, 9, 1, B, C, 1.0, False)
    assert np.all(np.isnan(C[5])) and np.isfinite(np.delete(C, 5, axis=0)).all()


@pytest.fixture(params=["here", "blas", "pair"])
def path(request, monkeypatch):
    """Every product on the calling thread (``here``), in BLAS, or paired on BLAS's threads
    (``kernels/pair.py``; where it can run), whatever its size."""
    if request.param == "pair" and not P.AVAILABLE:
        pytest.skip("no paired products here (NumPy's OpenBLAS without gotoblas_pthread)")
    monkeypatch.setattr(threads, "BLAS_MIN_MACS", 10**15 if request.param == "here" else 0)
    monkeypatch.setattr(P, "AVAILABLE", request.param != "blas")
    return request.param


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N", [8, 33, 300])
def test_affine_on_either_path_matches_the_reference(path, dt, N):
    D, M = 50, 13
    W, b = rng.standard_normal((D, M)).astype(dt), rng.standard_normal(M).astype(dt)
    x, dout = rng.standard_normal((N, D)).astype(dt), rng.standard_normal((N, M)).astype(dt)
    layer, ref = Affine(W, b), RefAffine(W, b)
    assert nb_layers.products_here(N, D, M, np.dtype(dt)) == (path == "here")
    want_mode = {"here": nb_layers._HERE, "blas": nb_layers._BLAS, "pair": nb_layers._PAIR}[path]
    assert nb_layers.product_mode(N, D, M, np.dtype(dt)) == (
        nb_layers._BLAS if N < 2 * G.ROWS and path == "pair" else want_mode
    )
    _close(layer.forward(x), ref.forward(x), dt)
    _close(layer.backward(dout), ref.backward(dout), dt)
    _close(layer.dW, ref.dW, dt)
    _close(layer.db, ref.db, dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_the_fused_net_on_either_path_matches_the_reference(path, dt):
    N = 40
    x, t = rng.random((N, 784)).astype(dt), rng.integers(0, 10, N)
    fused = scratchprop.TwoLayerNet(784, 100, 10, backend="numba", seed=1, dtype=dt)
    ref = scratchprop.TwoLayerNet(784, 100, 10, backend="numpy", seed=1, dtype=dt)
    got, want = fused.gradient(x, t), ref.gradient(x, t)
    for k in want:
        _close(got[k], want[k], dt)
    _close(fused.predict(x), ref.predict(x), dt)
    fused.train_step(x, t, lr=0.1)
    ref.train_step(x, t, lr=0.1)
    for k in want:
        _close(fused.params[k], ref.params[k], dt)
