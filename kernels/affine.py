"""Affine layer kernels: ``out = x @ W + b`` and its gradients.

All arrays are C-contiguous and of one float dtype (float32 or float64); the
caller (``scratchprop.numba.Affine``) promotes, validates and allocates the
large outputs (``out``, ``dx``) with NumPy, whose allocator asks Linux for
transparent huge pages (an array allocated inside ``@njit`` faults in 4 KiB
pages). The products go to NumPy's BLAS (:func:`._blas.gemm`, threaded in
NumPy's own pool), or in :func:`forward_here` / :func:`backward_here` (small
products: the caller decides, ``scratchprop.threads``) to :func:`.gemm.product`
on the calling thread, or in :func:`forward_pair` / :func:`backward_pair` to the
same kernel on this thread and OpenBLAS's worker (:mod:`.pair`); what NumPy does
in extra passes is fused around them, on the calling thread (see
``scratchprop.threads``):

* forward: the bias is written into ``out`` first and the product is
  accumulated onto it (``beta = 1``): no temporary, no second pass;
* a batch of one uses ``gemv`` and a plain outer-product loop for ``dW``;
* backward: ``dx`` and ``dW`` straight into the caller's arrays, ``db``
  summed row by row in the reference's order (NumPy sums ``axis=0`` of a C
  array one row at a time), so ``db`` is bit-identical to NumPy's.

:func:`forward_rows` and :func:`backward_rows` are the same work cut into
``C`` chunks for threads of ours (rule 4 of ``scratchprop.threads``: a
convnet's step, with NumPy's pool held at one thread): rows of the batch for
``out`` and ``dx``, rows of ``dW`` (a slice of ``x``'s columns each), so no
two chunks write the same element and no sum is split.
"""

import numpy as np
from numba import njit

from ._blas import gemm, gemv
from .config import INLINE, SERIAL, guard_cache
from .conv_batch import batch_chunk
from .gemm import product
from .pair import PAIR, paired_product, split_product
from .two_layer import _column_sums

__all__ = [
    "forward",
    "backward",
    "forward_here",
    "backward_here",
    "dx_here",
    "forward_pair",
    "backward_pair",
    "work_size",
    "forward_rows",
    "backward_rows",
    "forward_naive",
    "backward_naive",
]


@njit(**INLINE)
def _rows_of(b, out, lo, hi):
    """``out[lo:hi] = b`` row by row (a slice assignment compiles NumPy's shape-error text: ~2 s)."""
    for i in range(lo, hi):
        for j in range(b.shape[0]):
            out[i, j] = b[j]


@njit(**SERIAL)
def forward(x, W, b, out):
    """``x (N, D), W (D, M), b (M,) -> out (N, M)``, written into the caller's ``out``."""
    N = x.shape[0]
    _rows_of(b, out, 0, N)
    if N == 1:
        gemv(True, 1.0, W, x[0], 1.0, out[0])
    else:
        gemm(False, False, 1.0, x, W, 1.0, out)
    return out


@njit(**SERIAL)
def forward_here(x, W, b, out):
    """:func:`forward` with the product on this thread (:func:`.gemm.product`)."""
    _rows_of(b, out, 0, x.shape[0])
    product(x, x.shape[1], 1, W, out, 1.0, True)
    return out


@njit(**SERIAL)
def forward_pair(x, W, b, out, mode, fn, part):
    """:func:`forward_here` on this thread and OpenBLAS's worker (through ``fn``). With ``mode``
    ``PAIR`` (:mod:`.pair`; ``dW`` paired too, :func:`backward_pair`) the product's inner dimension
    in two halves (:func:`.pair.split_product`, the worker's into ``part``, ``out``'s shape): each
    thread reads the rows of ``W`` whose gradient it makes (and mostly updates). Else
    (``PAIR_FORWARD``: ``dW`` in BLAS, ``x`` too large to pair it) the rows of ``out`` in two
    halves (:func:`.pair.paired_product`, the bits of the product on one thread): there no thread
    owns rows of ``W``, and a half sum of a large batch would come from the other core's cache."""
    _rows_of(b, out, 0, x.shape[0])
    if mode == PAIR:
        split_product(x, W, out, True, part, fn)
    else:
        paired_product(x, x.shape[1], 1, W, out, 1.0, True, fn)
    return out


@njit(**INLINE)
def _transpose(a, out):
    """``out (M, N) = a (N, M).T``, in tiles of 8 x 8 (both sides stay in a few cache lines); the
    whole tiles with constant bounds (LLVM unrolls them: twice as fast), then the edges."""
    N, M = a.shape
    N8, M8 = N - N % 8, M - M % 8
    for i0 in range(0, N8, 8):
        for j0 in range(0, M8, 8):
            for i in range(8):
                for j in range(8):
                    out[j0 + j, i0 + i] = a[i0 + i, j0 + j]
    for i in range(N8):
        for j in range(M8, M):
            out[j, i] = a[i, j]
    for i in range(N8, N):
        for j in range(M):
            out[j, i] = a[i, j]


@njit(**SERIAL)
def backward(dout, x, W, need_dx, dx, dW):
    """``dout (N, M), x (N, D), W (D, M) -> dx (N, D), dW (D, M), db (M,)``.

    ``dx`` is the caller's array, ``(N, D)``, or ``(0, D)`` when ``need_dx``
    is false (the first layer's input gradient, which nothing uses); ``dW``
    the caller's ``(D, M)`` array.
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
        if need_dx:  # dx first: dW, which the caller's update reads next, is then the warmer
            gemm(False, True, 1.0, dout, W, 0.0, dx)
        gemm(True, False, 1.0, x, dout, 0.0, dW)
    _column_sums(dout, db, 0, M)  # row by row: NumPy's order for a C array
    return dx, dW, db


def work_size(N, D, M):
    """Elements of :func:`backward_here`'s ``work``: the smaller of the copies ``dx`` can take
    (``W`` transposed, or ``dout`` and ``dx`` transposed)."""
    return min(D * M, (M + D) * N)


@njit(**SERIAL)
def backward_here(dout, x, W, need_dx, dx, dW, work):
    """:func:`backward` with the products on this thread (:func:`.gemm.product`); ``work`` has
    :func:`work_size` elements or more. ``dx`` is ``dout @ W.T``: through ``W`` transposed, or as
    the transpose of ``W @ dout.T`` (whose rows are the vectors), whichever copies less."""
    N, M = dout.shape
    D = W.shape[0]
    db = np.zeros(M, dtype=dout.dtype)
    if need_dx:
        dx_here(dout, W, dx, work)
    product(x, 1, D, dout, dW, 1.0, False)  # dW last: the caller's update reads it next
    _column_sums(dout, db, 0, M)
    return dx, dW, db


@njit(**SERIAL)
def dx_here(dout, W, dx, work):
    """:func:`backward_here`'s ``dx = dout @ W.T`` alone."""
    N, M = dout.shape
    D = W.shape[0]
    if D * M <= (M + D) * N:
        WT = work[: D * M].reshape(M, D)
        _transpose(W, WT)
        product(dout, M, 1, WT, dx, 1.0, False)
    else:
        doutT, dxT = work[: M * N].reshape(M, N), work[M * N : (M + D) * N].reshape(D, N)
        _transpose(dout, doutT)
        product(W, M, 1, doutT, dxT, 1.0, False)
        _transpose(dxT, dx)


@njit(**SERIAL)
def backward_pair(dout, x, W, need_dx, dx, dW, fn):
    """:func:`backward` with ``dW``'s rows in two halves, the second on OpenBLAS's worker
    (:func:`.pair.paired_product`: ``x``'s columns, read in strides; the rows of ``W`` each thread
    reads in :func:`forward_pair`); ``dx`` in BLAS."""
    N, M = dout.shape
    db = np.zeros(M, dtype=dout.dtype)
    if need_dx:
        gemm(False, True, 1.0, dout, W, 0.0, dx)
    paired_product(x, 1, x.shape[1], dout, dW, 1.0, False, fn)
    _column_sums(dout, db, 0, M)
    return dx, dW, db


@njit(**SERIAL)
def forward_rows(c, w, C, x, W, b, out):
    """Chunk ``c`` of ``C`` of :func:`forward`: ``out``'s rows of that share of the batch."""
    lo, hi = batch_chunk(x.shape[0], C, c)
    _rows_of(b, out, lo, hi)
    if hi > lo:
        gemm(False, False, 1.0, x[lo:hi], W, 1.0, out[lo:hi])


@njit(**SERIAL)
def backward_rows(c, w, C, dout, x, W, need_dx, dx, dW, db):
    """Chunk ``c`` of ``C`` of :func:`backward`: ``dx``'s rows of that share of the batch, and
    ``dW``'s rows of that share of ``D`` (all the batch); chunk 0 also sums ``db`` (zeros in)."""
    N, M = dout.shape
    lo, hi = batch_chunk(N, C, c)
    if need_dx and hi > lo:
        gemm(False, True, 1.0, dout[lo:hi], W, 0.0, dx[lo:hi])
    lo, hi = batch_chunk(W.shape[0], C, c)
    if hi > lo:
        gemm(True, False, 1.0, x[:, lo:hi], dout, 0.0, dW[lo:hi])
    if c == 0:
        _column_sums(dout, db, 0, M)


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


guard_cache(globals())
