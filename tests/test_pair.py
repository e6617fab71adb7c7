"""Products paired on OpenBLAS's two threads (``kernels/pair.py``, rule 1 of ``scratchprop.threads``):
the bits of the same product on one thread, for any shape, either orientation, with the pool at
one thread or busy with another thread's products (a forward's two half sums, ``split_product``:
the bits of its two sums on one thread); where the Affine layer and the fused net take them."""

import numpy as np
import pytest
from numba import njit

import scratchprop
from scratchprop import _numba_layers as nb_layers
from scratchprop import threads, tolerances
from scratchprop.kernels import gemm as G
from scratchprop.kernels import pair as P
from scratchprop.numba import Affine

pytestmark = pytest.mark.skipif(not P.AVAILABLE, reason="no paired products here")
DTYPES = [np.float64, np.float32]
rng = np.random.default_rng(0)


@njit
def _product(A, sa, sk, B, C, alpha, add):
    G.product(A, sa, sk, B, C, alpha, add)


def _both(A, sa, sk, B, C0, add, fn, alpha=1.0):
    """``(paired, one thread)`` results of the same product from ``C0``."""
    got, want = C0.copy(), C0.copy()
    P.paired_product(A, sa, sk, B, got, alpha, add, fn)
    _product(A, sa, sk, B, want, alpha, add)
    return got, want


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N", [1, 15, 16, 17, 100, 333])
@pytest.mark.parametrize("add", [False, True])
def test_paired_products_are_the_one_thread_bits(dt, N, add):
    fn = P.share_address(dt)
    assert fn != 0
    D, M = 784, 100
    x, W = rng.standard_normal((N, D)).astype(dt), rng.standard_normal((D, M)).astype(dt)
    d = rng.standard_normal((N, M)).astype(dt)
    got, want = _both(x, D, 1, W, rng.standard_normal((N, M)).astype(dt), add, fn)  # x @ W
    np.testing.assert_array_equal(got, want)
    got, want = _both(x, 1, D, d, rng.standard_normal((D, M)).astype(dt), add, fn, -0.1)  # W -= 0.1 x.T @ d
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dt", DTYPES)
def test_without_a_share_or_a_second_blas_thread_all_runs_here(dt):
    N, D, M = 100, 64, 30
    x, W = rng.standard_normal((N, D)).astype(dt), rng.standard_normal((D, M)).astype(dt)
    C0 = np.full((N, M), np.nan, dt)
    got, want = _both(x, D, 1, W, C0, False, 0)
    np.testing.assert_array_equal(got, want)
    with threads.one_thread_blas() as ok:  # the pool at one thread: the worker is not asked
        assert ok
        got, want = _both(x, D, 1, W, C0, False, P.share_address(dt))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("N, D", [(1, 784), (17, 784), (100, 784), (100, 9), (16, 8), (3, 1)])
@pytest.mark.parametrize("add", [False, True])
def test_a_split_product_is_its_two_sums_on_one_thread(dt, N, D, add):
    fn, M = P.share_address(dt), 100
    x, W = rng.standard_normal((N, D)).astype(dt), rng.standard_normal((D, M)).astype(dt)
    C0 = rng.standard_normal((N, M)).astype(dt)
    got, part = C0.copy(), np.full((N, M), np.nan, dt)
    P.split_product(x, W, got, add, part, fn)
    h = P.split_at(D)
    first, second = C0.copy(), np.empty((N, M), dt)  # the two sums as the shares make them
    if h < D:
        _product(x, D, 1, W[:h].copy(), first, 1.0, add)
        _product(x.ravel()[h:].reshape(1, -1), D, 1, W[h:].copy(), second, 1.0, False)
        want = first + second
    else:
        _product(x, D, 1, W, first, 1.0, add)
        want = first
    np.testing.assert_array_equal(got, want)
    with threads.one_thread_blas() as ok:  # all here: the same bits
        assert ok
        alone = C0.copy()
        P.split_product(x, W, alone, add, part, fn)
    np.testing.assert_array_equal(alone, want)
    tol = tolerances.equivalence(dt)
    ref = x.astype(np.float64) @ W.astype(np.float64) + (C0 if add else 0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol["rtol"] * 10 * np.abs(ref).max())


def test_paired_products_beside_another_threads_blas_products(blas_busy):
    fn = P.share_address(np.float64)
    x, W = rng.standard_normal((200, 784)), rng.standard_normal((784, 100))
    want = np.empty((200, 100))
    _product(x, 784, 1, W, want, 1.0, False)
    for _ in range(50):
        got = np.full((200, 100), np.nan)
        P.paired_product(x, 784, 1, W, got, 1.0, False, fn)
        np.testing.assert_array_equal(got, want)


def test_where_the_layers_pair_their_products():
    f64 = np.dtype(np.float64)
    assert nb_layers.product_mode(8, 784, 100, f64) == nb_layers._HERE
    assert nb_layers.product_mode(100, 784, 100, f64) == nb_layers._PAIR
    assert nb_layers.product_mode(1000, 784, 100, f64) == nb_layers._PAIR_FORWARD  # x: 6 MB
    with threads.one_thread_blas():
        assert nb_layers.product_mode(100, 784, 100, f64) == nb_layers._BLAS


@pytest.mark.parametrize("N", [100, 1000])
def test_the_affine_layer_paired_gives_the_one_thread_products(N):
    D, M = 784, 100
    W, b = rng.standard_normal((D, M)), rng.standard_normal(M)
    x, dout = rng.standard_normal((N, D)), rng.standard_normal((N, M))
    layer = Affine(W, b)
    out = layer.forward(x)
    want = np.tile(b, (N, 1))
    paired = N * D * 8 <= threads.PAIR_MAX_BYTES  # PAIR, else PAIR_FORWARD
    if paired:
        P.split_product(x, W, want, True, np.empty((N, M)), P.share_address(np.float64))  # its two sums
    else:
        _product(x, D, 1, W, want, 1.0, True)
    np.testing.assert_array_equal(out, want)
    layer.backward(dout)
    dW = np.empty((D, M))
    _product(x, 1, D, dout, dW, 1.0, False)
    if paired:
        np.testing.assert_array_equal(layer.dW, dW)  # paired: the kernel's bits
    else:
        np.testing.assert_allclose(layer.dW, x.T @ dout, rtol=1e-12, atol=1e-10)  # OpenBLAS's


def test_the_fused_net_pairs_its_first_layer_as_its_layers_do():
    N = 100
    x, t = rng.random((N, 784)), rng.integers(0, 10, N)
    kw = dict(backend="numba", seed=3, use_batchnorm=True, use_dropout=True)
    nets = [scratchprop.MultiLayerNetExtend(784, [100, 100], 10, **kw) for _ in range(2)]
    np.random.seed(0)
    fused = nets[0].gradient(x, t)
    np.random.seed(0)
    layered = nets[1].layered_gradient(x, t)
    assert nets[0]._fused_shapes[1][0][0] == nb_layers._PAIR
    for k in fused:
        np.testing.assert_array_equal(fused[k], layered[k])


def test_a_net_whose_input_outgrows_the_pair_limit_still_pairs_its_forward():
    N = 400  # x: 2.5 MB, over PAIR_MAX_BYTES: the forward paired, dW in BLAS
    x, t = rng.random((N, 784)), rng.integers(0, 10, N)
    net = scratchprop.MultiLayerNetExtend(784, [100], 10, backend="numba", seed=3, use_batchnorm=True)
    net.gradient(x, t)
    mode, fn = net._fused_shapes[1][:2]
    assert mode[0] == nb_layers._PAIR_FORWARD and fn == P.share_address(np.float64) != 0


def test_a_split_product_without_a_share_raises_instead_of_calling_nothing():
    x, W = rng.standard_normal((20, 30)), rng.standard_normal((30, 5))
    with pytest.raises(ValueError, match="share"):
        P.split_product(x, W, np.zeros((20, 5)), True, np.empty((20, 5)), 0)
