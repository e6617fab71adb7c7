"""Affine layer kernels: ``out = x @ W + b`` and its gradients.

All arrays are C-contiguous and of one float dtype (float32 or float64); the
caller (``scratchprop.numba.Affine``) promotes, validates and allocates the
large outputs (``out``, ``dx``) with NumPy, whose allocator asks Linux for
transparent huge pages: a 10000x784 float64 array allocated inside
``@njit`` and filled took 22 ms, allocated by NumPy 6.9 ms (4 KiB page
faults). The products
go through BLAS (:func:`._blas.gemm`, multi-threaded by MKL or OpenBLAS
from this serial context); what NumPy does in extra passes is fused around
them:

* forward: the bias is written into ``out`` first and the product is
  accumulated onto it (``beta = 1``): no temporary, no second pass;
* a batch of one uses ``gemv`` and a plain outer-product loop for ``dW``;
* backward: ``dx`` and ``dW`` straight into fresh arrays, ``db`` summed row
  by row in the reference's order (NumPy sums ``axis=0`` of a C array one
  row at a time), so ``db`` is bit-identical to NumPy's for any thread count.

The epilogues stay serial on purpose: right after a threaded product
OpenBLAS's worker spins on the other core for ~0.1 s, so a ``prange`` here
would only fight it (measured: slower at every batch size).

With a way to set the BLAS thread count (MKL, or SciPy's OpenBLAS; the
caller decides, and runs :func:`backward_tasks` on one Numba thread while
another thread pool may still spin) two more paths keep ``W`` on the
calling thread's core, because the caller's next step is usually
``W -= lr * dW`` on that core, and every ``W`` line another core has read
must first be taken back from it:

* :func:`forward` with ``one_thread``: the product on one BLAS thread;
* :func:`backward_tasks`: ``dx = dout @ W.T`` (reads ``W``) on the calling
  thread and ``dW = x.T @ dout`` (does not) on the other, at the same time.

Measured, the book's ``TwoLayerNet`` step with 784x100 float64 at batch 32
(MKL, 2 cores): 427 us with both products threaded, 295 us this way. Of
that, ``W1 -= lr * dW1`` took 164 us after the threaded products and 64 us
after these.
"""
import numpy as np
from numba import njit, prange

from ._blas import blas_threads_local, gemm, gemv, small_threads_local
from .config import BLAS_SERIAL_BELOW, PARALLEL, SERIAL
from .two_layer import _column_sums

__all__ = ["forward", "backward", "backward_tasks", "forward_naive", "backward_naive"]


@njit(**SERIAL)
def forward(x, W, b, out, one_thread):
    """``x (N, D), W (D, M), b (M,) -> out (N, M)``, written into the caller's ``out``.

    ``one_thread``: the product runs on this thread alone (through
    ``blas_threads_local``; see the module docstring).
    """
    N = x.shape[0]
    for i in range(N):
        out[i, :] = b
    if N == 1:
        gemv(True, 1.0, W, x[0], 1.0, out[0])
    elif one_thread:
        old = blas_threads_local(1)
        gemm(False, False, 1.0, x, W, 1.0, out)
        blas_threads_local(old)
    else:
        gemm(False, False, 1.0, x, W, 1.0, out)
    return out


@njit(**SERIAL)
def backward(dout, x, W, need_dx, dW_work, dx, dW):
    """``dout (N, M), x (N, D), W (D, M) -> dx (N, D), dW (D, M), db (M,)``.

    ``dx`` is the caller's array, ``(N, D)``, or ``(0, D)`` when ``need_dx``
    is false (the first layer's input gradient, which nothing uses); ``dW``
    the caller's fresh ``(D, M)`` array. ``dW_work (D, M)`` is the layer's own
    scratch array: a threaded product is written there (the same memory every
    call, warm in each core's cache) and this thread copies it into ``dW``.
    Measured at 784x100: 81 us instead of 220 us for the two threads writing
    fresh pages (page faults, cross-core traffic). A small product (one BLAS
    thread) goes straight into ``dW``.
    """
    N, M = dout.shape
    D = W.shape[0]
    db = np.zeros(M, dtype=dout.dtype)
    if N == 1:  # dW is an outer product: a loop beats gemm's k = 1 path
        for k in range(D):
            xk = x[0, k]
            for j in range(M):
                dW[k, j] = xk * dout[0, j]
        if need_dx:
            gemv(False, 1.0, W, dout[0], 0.0, dx[0])
    else:
        if N * D * M < BLAS_SERIAL_BELOW:  # one BLAS thread: straight into dW
            gemm(True, False, 1.0, x, dout, 0.0, dW)
        else:
            gemm(True, False, 1.0, x, dout, 0.0, dW_work)
            dW[:] = dW_work
        if need_dx:
            gemm(False, True, 1.0, dout, W, 0.0, dx)
    _column_sums(dout, db, 0, M)  # row by row: NumPy's order for a C array
    return dx, dW, db


@njit(**PARALLEL)
def backward_tasks(dout, x, W, dx, dW):
    """:func:`backward` (``N > 1``, with ``dx``) as two single-threaded products at once.

    ``dout (N, M), x (N, D), W (D, M) -> dx (N, D), dW (D, M), db (M,)``
    into the caller's ``dx`` and fresh ``dW``. Task 0 (the calling thread,
    under OpenMP's static schedule) computes ``dx``, the only one that reads
    ``W``; task 1 ``dW``. With one thread both run here, one after the
    other: the same bits. The products are called from inside the
    ``prange`` region, so while a BLAS pool of another kind may still spin
    the caller runs this on one Numba thread.
    """
    outer = small_threads_local(1)  # see _blas.small_threads_local
    for task in prange(2):
        old = blas_threads_local(1)
        if task == 0:
            gemm(False, True, 1.0, dout, W, 0.0, dx)
        else:
            gemm(True, False, 1.0, x, dout, 0.0, dW)
        blas_threads_local(old)
    small_threads_local(outer)
    M = dout.shape[1]
    db = np.zeros(M, dtype=dout.dtype)
    _column_sums(dout, db, 0, M)
    return dx, dW, db


# Naive references: plain loops, what the fast kernels are tested against.

def forward_naive(x, W, b):
    """Triple loop ``x (N, D), W (D, M), b (M,) -> (N, M)``."""
    N, D = x.shape
    M = W.shape[1]
    out = np.empty((N, M), dtype=W.dtype)
    for i in range(N):
        for j in range(M):
            s = 0.0
            for k in range(D):
                s += float(x[i, k]) * float(W[k, j])
            out[i, j] = s + b[j]
    return out


def backward_naive(dout, x, W):
    """Loops ``dout (N, M), x (N, D), W (D, M) -> dx, dW, db``."""
    dout, x, W = (np.asarray(a, dtype=np.float64) for a in (dout, x, W))
    N, M = dout.shape
    D = W.shape[0]
    dx = np.zeros((N, D))
    dW = np.zeros((D, M))
    for i in range(N):
        for k in range(D):
            for j in range(M):
                dx[i, k] += dout[i, j] * W[k, j]
                dW[k, j] += x[i, k] * dout[i, j]
    return dx, dW, dout.sum(axis=0)
