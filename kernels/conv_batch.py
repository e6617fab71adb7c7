"""The convolution parallel across the batch: each thread unfolds, multiplies and lays out its own
images (the book's chapter 7, the layer's forward and backward).

The batch is cut into ``C`` fixed chunks of whole images (a few per thread); :func:`forward_chunk`
and the others do chunk ``c`` on thread ``w`` (its row of the buffers), and the caller runs the
chunks at once on its threads, each taking the next chunk when free (they release the GIL), or
in turn. A chunk is worked through in
blocks of ``B`` images, each unfolded into the thread's own buffer and multiplied right after by
a one-thread BLAS product (:mod:`._blas`; the caller holds the BLAS pool at one thread). So an
image's unfolded block, its product and its output stay on one core: on a machine whose two
cores do not share a cache, writing memory that the other core has just read (as a two-thread
product's worker reads its half of the block) costs 10-30x the write (``bench/CONV.md``).

Products with a long side are cut into pieces of ``piece`` columns (0: whole), so that each piece
fits OpenBLAS's small-matrix path, which skips packing the operands (``_blas.SMALL_GEMM_MACS``;
the wrapper chooses ``piece``).

Every sum has a fixed order for a given ``C`` and ``piece``: ``dW`` and ``db`` per chunk, in its blocks' order,
added chunk by chunk by the caller; run at once or in turn, the chunks give the same bits.
"""

from numba import njit

from ._blas import gemm
from .config import SERIAL, guard_cache
from .conv import cn_to_nchw, fold, nchw_to_cn, pool_rows, unfold, unpool_rows

__all__ = ["forward_chunk", "backward_chunk", "forward_pool_chunk", "backward_pool_chunk", "batch_chunk"]


@njit(**SERIAL)
def batch_chunk(N, C, c):
    """Images ``[lo, hi)`` of chunk ``c`` of ``C`` (the first chunks one image longer)."""
    per, extra = N // C, N % C
    lo = c * per + min(c, extra)
    return lo, lo + per + (1 if c < extra else 0)


@njit(**SERIAL)
def _step(n, piece):
    return n if piece <= 0 or piece >= n else piece


@njit(**SERIAL)
def _by_columns(trans_a, A, Bm, C, piece):
    """``C = op(A) @ Bm``, ``piece`` columns of ``Bm`` and ``C`` at a time."""
    n = C.shape[1]
    step = _step(n, piece)
    for q in range(0, n, max(step, 1)):
        e = min(n, q + step)
        gemm(trans_a, False, 1.0, A, Bm[:, q:e], 0.0, C[:, q:e])


@njit(**SERIAL)
def _by_inner(A, Bm, C, piece):
    """``C += A @ Bm.T``, the inner dimension ``piece`` at a time (in order)."""
    n = A.shape[1]
    step = _step(n, piece)
    for q in range(0, n, max(step, 1)):
        e = min(n, q + step)
        gemm(False, True, 1.0, A[:, q:e], Bm[:, q:e], 1.0, C)


@njit(**SERIAL)
def forward_chunk(c, w, C, x, Wm, b, FH, FW, stride, pad, out, relu, cbuf, rbuf, B, piece):
    """Chunk ``c`` of ``C`` of ``out (N, FN, OH, OW) = conv(x, Wm (FN, K)) + b`` (then ReLU, with
    ``relu``), on thread ``w``; ``cbuf (T, K*B*OH*OW)`` and ``rbuf (T, FN*B*OH*OW)``: each thread's unfolded
    block and product; ``piece``: columns per product (0: whole)."""
    N = x.shape[0]
    FN, K = Wm.shape
    P = out.shape[2] * out.shape[3]
    lo, hi = batch_chunk(N, C, c)
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * P
        colT = cbuf[w, : K * m].reshape(K, m)
        rows = rbuf[w, : FN * m].reshape(FN, m)
        unfold(x[n0:n1], FH, FW, stride, pad, colT)
        _by_columns(False, Wm, colT, rows, piece)
        cn_to_nchw(rows, b, out[n0:n1], relu)


@njit(**SERIAL)
def forward_pool_chunk(c, w, C, x, Wm, b, FH, FW, stride, pad, H, W, pool, out, arg, cbuf, rbuf, B, piece):
    """Chunk ``c`` of Conv + ReLU + max pooling: the convolution's ``H x W`` output is pooled
    from each block's product (:func:`.conv.pool_rows`; ``pool``: ``(PH, PW, stride)``) into
    ``out (N, FN, OH, OW)`` and ``arg``, and never written out whole. Buffers as
    :func:`forward_chunk`'s."""
    N = x.shape[0]
    FN, K = Wm.shape
    Q = FN * out.shape[2] * out.shape[3]  # pooled values per image
    lo, hi = batch_chunk(N, C, c)
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * H * W
        colT = cbuf[w, : K * m].reshape(K, m)
        rows = rbuf[w, : FN * m].reshape(FN, m)
        unfold(x[n0:n1], FH, FW, stride, pad, colT)
        _by_columns(False, Wm, colT, rows, piece)
        pool_rows(rows, b, H, W, pool[0], pool[1], pool[2], out[n0:n1], arg[n0 * Q : n1 * Q])


@njit(**SERIAL)
def backward_chunk(
    c, w, C, x, dout, relu_out, relu, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B, pieces
):
    """Chunk ``c``'s ``dWT[c] (K, FN)`` and ``db[c] (FN,)``, and its images' ``dx`` (with
    ``need_dx``); with ``relu``, ``dout`` is the gradient of the ReLU whose output was
    ``relu_out``. ``bufs``: the threads' ``(cbuf, rbuf, dbuf)``, as :func:`forward_chunk`'s;
    ``pieces``: columns per piece of the ``dx`` and the ``dW`` products (0: whole)."""
    N = x.shape[0]
    FN, K = Wm.shape
    P = dout.shape[2] * dout.shape[3]
    lo, hi = batch_chunk(N, C, c)
    dWT[c] = 0
    db[c] = 0
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        drows = bufs[1][w, : FN * (n1 - n0) * P].reshape(FN, -1)
        nchw_to_cn(dout[n0:n1], drows, db[c], relu_out[n0:n1], relu)
        _params_and_dx(c, w, x, n0, n1, drows, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, pieces)


@njit(**SERIAL)
def backward_pool_chunk(
    c, w, C, x, dout, arg, pooled, H, W, pool, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, db, B, pieces
):
    """The backward of :func:`forward_pool_chunk`: ``dout`` is the pooling's output gradient,
    ``pooled`` its output (:func:`.conv.unpool_rows`); the rest as :func:`backward_chunk`."""
    N = x.shape[0]
    FN, K = Wm.shape
    Q = FN * dout.shape[2] * dout.shape[3]
    lo, hi = batch_chunk(N, C, c)
    dWT[c] = 0
    db[c] = 0
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        drows = bufs[1][w, : FN * (n1 - n0) * H * W].reshape(FN, -1)
        a = arg[n0 * Q : n1 * Q]
        unpool_rows(dout[n0:n1], a, pooled[n0:n1], H, W, pool[0], pool[1], pool[2], drows, db[c])
        _params_and_dx(c, w, x, n0, n1, drows, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, pieces)


@njit(**SERIAL)
def _params_and_dx(c, w, x, n0, n1, drows, Wm, FH, FW, stride, pad, dx, need_dx, bufs, dWT, pieces):
    """Images ``[n0, n1)``'s share of ``dWT[c]`` and their ``dx`` (with ``need_dx``), from their
    output gradient ``drows (FN, m)``: unfold them again, then the two products."""
    K = Wm.shape[1]
    m = drows.shape[1]
    colT = bufs[0][w, : K * m].reshape(K, m)
    unfold(x[n0:n1], FH, FW, stride, pad, colT)
    # dW transposed, colT @ drows.T (OpenBLAS handles this shape better), added block by block
    _by_inner(colT, drows, dWT[c], pieces[1])
    if need_dx:
        dcolT = bufs[2][w, : K * m].reshape(K, m)
        _by_columns(True, Wm, drows, dcolT, pieces[0])
        fold(dcolT, FH, FW, stride, pad, dx[n0:n1])


guard_cache(globals())
