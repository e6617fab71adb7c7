"""BLAS ``gemm``/``gemv`` with ``alpha``/``beta`` and output buffers, callable from ``@njit`` code.

``np.dot`` inside Numba always allocates and always computes ``1 * A @ B``.
These wrappers call BLAS's Fortran-interface ``?gemm``/``?gemv`` directly, so
a kernel can write into a preallocated array, accumulate into it
(``beta = 1``) and scale the product (``alpha = -lr`` fuses an SGD update
into the weight-gradient product). Which library answers (MKL or SciPy's
OpenBLAS) is decided by :mod:`._blas_lib`.

Arrays are row-major: 2-D with a unit inner stride and any row stride (a
C-contiguous array, or a block of its columns or rows). The calls link by
symbol name, so kernels that use them stay cacheable.
"""
import numpy as np
from numba import types
from numba.extending import overload

from . import _blas_lib  # registers the scratchprop_* symbols  # noqa: F401
from .config import BLAS_SERIAL_BELOW, FEW_ROWS, TINY


def _gemm_sig(dt):
    p, i, c = types.CPointer(dt), types.CPointer(types.int32), types.CPointer(types.uint8)
    return types.void(c, c, i, i, i,          # transa, transb, m, n, k
                      p, p, i, p, i,          # alpha, a, lda, b, ldb
                      p, p, i)                # beta, c, ldc


def _gemv_sig(dt):
    p, i, c = types.CPointer(dt), types.CPointer(types.int32), types.CPointer(types.uint8)
    return types.void(c, i, i,                # trans, m, n
                      p, p, i, p, i,          # alpha, a, lda, x, incx
                      p, p, i)                # beta, y, incy


#: ``int f(int n)``: this thread's BLAS thread count for the next products; returns the old one.
_THREADS_LOCAL = types.ExternalFunction("scratchprop_blas_threads_local", types.intc(types.intc))
#: ``old = blas_threads_local(n)`` in ``@njit`` code: the calling thread's products use ``n``
#: BLAS threads until ``blas_threads_local(old)`` (MKL: per thread; SciPy's OpenBLAS: for the
#: whole process, see :data:`small_threads_local`; a no-op with neither).
blas_threads_local = _THREADS_LOCAL
#: The same for the small-product library (SciPy's OpenBLAS, see ``_blas_lib``).
_SMALL_THREADS_LOCAL = types.ExternalFunction("scratchprop_small_threads_local", types.intc(types.intc))
#: ``old = small_threads_local(1)`` before a ``prange`` region whose threads call BLAS, and
#: ``small_threads_local(old)`` after it, on the calling thread. SciPy's OpenBLAS (a pthreads
#: build) has ``openblas_set_num_threads_local`` but its count is process-wide (measured: a
#: count set in one thread reached the products of another), so two threads setting and
#: restoring it at once could leave it at 1 for good. Bracketed, every call inside the region
#: finds 1 and sets 1.
small_threads_local = _SMALL_THREADS_LOCAL
_PREFIX = {types.float32: "s", types.float64: "d"}
_GEMM = {dt: types.ExternalFunction(f"scratchprop_{k}gemm", _gemm_sig(dt)) for dt, k in _PREFIX.items()}
_GEMV = {dt: types.ExternalFunction(f"scratchprop_{k}gemv", _gemv_sig(dt)) for dt, k in _PREFIX.items()}
_SMALL_GEMM = {dt: types.ExternalFunction(f"scratchprop_small_{k}gemm", _gemm_sig(dt))
               for dt, k in _PREFIX.items()}


def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; ``op`` transposes when ``trans_*``.

    ``op(a) (M, K)``, ``op(b) (K, N)``, ``c (M, N)``; all one float dtype,
    row-major with unit inner stride. Only callable from ``@njit`` code.
    """
    raise NotImplementedError("gemm is only callable from @njit code")


@overload(gemm, jit_options={"nogil": True})
def _gemm_impl(trans_a, trans_b, alpha, a, b, beta, c):
    dt = c.dtype
    fn = _GEMM[dt]
    small_fn = _SMALL_GEMM[dt]
    npdt = np.float32 if dt == types.float32 else np.float64

    def impl(trans_a, trans_b, alpha, a, b, beta, c):
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:  # an empty sum; BLAS may leave c alone when beta == 0
            for i in range(m):
                for j in range(n):
                    c[i, j] = 0 if beta == 0 else beta * c[i, j]
            return
        # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T:
        # pass B first, A second, with the same transpose flags.
        ints = np.empty(6, np.int32)
        ints[0] = n
        ints[1] = m
        ints[2] = k
        ints[3] = max(b.strides[0] // b.itemsize, b.shape[1], 1)   # ldb
        ints[4] = max(a.strides[0] // a.itemsize, a.shape[1], 1)   # lda
        ints[5] = max(c.strides[0] // c.itemsize, n, 1)            # ldc
        flags = np.empty(2, np.uint8)
        flags[0] = ord("T") if trans_b else ord("N")
        flags[1] = ord("T") if trans_a else ord("N")
        scal = np.empty(2, npdt)
        scal[0] = alpha
        scal[1] = beta
        small = m * n * k < BLAS_SERIAL_BELOW
        if small and not trans_b and (m <= FEW_ROWS or m * n * k <= TINY):  # SciPy's OpenBLAS
            old = _SMALL_THREADS_LOCAL(1)
            small_fn(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
                     ints[2:].ctypes, scal[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes,
                     ints[4:].ctypes, scal[1:].ctypes, c.ctypes, ints[5:].ctypes)
            _SMALL_THREADS_LOCAL(old)
        else:
            if small:
                old = _THREADS_LOCAL(1)
            fn(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
               scal[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
               scal[1:].ctypes, c.ctypes, ints[5:].ctypes)
            if small:
                _THREADS_LOCAL(old)

    return impl


def gemv(trans_a, alpha, a, x, beta, y):
    """``y = alpha * op(a) @ x + beta * y`` in place: ``op(a) (M, K)``, ``x (K,)``, ``y (M,)``.

    ``a`` row-major with unit inner stride; ``x``, ``y`` contiguous. Only
    callable from ``@njit`` code.
    """
    raise NotImplementedError("gemv is only callable from @njit code")


@overload(gemv, jit_options={"nogil": True})
def _gemv_impl(trans_a, alpha, a, x, beta, y):
    dt = y.dtype
    fn = _GEMV[dt]
    npdt = np.float32 if dt == types.float32 else np.float64

    def impl(trans_a, alpha, a, x, beta, y):
        rows, cols = a.shape
        if y.shape[0] == 0:
            return
        if rows == 0 or cols == 0:  # an empty sum
            for i in range(y.shape[0]):
                y[i] = 0 if beta == 0 else beta * y[i]
            return
        # row-major a is column-major a.T (cols x rows): a @ x is "T", a.T @ x is "N"
        ints = np.empty(4, np.int32)
        ints[0] = cols
        ints[1] = rows
        ints[2] = max(a.strides[0] // a.itemsize, cols, 1)   # lda
        ints[3] = 1                                           # incx = incy
        flags = np.empty(1, np.uint8)
        flags[0] = ord("N") if trans_a else ord("T")
        scal = np.empty(2, npdt)
        scal[0] = alpha
        scal[1] = beta
        # gemv stays in the main library (MKL's one-row gemv measured faster than OpenBLAS's),
        # on one thread when small
        small = rows * cols < BLAS_SERIAL_BELOW
        if small:
            old = _THREADS_LOCAL(1)
        fn(flags[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes, scal[0:].ctypes, a.ctypes,
           ints[2:].ctypes, x.ctypes, ints[3:].ctypes, scal[1:].ctypes, y.ctypes, ints[3:].ctypes)
        if small:
            _THREADS_LOCAL(old)

    return impl
