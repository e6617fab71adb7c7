"""Determinism: the same bits run to run for a given thread count; the on-disk cache.

Every reduction in the kernels (``db``, the mean loss) runs in a fixed
order and the passes around the products run on the calling thread, so the
results depend only on the thread count of the BLAS pool (NumPy's, see
``scratchprop.threads``), which splits products differently for one thread
and for two: results are bit-identical for a given count, and agree to
rounding across counts. The products are large enough to thread.
"""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import scratchprop.numba as B
from scratchprop import TwoLayerNet, threads
from scratchprop.kernels import config

rng = np.random.default_rng(11)
MAX_THREADS = numba.config.NUMBA_NUM_THREADS


def with_threads(n, fn):
    old, old_blas = numba.get_num_threads(), threads.blas_threads()
    B.set_num_threads(min(n, MAX_THREADS))
    try:
        return fn()
    finally:
        numba.set_num_threads(old)
        if old_blas is not None:
            threads._blas_controller().set_num_threads(old_blas)


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


def assert_close(a, b):
    for u, v in zip(a, b):
        np.testing.assert_allclose(np.asarray(u, float), np.asarray(v, float), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("N", [1, 64, 300, 2000])
def test_layers_same_bits_run_to_run_for_a_thread_count(N):
    x, W, b = rng.standard_normal((N, 300)), rng.standard_normal((300, 40)), rng.standard_normal(40)
    t = rng.integers(0, 40, N)
    for n in (1, 2):
        runs = [with_threads(n, lambda: layer_results(x, W, b, t)) for _ in range(3)]
        for other in runs[1:]:
            assert_bits(runs[0], other)
    assert_close(
        with_threads(1, lambda: layer_results(x, W, b, t)), with_threads(2, lambda: layer_results(x, W, b, t))
    )


@pytest.mark.parametrize("N", [1, 64, 1000])
def test_fused_net_same_bits_run_to_run_for_a_thread_count(N):
    x, t = rng.random((N, 784)), rng.integers(0, 10, N)
    for n in (1, 2):
        runs = [with_threads(n, lambda: net_results(x, t)) for _ in range(2)]
        assert_bits(runs[0], runs[1])
    assert_close(with_threads(1, lambda: net_results(x, t)), with_threads(2, lambda: net_results(x, t)))


def test_same_bits_whatever_ran_before():
    # NumPy work or a pause between steps changes timing only, never a bit
    import time

    x, t = rng.random((32, 784)), rng.integers(0, 10, 32)
    A, Bm = rng.random((500, 784)), rng.random((784, 100))

    def steps(between):
        net = TwoLayerNet(784, 100, 10, backend="numba", seed=0)
        out = []
        for _ in range(3):
            between()
            out.append(net.train_step(x, t, 0.1))
        return out + [net.params[k].copy() for k in net.params]

    quiet = steps(lambda: None)
    assert_bits(quiet, steps(lambda: np.dot(A, Bm)))
    assert_bits(quiet, steps(lambda: time.sleep(0.01)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numerical_gradient_threaded_equals_serial_bit_for_bit(dtype, monkeypatch):
    # the W1 block runs on Numba's threads only from NUMGRAD_MIN_ELEMENTS: same bits either way
    net = TwoLayerNet(60, 30, 5, backend="numba", seed=0, dtype=dtype)
    x, t = rng.random((4, 60)), rng.integers(0, 5, 4)
    monkeypatch.setattr(threads, "NUMGRAD_MIN_ELEMENTS", 10**12)
    serial = net.numerical_gradient(x, t)
    monkeypatch.setattr(threads, "NUMGRAD_MIN_ELEMENTS", 0)
    for n in (1, 2):
        got = with_threads(n, lambda: net.numerical_gradient(x, t))
        assert_bits([serial[k] for k in serial], [got[k] for k in serial])


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


@pytest.mark.parametrize("mode", ["blas", "here", "pair", "split"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N", [1, 5, 300, 3000])
def test_fused_predict_equals_the_naive_forward(dtype, N, mode):
    from test_numba_equivalence import assert_equiv

    from scratchprop.kernels import gemm, pair
    from scratchprop.kernels import two_layer_predict as K_pred

    if mode != "blas" and not gemm.FAST:
        pytest.skip("no AVX2 and FMA here: the products stay in BLAS")
    if mode in ("pair", "split") and not pair.AVAILABLE:
        pytest.skip("no paired products here")
    (D, H, C), x, _, _, params = fused_step_problem(dtype, N, False)
    h, s = np.empty((N, H), dtype), np.empty((N, C), dtype)
    code = {"blas": pair.BLAS, "here": pair.HERE, "pair": pair.PAIR_FORWARD, "split": pair.PAIR}[mode]
    fn = pair.share_address(dtype) if code in (pair.PAIR, pair.PAIR_FORWARD) else 0
    K_pred.predict(x, *params, h, s, code, fn, np.empty((N, H) if code == pair.PAIR else (0, 0), dtype))
    for got, want in zip((h, s), K_pred.predict_naive(x, *params)):
        assert_equiv(got, want)


@pytest.mark.parametrize("which", ["nbi", "nbc"])
def test_a_corrupt_cache_file_warns_once_recompiles_and_heals(tmp_path, which):
    code = (
        "import warnings\n"
        "import numpy as np\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import scratchprop\n"
        "    from scratchprop.kernels import config\n"
        "    net = scratchprop.TwoLayerNet(30, 8, 4, backend='numba', seed=0)\n"
        "    x, t = np.random.default_rng(0).random((5, 30)), np.arange(5) % 4\n"
        "    loss = float(net.train_step(x, t, 0.1))\n"
        "mine = [str(m.message) for m in w if issubclass(m.category, config.CacheWarning)]\n"
        "print('LOSS', repr(loss), 'WARNINGS', len(mine), mine[0] if mine else '')\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))

    def run():
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    first = run()
    assert "WARNINGS 0" in first
    files = [p for p in (tmp_path / "cache").rglob(f"*.{which}") if "two_layer" in p.name]
    assert files
    for p in files:
        p.write_bytes(b"\x80\x04 not a pickle")
    second = run()
    assert "WARNINGS 1 " in second and "unreadable" in second and "compiles again" in second
    assert second.split()[1] == first.split()[1]  # the same loss
    third = run()  # healed: no warning, the same loss
    assert "WARNINGS 0" in third and third.split()[1] == first.split()[1]
