"""The convolution parallel across the batch: each thread unfolds, multiplies and lays out its own
images (the book's chapter 7, the layer's forward and backward).

The batch is cut into ``T`` fixed chunks of whole images (``T = cbuf.shape[0]``), one per thread;
a chunk is worked through in blocks of ``B`` images, each unfolded into the thread's own buffer
and multiplied right after by a one-thread BLAS product (:mod:`._blas`; the caller holds the BLAS
pool at one thread during the call). So an image's unfolded block, its product and its output
stay on one core: on a machine whose two cores do not share a cache, writing memory that the
other core has just read (as a two-thread product's worker reads its half of the block) costs
10-30x the write (``bench/CONV.md``).

Every sum has a fixed order for a given ``T``: ``dW`` and ``db`` per chunk, in its blocks' order,
added chunk by chunk by the caller. The ``*_serial`` twins run the very same chunks on the
calling thread (the same bits), for when threads are not to be used.
"""

import numpy as np
from numba import njit, prange

from ._blas import gemm
from .config import PARALLEL, SERIAL, guard_cache
from .conv import cn_to_nchw, fold, nchw_to_cn, unfold

__all__ = ["forward", "forward_serial", "backward", "backward_serial"]


@njit(**SERIAL)
def _chunk(N, T, t):
    """Images ``[lo, hi)`` of chunk ``t`` of ``T`` (the first chunks one image longer)."""
    t = np.intp(t)  # prange's index may be unsigned: mixed with signed, Numba computes in float
    per, extra = N // T, N % T
    lo = t * per + min(t, extra)
    return lo, lo + per + (1 if t < extra else 0)


@njit(**SERIAL)
def _forward_chunk(t, x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B):
    N = x.shape[0]
    FN, K = Wm.shape
    P = out.shape[2] * out.shape[3]
    lo, hi = _chunk(N, cbuf.shape[0], t)
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * P
        colT = cbuf[t, : K * m].reshape(K, m)
        rows = rbuf[t, : FN * m].reshape(FN, m)
        unfold(x[n0:n1], FH, FW, stride, pad, colT)
        gemm(False, False, 1.0, Wm, colT, 0.0, rows)
        cn_to_nchw(rows, b, out[n0:n1], relu)


@njit(**PARALLEL)
def forward(x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B):
    """``out (N, FN, OH, OW) = conv(x, Wm (FN, C*FH*FW)) + b`` (then ReLU, with ``relu``); ``cbuf
    (T, C*FH*FW*B*OH*OW)`` and ``rbuf (T, FN*B*OH*OW)``: each thread's unfolded block and product."""
    for t in prange(cbuf.shape[0]):
        _forward_chunk(t, x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B)


@njit(**SERIAL)
def forward_serial(x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B):
    """:func:`forward` on the calling thread, chunk after chunk (the same bits)."""
    for t in range(cbuf.shape[0]):
        _forward_chunk(t, x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B)


@njit(**SERIAL)
def _backward_chunk(t, x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B):
    N = x.shape[0]
    FN, K = Wm.shape
    P = dout.shape[2] * dout.shape[3]
    cbuf, rbuf, dbuf = bufs
    lo, hi = _chunk(N, cbuf.shape[0], t)
    dWT[t] = 0
    db[t] = 0
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * P
        colT = cbuf[t, : K * m].reshape(K, m)
        drows = rbuf[t, : FN * m].reshape(FN, m)
        nchw_to_cn(dout[n0:n1], drows, db[t], relu_out[n0:n1], relu)
        unfold(x[n0:n1], FH, FW, stride, pad, colT)
        # dW transposed, colT @ drows.T, added block by block (BLAS's beta = 1)
        gemm(False, True, 1.0, colT, drows, 1.0, dWT[t])
        if need_dx:
            dcolT = dbuf[t, : K * m].reshape(K, m)
            gemm(True, False, 1.0, Wm, drows, 0.0, dcolT)
            fold(dcolT, FH, FW, stride, pad, dx[n0:n1])


@njit(**PARALLEL)
def backward(x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B):
    """Each chunk's ``dWT[t] (C*FH*FW, FN)`` and ``db[t] (FN,)``, and ``dx`` (with ``need_dx``); with
    ``relu``, ``dout`` is the gradient of the ReLU whose output was ``relu_out``. ``bufs``: the
    threads' ``(cbuf, rbuf, dbuf)``, as :func:`forward`'s (``dbuf`` like ``cbuf``)."""
    for t in prange(bufs[0].shape[0]):
        _backward_chunk(t, x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B)


@njit(**SERIAL)
def backward_serial(x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B):
    """:func:`backward` on the calling thread, chunk after chunk (the same bits)."""
    for t in range(bufs[0].shape[0]):
        _backward_chunk(t, x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B)


guard_cache(globals())
