"""One thread pool at a time: when the Numba backend may run ``prange`` kernels.

Two kinds of worker threads can want the two cores: Numba's (``prange``
kernels) and the BLAS's (threaded matrix products). With MKL on GNU OpenMP
and Numba's ``omp`` layer they are the same pool (:func:`one_pool`). With
SciPy's OpenBLAS they are not, and OpenBLAS's workers spin for a while after
each threaded product: a ``prange`` region started then makes both pools
spin against each other (measured: 0.3 ms became 16 ms per step). So the
layers note each threaded product (:func:`used_blas`) and use a ``prange``
kernel only when no other pool may be spinning (:func:`quiet`,
:data:`~scratchprop.kernels.config.BLAS_SPIN_S`); kernels whose threads call
one-thread products run on one Numba thread then (:func:`on_our_threads`).
Both choices give the same bits, so results never depend on timing.
"""
from time import perf_counter as _clock

import numba as _numba

from .kernels import config as _config

_config.prefer_threading_layer()

from .kernels import _blas_lib  # noqa: E402  (after the threading-layer choice)

__all__ = ["set_num_threads", "used_blas", "one_pool", "quiet", "parallel", "on_our_threads",
           "one_thread_below"]

_last_blas = -1e9  # perf_counter() of our last threaded BLAS product
_ONE_POOL = None


def set_num_threads(n):
    """Threads for Numba's ``prange`` kernels and, with MKL, for the matrix products.

    Numba's ``set_num_threads`` (1 to ``NUMBA_NUM_THREADS``; it raises
    otherwise) plus ``MKL_Set_Num_Threads``. SciPy's OpenBLAS follows
    ``OPENBLAS_NUM_THREADS``.
    """
    _numba.set_num_threads(n)
    _blas_lib.set_num_threads(n)


def used_blas():
    """Note that a kernel just ran threaded BLAS products (see :data:`~.config.BLAS_SPIN_S`)."""
    global _last_blas
    _last_blas = _clock()


def one_pool():
    """Whether the BLAS's workers are Numba's (MKL on GNU OpenMP with Numba's ``omp`` layer).

    Decided on first use from the layer Numba actually launched: code that
    started Numba's threads before this module was imported (any parallel
    function, even ``numba.get_num_threads()``) may have got ``tbb`` or
    ``workqueue`` instead of ``omp``.
    """
    global _ONE_POOL
    if _ONE_POOL is None:
        _numba.get_num_threads()  # launches Numba's threads if nothing has yet
        _ONE_POOL = _blas_lib.NAME == "mkl" and _numba.threading_layer() == "omp"
    return _ONE_POOL


def quiet():
    """No BLAS pool of another kind may be spinning: one pool, or our last threaded product is old."""
    return one_pool() or _clock() - _last_blas >= _config.BLAS_SPIN_S


def parallel(n, minimum):
    """Whether ``n`` elements of elementwise work go to the ``prange`` kernel.

    Not below ``minimum`` elements, and not while another pool may spin
    (:func:`quiet`).
    """
    return n >= minimum and quiet()


def on_our_threads(kernel, *args):
    """``kernel(*args)``, a kernel whose ``prange`` threads call one-thread BLAS products.

    While a BLAS pool of another kind may still spin (:func:`quiet`) it runs
    on one Numba thread: the same work, on fixed blocks, so the same bits,
    without two pools fighting for the cores. Which kernel runs is decided by
    sizes only, never by timing, so results do not depend on what ran before
    (SciPy's OpenBLAS gives slightly different bits on one thread and on two).
    """
    if quiet():
        return kernel(*args)
    n = _numba.get_num_threads()
    _numba.set_num_threads(1)
    try:
        return kernel(*args)
    finally:
        _numba.set_num_threads(n)


def one_thread_below():
    """``Affine``'s one-thread-products threshold for the kernels' BLAS (see ``kernels.config``)."""
    if _blas_lib.NAME == "mkl":
        return _config.AFFINE_ONE_THREAD_BELOW
    return _config.AFFINE_ONE_THREAD_BELOW_OPENBLAS
