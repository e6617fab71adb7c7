"""Determinism: the same bits run to run and for any thread count; the on-disk cache.

Every reduction in the kernels (``db``, the mean loss) runs in a fixed
order, and each output element is computed by one call whatever the thread
count, so results are bit-identical, not just close. The thread count is
Numba's and, with MKL, the products' (MKL in strict CNR mode, see
``scratchprop.kernels._blas_lib``); the products are large enough to thread.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import scratchprop.numba as B
from scratchprop import TwoLayerNet, _numba_net
from scratchprop import _numba_pools as P
from scratchprop.kernels import _blas_lib, config
from scratchprop.kernels import relu as K_relu
from scratchprop.kernels import softmax_loss as K_sl
from scratchprop.kernels import two_layer_threads as _KT

rng = np.random.default_rng(11)
MAX_THREADS = numba.config.NUMBA_NUM_THREADS


def with_threads(n, fn):
    old, old_blas = numba.get_num_threads(), _blas_lib.get_num_threads()
    B.set_num_threads(min(n, MAX_THREADS))
    try:
        return fn()
    finally:
        numba.set_num_threads(old)
        if old_blas is not None:
            _blas_lib.set_num_threads(old_blas)


def layer_results(x, W, b, t):
    a, r, s = B.Affine(W, b), B.Relu(), B.SoftmaxWithLoss()
    loss = s.forward(r.forward(a.forward(x)), t)
    dx = a.backward(r.backward(s.backward()))
    return [loss, s.y, dx, a.dW, a.db, r.mask]


def net_results(x, t):
    net = TwoLayerNet(784, 100, 10, backend="numba", seed=0)
    g = net.gradient(x, t)
    losses = [net.train_step(x, t, 0.1) for _ in range(3)]
    return [g[k] for k in ("W1", "b1", "W2", "b2")] + losses + [net.params[k].copy() for k in net.params]


def assert_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape
        assert u.tobytes() == v.tobytes()


@pytest.mark.parametrize("N", [1, 64, 300, 2000])  # 300: one-thread Affine products (below)
def test_layers_same_bits_run_to_run_and_across_threads(N, force_parallel):
    x, W, b = rng.standard_normal((N, 300)), rng.standard_normal((300, 40)), rng.standard_normal(40)
    t = rng.integers(0, 40, N)
    runs = [with_threads(n, lambda: layer_results(x, W, b, t)) for n in (2, 2, 1, 2)]
    for other in runs[1:]:
        assert_bits(runs[0], other)


def test_affine_one_thread_products_same_bits_whatever_ran_before(monkeypatch):
    # 300 x 300 x 40 = 3.6M multiply-adds: between BLAS_SERIAL_BELOW and
    # the one-thread threshold, so forward on one BLAS thread and backward_tasks
    N = 300
    assert config.BLAS_SERIAL_BELOW <= N * 300 * 40 < P.one_thread_below()
    x, W, b = rng.standard_normal((N, 300)), rng.standard_normal((300, 40)), rng.standard_normal(40)
    dout = rng.standard_normal((N, 40))
    calls = []
    tasks = B._K_affine.backward_tasks
    monkeypatch.setattr(B._K_affine, "backward_tasks", lambda *a: calls.append(1) or tasks(*a))

    def run(last_blas):
        P._last_blas = last_blas  # -1e9: no BLAS pool spinning; now: one may be (unless one pool)
        a = B.Affine(W, b)
        return [a.forward(x), a.backward(dout), a.dW, a.db]

    monkeypatch.setattr(P, "_last_blas", -1e9)
    runs = [with_threads(2, lambda: run(-1e9)), with_threads(1, lambda: run(-1e9)),
            with_threads(2, lambda: run(P._clock()))]
    assert len(calls) == (3 if _blas_lib.THREADS_LOCAL else 0)
    for other in runs[1:]:
        assert_bits(runs[0], other)
    monkeypatch.setattr(config, "AFFINE_ONE_THREAD_BELOW", 0)  # every product threaded
    monkeypatch.setattr(config, "AFFINE_ONE_THREAD_BELOW_OPENBLAS", 0)
    threaded = with_threads(2, lambda: run(-1e9))
    if _blas_lib.NAME == "mkl":  # strict CNR: the same bits on one thread or two
        assert_bits(runs[0], threaded)
    else:  # OpenBLAS's products differ in the last bits between one thread and two
        for u, v in zip(runs[0], threaded):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N", [1, 64, 1000])
def test_fused_net_same_bits_run_to_run_and_across_threads(N):
    x, t = rng.random((N, 784)), rng.integers(0, 10, N)
    runs = [with_threads(n, lambda: net_results(x, t)) for n in (2, 2, 1)]
    for other in runs[1:]:
        assert_bits(runs[0], other)


def test_fused_small_batch_steps_same_bits_whatever_ran_before(monkeypatch):
    # batch 32 takes step_split; right after a threaded product of another pool it runs on
    # one Numba thread (scratchprop._numba_pools.on_our_threads), never a different kernel
    x, t = rng.random((32, 784)), rng.integers(0, 10, 32)
    calls = []
    real = P.on_our_threads
    monkeypatch.setattr(P, "on_our_threads", lambda *a: calls.append(a[0]) or real(*a))
    monkeypatch.setattr(_numba_net, "_STANDARD", None)  # re-read the hooks

    def steps(last_blas):
        net = TwoLayerNet(784, 100, 10, backend="numba", seed=0)
        out = []
        for _ in range(3):
            P._last_blas = last_blas() if callable(last_blas) else last_blas
            out.append(net.train_step(x, t, 0.1))
        return out + [net.params[k].copy() for k in net.params]

    monkeypatch.setattr(P, "_last_blas", -1e9)
    quiet = with_threads(2, lambda: steps(-1e9))
    busy = with_threads(2, lambda: steps(P._clock))
    assert_bits(quiet, busy)
    if _blas_lib.THREADS_LOCAL:
        assert len(calls) == 6 and all(k is _KT.step_split for k in calls)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_kernels_equal_serial_bit_for_bit(dtype):
    # the wrappers pick serial or prange by size and by timing: both must give the same bits
    s = rng.standard_normal((3001, 10)).astype(dtype)
    labels = rng.integers(0, 10, 3001)
    T = np.eye(10, dtype=dtype)[labels]
    noT, nolab = np.empty((0, 0), dtype), np.empty(0, np.intp)

    def relu_out():
        return np.empty(s.size, dtype), np.empty(s.size, np.bool_)

    for n in (1, 2):
        par = with_threads(n, lambda: [K_sl.forward_parallel(s, labels, noT, 7),
                                       K_sl.forward_parallel(s, nolab, T, 7),
                                       K_sl.softmax_parallel(s, 5),
                                       K_relu.forward_parallel(s.reshape(-1), *relu_out(), 3)])
        ser = [K_sl.forward(s, labels, noT), K_sl.forward(s, nolab, T), K_sl.softmax(s),
               K_relu.forward(s.reshape(-1), *relu_out())]
        for p_, s_ in zip(par, ser):
            assert_bits(p_ if isinstance(p_, tuple) else (p_,), s_ if isinstance(s_, tuple) else (s_,))
        y = ser[0][0]
        one, nf = dtype(1), dtype(3001)
        assert_bits([with_threads(n, lambda: K_sl.backward_parallel(y, labels, noT, one, nf, 9))],
                    [K_sl.backward(y, labels, noT, one, nf)])


def test_db_matches_numpy_bit_for_bit():
    # NumPy sums axis 0 of a C array row by row; so does the kernel
    x, W, b = rng.standard_normal((500, 30)), rng.standard_normal((30, 20)), rng.standard_normal(20)
    dout = rng.standard_normal((500, 20))
    layer = B.Affine(W, b)
    layer.forward(x)
    layer.backward(dout)
    assert layer.db.tobytes() == np.sum(dout, axis=0).tobytes()


def test_cache_location_follows_numba_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    where = config.cache_location()
    assert where is not None and where.startswith(str(tmp_path))
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    (tmp_path / "a_file").write_text("not a directory")
    assert config.cache_location() is None


def test_unwritable_cache_dir_warns_once_and_runs(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import numpy as np\n"
        "    import scratchprop.numba as B\n"
        "    from scratchprop.kernels import config, relu, affine, softmax_loss, two_layer\n"
        "    r = B.Relu()\n"
        "    out = r.forward(np.linspace(-1, 1, 600))\n"
        "    dx = r.backward(np.ones(600))\n"
        "assert not config.CACHE\n"
        "assert out.min() == 0 and out.max() == 1 and dx.sum() == (np.linspace(-1, 1, 600) > 0).sum()\n"
        "mine = [x for x in w if issubclass(x.category, config.CacheWarning)]\n"
        "print('WARNINGS', len(mine), str(mine[0].message) if mine else '')\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(blocker / "cache"))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "WARNINGS 1 " in res.stdout
    assert "not writable" in res.stdout


def fused_step_problem(dtype, N, onehot, sizes=(40, 30, 7)):
    """``(sizes, x, labels, T, [W1, b1, W2, b2])`` for calling the fused step kernels directly."""
    D, H, C = sizes
    x = rng.standard_normal((N, D)).astype(dtype)
    labels = rng.integers(0, C, N).astype(np.intp)
    T = np.eye(C, dtype=dtype)[labels] if onehot else np.empty((0, C), dtype)
    lab = np.empty(0, np.intp) if onehot else labels
    return sizes, x, lab, T, [rng.standard_normal(s).astype(dtype) for s in ((D, H), (H,), (H, C), (C,))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [1, 5, 300])
@pytest.mark.parametrize("onehot", [False, True])
@pytest.mark.parametrize("update", [False, True])
def test_fused_step_parallel_equals_serial_bit_for_bit(dtype, N, onehot, update):
    # TwoLayerNet picks step_parallel by size (and only when the BLAS shares Numba's pool):
    # the choice must not change a bit, for any thread count
    from scratchprop.kernels import two_layer as K_two
    from scratchprop.kernels import two_layer_threads as K_threads

    (D, H, C), x, lab, T, base = fused_step_problem(dtype, N, onehot)

    def run(kernel, *extra):
        params = [p.copy() for p in base]
        work = [np.empty(s, dtype) for s in ((N, H), (N, C), (N, C), (N, H), (D, H))]
        out = kernel(x, lab, T, *params, 0.1, update, *work, *extra)
        return list(out) + params + work[:3]

    serial = run(K_two.step)
    for n in (1, 2):
        assert_bits(serial, with_threads(n, lambda: run(K_threads.step_parallel, config.NCHUNKS)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [1, 5, 300, 3000])
def test_fused_predict_parallel_equals_serial_bit_for_bit_and_the_naive_forward(dtype, N):
    from scratchprop.kernels import two_layer_predict as K_pred
    from test_numba_equivalence import assert_equiv

    (D, H, C), x, _, _, params = fused_step_problem(dtype, N, False)

    def run(kernel, *extra):
        h, s = np.empty((N, H), dtype), np.empty((N, C), dtype)
        kernel(x, *params, h, s, *extra)
        return [h, s]

    serial = run(K_pred.predict)
    for n in (1, 2):
        assert_bits(serial, with_threads(n, lambda: run(K_pred.predict_parallel, config.NCHUNKS)))
    for got, want in zip(serial, K_pred.predict_naive(x, *params)):
        assert_equiv(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [2, 5, 64])
@pytest.mark.parametrize("onehot", [False, True])
@pytest.mark.parametrize("nblocks", [config.STEP_SPLIT_BLOCKS, 3])
def test_fused_step_split_same_bits_for_any_thread_count_and_close_to_serial(dtype, N, onehot, nblocks):
    from scratchprop.kernels import two_layer as K_two
    from scratchprop.kernels import two_layer_threads as K_threads
    from test_numba_equivalence import assert_equiv

    (D, H, C), x, lab, T, base = fused_step_problem(dtype, N, onehot)

    def run(split):
        params = [p.copy() for p in base]
        h, s, y, dh = (np.empty(sh, dtype) for sh in ((N, H), (N, C), (N, C), (N, H)))
        if split:
            hp = np.empty((nblocks, N, H), dtype)
            status, loss = K_threads.step_split(x, lab, T, *params, 0.1, h, hp, s, y, dh, nblocks)
        else:
            status, loss, *_ = K_two.step(x, lab, T, *params, 0.1, True, h, s, y, dh, np.empty((D, H), dtype))
        assert status == 0
        return [loss] + params + [h, y]  # b1, b2 carry db1, db2

    split = [with_threads(n, lambda: run(True)) for n in (2, 1, 2)]
    for other in split[1:]:
        assert_bits(split[0], other)
    for a, b in zip(split[0], run(False)):  # the same step up to rounding
        assert_equiv(a, b, dtype=dtype, floor=1)
