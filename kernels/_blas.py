"""BLAS ``gemm`` with ``alpha``/``beta`` and output buffers, callable from ``@njit`` code.

``np.dot`` inside Numba always allocates and always computes ``1 * A @ B``.
These wrappers call the same BLAS (SciPy's, through Numba's ``numba_xxgemm``
helper, exactly as Numba's own ``np.dot`` does) but let a kernel write into a
preallocated array, accumulate into it (``beta = 1``) and scale the product
(``alpha = -lr`` fuses an SGD update into the weight-gradient product).

Arrays are row-major: 2-D with a unit inner stride and any row stride (a
C-contiguous array, or a block of its columns or rows). The call links by
symbol name, so kernels that use it stay cacheable.
"""
import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas


def _gemm_sig(dt):
    p = types.CPointer(dt)
    return types.intc(types.char, types.char, types.char,     # kind, transa, transb
                      types.intp, types.intp, types.intp,     # m, n, k
                      p, p, types.intp, p, types.intp,        # alpha, a, lda, b, ldb
                      p, p, types.intp)                       # beta, c, ldc


def _gemv_sig(dt):
    p = types.CPointer(dt)
    return types.intc(types.char, types.char,                 # kind, trans
                      types.intp, types.intp,                 # m, n
                      p, p, types.intp, p, p, p)              # alpha, a, lda, x, beta, y


_XXGEMM = {dt: types.ExternalFunction("numba_xxgemm", _gemm_sig(dt))
           for dt in (types.float32, types.float64)}
_XXGEMV = {dt: types.ExternalFunction("numba_xxgemv", _gemv_sig(dt))
           for dt in (types.float32, types.float64)}
_KIND = {types.float32: ord("s"), types.float64: ord("d")}


def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; ``op`` transposes when ``trans_*``.

    ``op(a) (M, K)``, ``op(b) (K, N)``, ``c (M, N)``; all one float dtype,
    row-major with unit inner stride. Only callable from ``@njit`` code.
    """
    raise NotImplementedError("gemm is only callable from @njit code")


@overload(gemm, jit_options={"nogil": True})
def _gemm_impl(trans_a, trans_b, alpha, a, b, beta, c):
    ensure_blas()
    dt = c.dtype
    fn = _XXGEMM[dt]
    kind = _KIND[dt]
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
        lda = max(a.strides[0] // a.itemsize, a.shape[1], 1)
        ldb = max(b.strides[0] // b.itemsize, b.shape[1], 1)
        ldc = max(c.strides[0] // c.itemsize, n, 1)
        scal = np.empty(2, npdt)
        scal[0] = alpha
        scal[1] = beta
        ta = ord("t") if trans_a else ord("n")
        tb = ord("t") if trans_b else ord("n")
        fn(kind, tb, ta, n, m, k, scal[0:].ctypes, b.ctypes, ldb, a.ctypes, lda,
           scal[1:].ctypes, c.ctypes, ldc)

    return impl


def gemv(trans_a, alpha, a, x, beta, y):
    """``y = alpha * op(a) @ x + beta * y`` in place: ``op(a) (M, K)``, ``x (K,)``, ``y (M,)``.

    ``a`` row-major with unit inner stride; ``x``, ``y`` contiguous. Only
    callable from ``@njit`` code.
    """
    raise NotImplementedError("gemv is only callable from @njit code")


@overload(gemv, jit_options={"nogil": True})
def _gemv_impl(trans_a, alpha, a, x, beta, y):
    ensure_blas()
    dt = y.dtype
    fn = _XXGEMV[dt]
    kind = _KIND[dt]
    npdt = np.float32 if dt == types.float32 else np.float64

    def impl(trans_a, alpha, a, x, beta, y):
        rows, cols = a.shape
        if y.shape[0] == 0:
            return
        if rows == 0 or cols == 0:  # an empty sum
            for i in range(y.shape[0]):
                y[i] = 0 if beta == 0 else beta * y[i]
            return
        lda = max(a.strides[0] // a.itemsize, cols, 1)
        scal = np.empty(2, npdt)
        scal[0] = alpha
        scal[1] = beta
        # row-major a is column-major a.T: a @ x is "t", a.T @ x is "n"
        tr = ord("n") if trans_a else ord("t")
        fn(kind, tr, cols, rows, scal[0:].ctypes, a.ctypes, lda, x.ctypes, scal[1:].ctypes, y.ctypes)

    return impl
