"""BLAS ``gemm``/``gemv`` with ``alpha``/``beta`` and output buffers, callable from ``@njit`` code.

``np.dot`` inside Numba always allocates and always computes ``1 * A @ B``.
These wrappers call BLAS directly, so a kernel can write into a preallocated
array, accumulate into it (``beta = 1``) and scale the product
(``alpha = -lr`` fuses an SGD update into the weight-gradient product).

Which BLAS: **NumPy's own**. NumPy's wheels bundle an OpenBLAS that exports
its CBLAS with 64-bit integers (``scipy_cblas_dgemm64_`` ... in
``numpy.libs``/``numpy/.dylibs``). Calling it means the kernels' products run
in the very thread pool the user's NumPy code already uses: one BLAS pool in
the process, so ours can never spin against it (see
``scratchprop.threads`` for the whole model). Where NumPy has no such library
(a NumPy built against a system BLAS), SciPy's ``cython_blas`` answers
through a small adapter with the same signature (``SCRATCHPROP_BLAS=scipy``
chooses it; SciPy is then needed: ``pip install 'scratchprop[scipy]'``).

Arrays are row-major: 2-D with a unit inner stride and any row stride (a
C-contiguous array, or a block of its rows or columns). The calls link by
symbol name (``scratchprop_dgemm`` ...), so cached kernels stay valid for
either library.
"""

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import cfunc, types
from numba.extending import overload

__all__ = ["gemm", "gemv", "NAME", "PATH", "SMALL_GEMM_MACS"]

_I32, _I64 = types.int32, types.int64
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _gemm_sig(dt):
    p = types.CPointer(dt)
    return types.void(
        _I32,
        _I32,
        _I32,
        _I64,
        _I64,
        _I64,  # order, transa, transb, m, n, k
        dt,
        p,
        _I64,
        p,
        _I64,
        dt,
        p,
        _I64,
    )  # alpha, a, lda, b, ldb, beta, c, ldc


def _gemv_sig(dt):
    p = types.CPointer(dt)
    return types.void(
        _I32,
        _I32,
        _I64,
        _I64,  # order, trans, m, n
        dt,
        p,
        _I64,
        p,
        _I64,
        dt,
        p,
        _I64,
    )  # alpha, a, lda, x, incx, beta, y, incy


def _numpy_openblas():
    """``(path, CDLL)`` of the OpenBLAS bundled with NumPy's wheel, or ``None``."""
    here = os.path.dirname(np.__file__)
    for pattern in (
        os.path.join(here + ".libs", "*openblas64*"),
        os.path.join(here, ".dylibs", "*openblas64*"),
        os.path.join(here, "..", "numpy.libs", "*openblas64*"),
    ):
        for path in sorted(glob.glob(pattern)):
            try:  # NumPy loaded it already: this is the same library, the same thread pool
                lib = ctypes.CDLL(path)
                lib.scipy_cblas_dgemm64_  # noqa: B018 - the ILP64 CBLAS must be there
            except (OSError, AttributeError):
                continue
            return os.path.realpath(path), lib
    return None


def _addr(fn):
    return ctypes.cast(fn, ctypes.c_void_p).value


def _scipy_adapters():
    """CBLAS-signature adapters over SciPy's Fortran ``cython_blas`` (LP64): ``{routine: address}``."""
    from numba.extending import get_cython_function_address

    addrs = {}
    for k, dt in (("s", types.float32), ("d", types.float64)):
        p, i, c = types.CPointer(dt), types.CPointer(types.int32), types.CPointer(types.uint8)
        f_gemm = types.ExternalFunction(
            f"scratchprop_f77_{k}gemm", types.void(c, c, i, i, i, p, p, i, p, i, p, p, i)
        )
        f_gemv = types.ExternalFunction(
            f"scratchprop_f77_{k}gemv", types.void(c, i, i, p, p, i, p, i, p, p, i)
        )
        llvm.add_symbol(
            f"scratchprop_f77_{k}gemm", get_cython_function_address("scipy.linalg.cython_blas", k + "gemm")
        )
        llvm.add_symbol(
            f"scratchprop_f77_{k}gemv", get_cython_function_address("scipy.linalg.cython_blas", k + "gemv")
        )
        npdt = np.float32 if k == "s" else np.float64
        addrs[k + "gemm"] = cfunc(_gemm_sig(dt), nopython=True)(_gemm_adapter(f_gemm, npdt)).address
        addrs[k + "gemv"] = cfunc(_gemv_sig(dt), nopython=True)(_gemv_adapter(f_gemv, npdt)).address
    return addrs


def _gemm_adapter(f_gemm, npdt):
    def gemm_adapter(order, ta, tb, m, n, kk, alpha, a, lda, b, ldb, beta, cc, ldc):
        # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B first, then A
        ints = np.empty(6, np.int32)
        ints[0], ints[1], ints[2], ints[3], ints[4], ints[5] = n, m, kk, ldb, lda, ldc
        fl = np.empty(2, np.uint8)
        fl[0] = ord("T") if tb == _TRANS else ord("N")
        fl[1] = ord("T") if ta == _TRANS else ord("N")
        sc = np.empty(2, npdt)
        sc[0], sc[1] = alpha, beta
        f_gemm(
            fl[0:].ctypes,
            fl[1:].ctypes,
            ints[0:].ctypes,
            ints[1:].ctypes,
            ints[2:].ctypes,
            sc[0:].ctypes,
            b,
            ints[3:].ctypes,
            a,
            ints[4:].ctypes,
            sc[1:].ctypes,
            cc,
            ints[5:].ctypes,
        )

    return gemm_adapter


def _gemv_adapter(f_gemv, npdt):
    def gemv_adapter(order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy):
        # row-major a (m, n) is column-major a^T (n, m): flip the transpose flag
        ints = np.empty(4, np.int32)
        ints[0], ints[1], ints[2], ints[3] = n, m, lda, incx
        fl = np.empty(1, np.uint8)
        fl[0] = ord("N") if trans == _TRANS else ord("T")
        sc = np.empty(2, npdt)
        sc[0], sc[1] = alpha, beta
        f_gemv(
            fl[0:].ctypes,
            ints[0:].ctypes,
            ints[1:].ctypes,
            sc[0:].ctypes,
            a,
            ints[2:].ctypes,
            x,
            ints[3:].ctypes,
            sc[1:].ctypes,
            y,
            ints[3:].ctypes,
        )

    return gemv_adapter


def _choose():
    want = os.environ.get("SCRATCHPROP_BLAS", "").strip().lower() or "numpy"
    if want not in ("numpy", "scipy"):
        raise ImportError(f"SCRATCHPROP_BLAS must be numpy or scipy, got {want!r}")
    found = _numpy_openblas() if want == "numpy" else None
    if found is not None:
        path, lib = found
        addrs = {r: _addr(getattr(lib, f"scipy_cblas_{r}64_")) for r in ("sgemm", "dgemm", "sgemv", "dgemv")}
        return "numpy", path, addrs
    try:
        import scipy
    except ImportError:
        raise ImportError(
            "scratchprop.kernels: this NumPy bundles no OpenBLAS with a 64-bit CBLAS; "
            "install SciPy for the kernels' BLAS (pip install 'scratchprop[scipy]')"
        ) from None
    return "scipy", f"SciPy {scipy.__version__} cython_blas (not NumPy's pool)", _scipy_adapters()


#: ``"numpy"`` (NumPy's bundled OpenBLAS: one pool with the user's NumPy) or ``"scipy"`` (fallback).
NAME, PATH, _ADDRS = _choose()
for _r, _a in _ADDRS.items():
    llvm.add_symbol(f"scratchprop_{_r}", _a)


def _small_gemm_macs():
    """OpenBLAS's small-matrix limit for this CPU: on its AVX-512 cores (SkylakeX and the cores that
    reuse its kernels) a product of at most ``100**3`` multiply-adds runs without packing its operands
    (``kernel/x86_64/?gemm_small_kernel_permit_skylakex.c``); 0 where no such path is known."""
    if NAME != "numpy":
        return 0
    lib = ctypes.CDLL(PATH)
    try:
        corename = lib.scipy_openblas_get_corename64_
    except AttributeError:
        return 0
    corename.restype = ctypes.c_char_p
    core = (corename() or b"").decode("ascii", "replace").lower()
    return 100**3 if core in ("skylakex", "cooperlake", "sapphirerapids") else 0


#: Multiply-adds under which NumPy's OpenBLAS skips packing (0: no such path): the convolution cuts
#: its long products into pieces of that size (``kernels/conv_batch.py``).
SMALL_GEMM_MACS = _small_gemm_macs()
_PREFIX = {types.float32: "s", types.float64: "d"}
_GEMM = {dt: types.ExternalFunction(f"scratchprop_{k}gemm", _gemm_sig(dt)) for dt, k in _PREFIX.items()}
_GEMV = {dt: types.ExternalFunction(f"scratchprop_{k}gemv", _gemv_sig(dt)) for dt, k in _PREFIX.items()}


def gemm(trans_a, trans_b, alpha, a, b, beta, c):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; ``op`` transposes when ``trans_*``.

    ``op(a) (M, K)``, ``op(b) (K, N)``, ``c (M, N)``; all one float dtype,
    row-major with unit inner stride. Only callable from ``@njit`` code.
    """
    raise NotImplementedError("gemm is only callable from @njit code")


@overload(gemm, jit_options={"nogil": True})
def _gemm_impl(trans_a, trans_b, alpha, a, b, beta, c):
    fn = _GEMM[c.dtype]

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
        lda = max(a.strides[0] // a.itemsize, a.shape[1], 1)
        ldb = max(b.strides[0] // b.itemsize, b.shape[1], 1)
        ldc = max(c.strides[0] // c.itemsize, n, 1)
        fn(
            _ROW_MAJOR,
            _TRANS if trans_a else _NO_TRANS,
            _TRANS if trans_b else _NO_TRANS,
            m,
            n,
            k,
            alpha,
            a.ctypes,
            lda,
            b.ctypes,
            ldb,
            beta,
            c.ctypes,
            ldc,
        )

    return impl


def gemv(trans_a, alpha, a, x, beta, y):
    """``y = alpha * op(a) @ x + beta * y`` in place: ``op(a) (M, K)``, ``x (K,)``, ``y (M,)``.

    ``a`` row-major with unit inner stride; ``x``, ``y`` contiguous. Only
    callable from ``@njit`` code.
    """
    raise NotImplementedError("gemv is only callable from @njit code")


@overload(gemv, jit_options={"nogil": True})
def _gemv_impl(trans_a, alpha, a, x, beta, y):
    fn = _GEMV[y.dtype]

    def impl(trans_a, alpha, a, x, beta, y):
        rows, cols = a.shape
        if y.shape[0] == 0:
            return
        if rows == 0 or cols == 0:  # an empty sum
            for i in range(y.shape[0]):
                y[i] = 0 if beta == 0 else beta * y[i]
            return
        lda = max(a.strides[0] // a.itemsize, cols, 1)
        fn(
            _ROW_MAJOR,
            _TRANS if trans_a else _NO_TRANS,
            rows,
            cols,
            alpha,
            a.ctypes,
            lda,
            x.ctypes,
            1,
            beta,
            y.ctypes,
            1,
        )

    return impl
