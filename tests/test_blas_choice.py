"""The kernels' BLAS and the threading model (``scratchprop.kernels._blas``, ``scratchprop.threads``).

The kernels call NumPy's own OpenBLAS where NumPy's wheel bundles one, so a
process has one BLAS pool; SciPy's ``cython_blas`` is the fallback. The
fallback can only be chosen in a fresh process, so the equivalence and
determinism suites are re-run in a subprocess with ``SCRATCHPROP_BLAS=scipy``.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
from scratchprop import threads  # noqa: E402
from scratchprop.kernels import _blas  # noqa: E402

TESTS = Path(__file__).resolve().parent
_NUMPY_BUNDLES_OPENBLAS = any(
    "openblas64" in p for p in __import__("glob").glob(os.path.dirname(np.__file__) + "*/*")
)


def _python(code, **env):
    full = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=600)


@pytest.mark.skipif(not _NUMPY_BUNDLES_OPENBLAS, reason="this NumPy bundles no OpenBLAS")
def test_kernels_call_numpys_own_blas():
    from threadpoolctl import threadpool_info

    assert _blas.NAME == "numpy"
    numpy_pools = [
        p
        for p in threadpool_info()
        if p["user_api"] == "blas" and os.path.realpath(p["filepath"]) == _blas.PATH
    ]
    assert numpy_pools, (_blas.PATH, threadpool_info())
    assert "numpy" in _blas.PATH
    assert threads.blas_threads() == numpy_pools[0]["num_threads"]


@pytest.mark.skipif(not _NUMPY_BUNDLES_OPENBLAS, reason="this NumPy bundles no OpenBLAS")
def test_a_training_process_runs_one_pool_only():
    # the evidence the model rests on: layer and fused steps start no thread and load no
    # OpenMP runtime. (With SciPy installed, Numba itself loads SciPy's OpenBLAS when it first
    # compiles or loads a function, whose pool then idles: it is loaded here first.)
    code = (
        "import os, numpy as np, numba\n"
        "from threadpoolctl import threadpool_info\n"
        "try:\n    import scipy.linalg.cython_blas\nexcept ImportError:\n    pass\n"
        "numba.njit(lambda a: a + 1)(1)\n"
        "np.dot(np.ones((300, 300)), np.ones((300, 300)))  # NumPy's pool starts its workers\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "import scratchprop, scratchprop.numba as B\n"
        "net = scratchprop.TwoLayerNet(784, 100, 10, backend='numba', seed=0)\n"
        "x, t = np.random.default_rng(0).random((1000, 784)), np.arange(1000) % 10\n"
        "for _ in range(3):\n"
        "    net.train_step(x, t, 0.1); net.gradient(x, t); net.accuracy(x, t)\n"
        "    a = B.Affine(net.params['W1'], net.params['b1']); a.backward(a.forward(x))\n"
        "after = len(os.listdir('/proc/self/task'))\n"
        "libs = sorted((p['user_api'], p['internal_api']) for p in threadpool_info())\n"
        "print(before, after, libs)\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    before, after, libs = r.stdout.split(" ", 2)
    assert int(after) == int(before), r.stdout
    assert "openmp" not in libs, libs


def test_unknown_choice_is_a_clear_error():
    r = _python("import scratchprop.numba", SCRATCHPROP_BLAS="atlas")
    assert r.returncode != 0
    assert "SCRATCHPROP_BLAS must be numpy or scipy, got 'atlas'" in r.stderr


def test_scipy_fallback_computes():
    code = (
        "import numpy as np, scratchprop.numba as B\n"
        "from scratchprop.kernels import _blas\n"
        "rng = np.random.default_rng(0)\n"
        "for dt in (np.float64, np.float32):\n"
        "    for N in (1, 50):\n"
        "        x, W = rng.standard_normal((N, 30)).astype(dt), rng.standard_normal((30, 7)).astype(dt)\n"
        "        a = B.Affine(W, np.zeros(7, dt)); out = a.forward(x); dx = a.backward(np.ones_like(out))\n"
        "        tol = dict(rtol=1e-5, atol=1e-5) if dt == np.float32 else dict(rtol=1e-12, atol=1e-12)\n"
        "        np.testing.assert_allclose(out, x @ W, **tol)\n"
        "        np.testing.assert_allclose(a.dW, x.T @ np.ones_like(out), **tol)\n"
        "        np.testing.assert_allclose(dx, np.ones_like(out) @ W.T, **tol)\n"
        "print(_blas.NAME)\n"
    )
    r = _python(code, SCRATCHPROP_BLAS="scipy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["scipy"]


@pytest.mark.skipif(_blas.NAME != "numpy", reason="the main run already uses the fallback")
def test_equivalence_and_determinism_suites_pass_on_the_scipy_fallback():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            str(TESTS / "test_numba_equivalence.py"),
            str(TESTS / "test_determinism.py"),
            str(TESTS / "test_numba_dropin.py"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(os.environ, SCRATCHPROP_BLAS="scipy"),
        cwd=TESTS.parent,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "failed" not in r.stdout


def test_set_num_threads_sizes_numbas_threads_and_the_one_blas_pool():
    import numba

    import scratchprop.numba as B

    old, old_blas = numba.get_num_threads(), threads.blas_threads()
    try:
        B.set_num_threads(1)
        assert numba.get_num_threads() == 1
        if old_blas is not None:
            assert threads.blas_threads() == 1
    finally:
        numba.set_num_threads(old)
        if old_blas is not None:
            threads._blas_controller().set_num_threads(old_blas)
    assert threads.blas_threads() == old_blas


def test_thresholds_follow_the_stated_model():
    # a region costs REGION_START_S; it is worth it from ten times that much serial work
    assert threads.min_elements(5) * 5e-9 == pytest.approx(10 * threads.REGION_START_S, rel=1e-6)
    assert threads.NUMGRAD_MIN_ELEMENTS == threads.min_elements(5)
    assert threads.CONV_MIN_ELEMENTS == threads.min_elements(2.5)
    # a divider-bound update splits a parameter where the worker's half saves its start
    assert threads.UPDATE_PAIR_MIN_ELEMENTS == threads.min_elements(
        0.75, payoff=1, start_s=threads.PAIR_START_S
    )
    # Dropout's draws go to the worker beside a product where they save its start (~1.1 ns a draw)
    assert threads.DRAWS_PAIR_MIN_ELEMENTS == threads.min_elements(
        1.1, payoff=1, start_s=threads.PAIR_START_S
    )
    names = [n for n in vars(threads) if n.isupper() and n.endswith("_MIN_ELEMENTS")]
    assert names == [
        "NUMGRAD_MIN_ELEMENTS",
        "CONV_MIN_ELEMENTS",
        "UPDATE_PAIR_MIN_ELEMENTS",
        "DRAWS_PAIR_MIN_ELEMENTS",
    ]


def test_parallel_region_is_serial_when_small_busy_or_single_threaded():
    import numba

    with threads.parallel_region(10, 100) as threaded:
        assert not threaded
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with threads.parallel_region(10**9, 100) as threaded:
            assert not threaded
    finally:
        numba.set_num_threads(old)
    if old >= 2 and numba.threading_layer() != "omp":
        with threads.parallel_region(10**9, 100) as outer:
            assert outer
            with threads.parallel_region(10**9, 100) as inner:  # another region is running
                assert not inner
        with threads.parallel_region(10**9, 100) as again:  # released
            assert again


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_any_threading_layer_gives_the_same_results(layer):
    # the user may choose the layer (or launch Numba's threads first); results must not change
    code = (
        "import numba, numpy as np\n"
        "numba.get_num_threads()\n"
        "import scratchprop.numba as B\n"
        "from scratchprop import TwoLayerNet\n"
        "ref = TwoLayerNet(20, 8, 4, seed=0)\n"
        "fast = TwoLayerNet(20, 8, 4, backend='numba', seed=0)\n"
        "x, t = np.random.default_rng(0).random((32, 20)), np.arange(32) % 4\n"
        "for _ in range(3):\n"
        "    ref.train_step(x, t, 0.1); fast.train_step(x, t, 0.1)\n"
        "assert all(np.allclose(ref.params[k], fast.params[k], rtol=1e-12, atol=1e-14) for k in ref.params)\n"
        "g = fast.numerical_gradient(x[:3], t[:3])\n"
        "print(numba.threading_layer())\n"
    )
    r = _python(code, NUMBA_THREADING_LAYER=layer)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [layer]
