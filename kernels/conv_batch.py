"""The convolution parallel across the batch: each thread unfolds, multiplies and lays out its own
images (the book's chapter 7, the layer's forward and backward).

The batch is cut into ``T`` fixed chunks of whole images (``T = cbuf.shape[0]``), one per thread;
:func:`forward_chunk` and :func:`backward_chunk` do chunk ``t``, and the caller runs the ``T``
chunks at once on its threads (they release the GIL) or in turn. A chunk is worked through in
blocks of ``B`` images, each unfolded into the thread's own buffer and multiplied right after by
a one-thread BLAS product (:mod:`._blas`; the caller holds the BLAS pool at one thread). So an
image's unfolded block, its product and its output stay on one core: on a machine whose two
cores do not share a cache, writing memory that the other core has just read (as a two-thread
product's worker reads its half of the block) costs 10-30x the write (``bench/CONV.md``).

Every sum has a fixed order for a given ``T``: ``dW`` and ``db`` per chunk, in its blocks' order,
added chunk by chunk by the caller; run at once or in turn, the chunks give the same bits.
"""

from numba import njit

from ._blas import gemm
from .config import SERIAL, guard_cache
from .conv import cn_to_nchw, fold, nchw_to_cn, unfold

__all__ = ["forward_chunk", "backward_chunk"]


@njit(**SERIAL)
def _chunk(N, T, t):
    """Images ``[lo, hi)`` of chunk ``t`` of ``T`` (the first chunks one image longer)."""
    per, extra = N // T, N % T
    lo = t * per + min(t, extra)
    return lo, lo + per + (1 if t < extra else 0)


@njit(**SERIAL)
def forward_chunk(t, x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B):
    """Chunk ``t`` of ``out (N, FN, OH, OW) = conv(x, Wm (FN, C*FH*FW)) + b`` (then ReLU, with
    ``relu``); ``cbuf (T, C*FH*FW*B*OH*OW)`` and ``rbuf (T, FN*B*OH*OW)``: each thread's unfolded
    block and product."""
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


@njit(**SERIAL)
def backward_chunk(t, x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B):
    """Chunk ``t``'s ``dWT[t] (C*FH*FW, FN)`` and ``db[t] (FN,)``, and its images' ``dx`` (with
    ``need_dx``); with ``relu``, ``dout`` is the gradient of the ReLU whose output was
    ``relu_out``. ``bufs``: the threads' ``(cbuf, rbuf, dbuf)``, as :func:`forward_chunk`'s."""
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
        # dW transposed, colT @ drows.T (OpenBLAS handles this shape better), added block by block
        gemm(False, True, 1.0, colT, drows, 1.0, dWT[t])
        if need_dx:
            dcolT = dbuf[t, : K * m].reshape(K, m)
            gemm(True, False, 1.0, Wm, drows, 0.0, dcolT)
            fold(dcolT, FH, FW, stride, pad, dx[n0:n1])


guard_cache(globals())
