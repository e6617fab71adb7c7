"""The kernels' BLAS (``scratchprop.kernels._blas_lib``): the choice, and both libraries' results.

The main test run uses whatever ``SCRATCHPROP_BLAS=auto`` picks (MKL where
the ``mkl`` wheel is installed, as with ``.[test]`` on Linux x86-64). The
other library can only be chosen in a fresh process, so the equivalence and
determinism suites are re-run in a subprocess with ``SCRATCHPROP_BLAS=scipy``.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
from scratchprop.kernels import _blas_lib  # noqa: E402

TESTS = Path(__file__).resolve().parent


def _python(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full,
                          timeout=600)


def test_choice_is_reported():
    assert _blas_lib.NAME in ("mkl", "scipy")
    assert _blas_lib.DESCRIPTION
    if _blas_lib.NAME == "mkl":
        assert "Math Kernel Library" in _blas_lib.DESCRIPTION and _blas_lib.get_num_threads() >= 1
        if "MKL_CBWR" not in os.environ:  # strict CNR: bit-identical for any thread count
            assert "CBWR 0x1" in _blas_lib.DESCRIPTION
    else:
        assert "OpenBLAS" in _blas_lib.DESCRIPTION and _blas_lib.get_num_threads() is None


def test_unknown_choice_is_a_clear_error():
    r = _python("import scratchprop.numba", SCRATCHPROP_BLAS="atlas")
    assert r.returncode != 0
    assert "SCRATCHPROP_BLAS must be auto, mkl or scipy, got 'atlas'" in r.stderr


def test_scipy_choice_loads_openblas_and_computes():
    code = ("import numpy as np, scratchprop.numba as B\n"
            "from scratchprop.kernels import _blas_lib\n"
            "rng = np.random.default_rng(0)\n"
            "x, W, b = rng.standard_normal((50, 30)), rng.standard_normal((30, 7)), np.zeros(7)\n"
            "a = B.Affine(W, b); out = a.forward(x); a.backward(np.ones_like(out))\n"
            "assert np.allclose(out, x @ W) and np.allclose(a.dW, x.T @ np.ones_like(out))\n"
            "print(_blas_lib.NAME)\n")
    r = _python(code, SCRATCHPROP_BLAS="scipy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["scipy"]


@pytest.mark.skipif(_blas_lib.NAME != "mkl", reason="MKL is not installed: the main run already "
                    "tested SciPy's OpenBLAS")
def test_equivalence_and_determinism_suites_pass_on_scipy_openblas():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        str(TESTS / "test_numba_equivalence.py"), str(TESTS / "test_determinism.py"),
                        str(TESTS / "test_numba_dropin.py")],
                       capture_output=True, text=True, timeout=1200,
                       env=dict(os.environ, SCRATCHPROP_BLAS="scipy"), cwd=TESTS.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_mkl_choice_insists():
    # SCRATCHPROP_BLAS=mkl loads MKL or fails loudly; it never falls back to OpenBLAS
    r = _python("import scratchprop.numba\nfrom scratchprop.kernels import _blas_lib\n"
                "print(_blas_lib.NAME)", SCRATCHPROP_BLAS="mkl")
    if r.returncode == 0:
        assert r.stdout.split() == ["mkl"]
    else:
        assert "ImportError" in r.stderr and _blas_lib.NAME != "mkl", r.stderr


def test_small_and_large_products_agree_with_numpy():
    # products below BLAS_SERIAL_BELOW run on one BLAS thread, larger ones threaded
    import scratchprop.numba as B
    from scratchprop.kernels.config import BLAS_SERIAL_BELOW
    rng = np.random.default_rng(3)
    for N in (1, 3, 2 * BLAS_SERIAL_BELOW // (300 * 40)):
        x, W, b = rng.standard_normal((N, 300)), rng.standard_normal((300, 40)), rng.standard_normal(40)
        a = B.Affine(W, b)
        out = a.forward(x)
        dx = a.backward(np.ones_like(out))
        np.testing.assert_allclose(out, x @ W + b, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.dW, x.T @ np.ones_like(out), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, np.ones_like(out) @ W.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_one_pool_follows_the_layer_numba_launched(layer):
    # only MKL on Numba's omp pool counts as one pool (the fused step_parallel); any other layer
    # (chosen by the user, or launched before scratchprop.numba was imported) must not
    code = ("import numba, numpy as np\n"
            "numba.get_num_threads()  # Numba's threads start before scratchprop.numba is imported\n"
            "import scratchprop.numba as B\n"
            "from scratchprop import TwoLayerNet\n"
            "ref = TwoLayerNet(20, 8, 4, seed=0)\n"
            "fast = TwoLayerNet(20, 8, 4, backend='numba', seed=0)\n"
            "x, t = np.random.default_rng(0).random((32, 20)), np.arange(32) % 4\n"
            "for _ in range(3):\n"
            "    ref.train_step(x, t, 0.1); fast.train_step(x, t, 0.1)\n"
            "assert all(np.allclose(ref.params[k], fast.params[k], rtol=1e-12, atol=1e-14) for k in ref.params)\n"
            "from scratchprop import _numba_pools as P\n"
            "print(numba.threading_layer(), B._blas_lib.NAME, P.one_pool())\n")
    r = _python(code, NUMBA_THREADING_LAYER=layer)
    assert r.returncode == 0, r.stderr
    got_layer, blas, one_pool = r.stdout.split()
    assert got_layer == layer
    assert one_pool == str(blas == "mkl" and layer == "omp")


@pytest.mark.skipif(_blas_lib.NAME != "mkl", reason="MKL is not the kernels' BLAS")
def test_set_num_threads_overrides_a_thread_local_mkl_count():
    # torch.set_num_threads sets MKL's per-thread count, which would otherwise win
    import scratchprop.numba as B
    old = _blas_lib.get_num_threads()
    try:
        _blas_lib._MKL.MKL_Set_Num_Threads_Local(3)
        B.set_num_threads(1)
        assert _blas_lib.get_num_threads() == 1
    finally:
        B.set_num_threads(old)
    assert _blas_lib.get_num_threads() == old


@pytest.mark.parametrize("choice", ["auto", "scipy"])
def test_threaded_kernels_leave_scipy_openblas_thread_count_alone(choice):
    # SciPy's OpenBLAS's openblas_set_num_threads_local is process-wide: two prange threads
    # setting and restoring it at once left it at 1 (every later product on one thread)
    code = ("import ctypes, numpy as np\n"
            "import scratchprop.numba as B\n"
            "from scratchprop import TwoLayerNet, _numba_pools as P\n"
            "from scratchprop.kernels import _blas_lib\n"
            "addr = _blas_lib._scipy_openblas_threads_local()\n"
            "if addr is None:\n"
            "    print('absent'); raise SystemExit\n"
            "f = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(addr)\n"
            "def count():\n"
            "    old = f(1); f(old); return old\n"
            "import numba\nB.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))\n"
            "f(2); assert count() == 2\n"
            "rng = np.random.default_rng(0)\n"
            "for N, D in ((300, 300), (2, 784), (32, 784)):\n"
            "    a = B.Affine(rng.standard_normal((D, 40)), np.zeros(40))\n"
            "    net = TwoLayerNet(D, 100, 10, backend='numba', seed=0)\n"
            "    x, t = rng.random((N, D)), np.arange(N) % 10\n"
            "    for _ in range(50):\n"
            "        P._last_blas = -1e9  # as after a pause: the one-thread paths may run\n"
            "        a.backward(a.forward(x)); net.train_step(x, t, 0.1)\n"
            "print(count())\n")
    r = _python(code, SCRATCHPROP_BLAS=choice)
    assert r.returncode == 0, r.stderr
    if r.stdout.strip() == "absent":
        pytest.skip("SciPy's BLAS has no openblas_set_num_threads_local")
    assert r.stdout.split()[-1] == "2"
