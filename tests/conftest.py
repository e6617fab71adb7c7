import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (fd, booknet)


@pytest.fixture
def kernels_always(monkeypatch):
    """Route even tiny arrays of the Numba wrappers to the kernels (no NumPy path for small sizes)."""
    from scratchprop import _dispatch

    monkeypatch.setattr(_dispatch, "KERNEL_MIN_ELEMENTS", 0)


@pytest.fixture
def blas_busy():
    """Another Python thread runs NumPy products (the BLAS pool our paired work shares) for the
    whole test; at its end, they must all have given the same result."""
    import threading

    import numpy as np

    rng = np.random.default_rng(5)
    A, B, stop, done = rng.random((300, 300)), rng.random((300, 300)), threading.Event(), []

    def busy():
        while not stop.is_set():
            done.append((A @ B)[0, 0])

    other = threading.Thread(target=busy)
    other.start()
    try:
        yield
    finally:
        stop.set()
        other.join()
    assert done and np.all(np.array(done) == done[0])


@pytest.fixture(autouse=True)
def _thread_counts_restored():
    """Each test leaves Numba's thread count and the BLAS pool's as it found them (the CLI's
    ``--threads``, run in this process, sets both): later tests must not run on one thread."""
    if "numba" not in sys.modules:  # the lazy-import tests must see no Numba: import nothing here
        yield
        if "numba" in sys.modules:  # this test started it: its default count
            import numba

            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        return
    import numba

    from scratchprop import threads

    n, blas = numba.get_num_threads(), threads._blas_setter()
    b = blas[1]() if blas else None
    yield
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    if blas and blas[1]() != b:
        blas[0](b)
