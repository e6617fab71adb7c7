"""The convolution parallel across the batch: each thread unfolds, multiplies and lays out its own
images (the book's chapter 7, the layer's forward and backward).

The batch is cut into ``C`` fixed chunks of whole images (a few per thread); :func:`forward_chunk`
and :func:`backward_chunk` do chunk ``c`` on thread ``w`` (its row of the buffers), and the caller
runs the chunks at once on its threads, each taking the next chunk when free (they release the
GIL), or in turn. One kernel each way, with or without the fused pooling: every kernel of its own
is compiled again with all it calls, seconds of a first start. A chunk is worked through in
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
from .config import INLINE, SERIAL, guard_cache
from .conv import cn_to_nchw, fold, nchw_to_cn, pool_rows, unfold, unpool_rows
from .conv_direct import convolve, filter_gradient, from_rows, pad_rows, to_image, to_rows

__all__ = ["forward_chunk", "backward_chunk", "batch_chunk"]


@njit(**INLINE)
def batch_chunk(N, C, c):
    """Images ``[lo, hi)`` of chunk ``c`` of ``C`` (the first chunks one image longer)."""
    per, extra = N // C, N % C
    lo = c * per + min(c, extra)
    return lo, lo + per + (1 if c < extra else 0)


@njit(**INLINE)
def _step(n, piece):
    return n if piece <= 0 or piece >= n else piece


@njit(**INLINE)
def _by_columns(trans_a, A, Bm, C, piece):
    """``C = op(A) @ Bm``, ``piece`` columns of ``Bm`` and ``C`` at a time."""
    n = C.shape[1]
    step = _step(n, piece)
    for q in range(0, n, max(step, 1)):
        e = min(n, q + step)
        gemm(trans_a, False, 1.0, A, Bm[:, q:e], 0.0, C[:, q:e])


@njit(**INLINE)
def _by_inner(A, Bm, C, piece):
    """``C += A @ Bm.T``, the inner dimension ``piece`` at a time (in order)."""
    n = A.shape[1]
    step = _step(n, piece)
    for q in range(0, n, max(step, 1)):
        e = min(n, q + step)
        gemm(False, True, 1.0, A[:, q:e], Bm[:, q:e], 1.0, C)


@njit(**SERIAL)
def forward_chunk(c, w, C, x, Wm, b, FH, FW, stride, pad, out, relu, pool, arg, cbuf, rbuf, B, piece, direct):
    """Chunk ``c`` of ``C`` of ``conv(x, Wm (FN, K)) + b`` (then ReLU, with ``relu``), on thread
    ``w``, into ``out (N, FN, OH, OW)``; with ``pool = (PH, PW, stride)`` (not zeros), also the
    ReLU and max pooling, into the pooled ``out`` and ``arg`` (:func:`.conv.pool_rows`): the
    convolution's output is then never written out whole. ``cbuf (T, K*B*OH*OW)`` and ``rbuf
    (T, FN*B*OH*OW)``: each thread's unfolded block and product; ``piece``: columns per product
    (0: whole). ``direct = (off, xpb, fullb)``, not empty: the product of each image by
    :func:`.conv_direct.convolve` instead (stride 1), ``off`` its offsets and ``xpb``, ``fullb``
    the threads' padded image and positions (then ``cbuf`` is not used)."""
    N, _, H, W = x.shape
    FN, K = Wm.shape
    OH = (H + 2 * pad - FH) // stride + 1  # the convolution's output, before any pooling
    OW = (W + 2 * pad - FW) // stride + 1
    Q = FN * out.shape[2] * out.shape[3]  # values out per image
    lo, hi = batch_chunk(N, C, c)
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * OH * OW
        rows = rbuf[w, : FN * m].reshape(FN, m)
        bias = b
        if direct[0].size:  # the bias and the ReLU on the way out of each image
            full = direct[2][w].reshape(FN, -1)
            for i in range(n1 - n0):
                pad_rows(x[n0 + i].reshape(x.shape[1], H * W), 0, H, W, pad, direct[1][w])
                convolve(Wm, direct[1][w], direct[0], full)
                if pool[0] > 0:
                    to_rows(full, W + 2 * pad, OH, OW, b, rows, i * OH * OW)
                else:
                    to_image(full, W + 2 * pad, b, relu, out[n0 + i])
            bias = b[:0]
        else:
            colT = cbuf[w, : K * m].reshape(K, m)
            unfold(x[n0:n1], FH, FW, stride, pad, colT)
            _by_columns(False, Wm, colT, rows, piece)
        if pool[0] > 0:
            pool_rows(rows, bias, OH, OW, pool[0], pool[1], pool[2], out[n0:n1], arg[n0 * Q : n1 * Q])
        elif bias.size:  # unfolded: the bias, the ReLU and the layout in one pass
            cn_to_nchw(rows, bias, out[n0:n1], relu)


@njit(**SERIAL)
def backward_chunk(
    c,
    w,
    C,
    x,
    dout,
    after,
    relu,
    pool,
    arg,
    Wm,
    FH,
    FW,
    stride,
    pad,
    dx,
    need_dx,
    bufs,
    dWT,
    db,
    B,
    pieces,
    direct,
):
    """Chunk ``c``'s ``dWT[c] (K, FN)`` and ``db[c] (FN,)``, and its images' ``dx`` (with
    ``need_dx``), from ``dout``, the gradient of :func:`forward_chunk`'s ``out``. With ``relu``,
    ``after`` is the ReLU's output; with ``pool`` (not zeros), ``after`` is the pooled output
    and ``arg`` its windows' maxima (:func:`.conv.unpool_rows`). ``bufs``: the threads' ``(cbuf,
    rbuf, dbuf)``, as :func:`forward_chunk`'s; ``pieces``: columns per piece of the ``dx`` and
    the ``dW`` products (0: whole). ``direct = (Wt, offT, dpb, dfullb, off, xpb, fullb)``: with
    ``offT`` not empty, ``dx`` by :func:`.conv_direct.convolve` of each image's padded gradient
    with ``Wt (C, FN*FH*FW)``, the filters flipped and transposed (stride 1, ``FH == FW``; then
    ``dbuf`` is not used); with ``off`` not empty, ``dW`` by :func:`.conv_direct.filter_gradient`
    of each padded image (stride 1; then ``cbuf`` is not used)."""
    N, _, H, W = x.shape
    FN, K = Wm.shape
    OH = (H + 2 * pad - FH) // stride + 1  # the convolution's output, before any pooling
    OW = (W + 2 * pad - FW) // stride + 1
    Q = FN * dout.shape[2] * dout.shape[3]
    lo, hi = batch_chunk(N, C, c)
    dWT[c] = 0
    db[c] = 0
    for n0 in range(lo, hi, B):
        n1 = min(hi, n0 + B)
        m = (n1 - n0) * OH * OW
        drows = bufs[1][w, : FN * m].reshape(FN, m)
        if pool[0] > 0:
            a = arg[n0 * Q : n1 * Q]
            unpool_rows(dout[n0:n1], a, after[n0:n1], OH, OW, pool[0], pool[1], pool[2], drows, db[c])
        else:
            nchw_to_cn(dout[n0:n1], drows, db[c], after[n0:n1], relu)
        if direct[4].size:
            DT = direct[6][w, : OH * (W + 2 * pad) * FN].reshape(-1, FN)
            for i in range(n1 - n0):
                pad_rows(x[n0 + i].reshape(x.shape[1], H * W), 0, H, W, pad, direct[5][w])
                from_rows(drows, i * OH * OW, OH, OW, W + 2 * pad, DT)
                filter_gradient(DT, direct[5][w], direct[4], dWT[c])
        else:
            colT = bufs[0][w, : K * m].reshape(K, m)
            unfold(x[n0:n1], FH, FW, stride, pad, colT)
            # dW transposed, colT @ drows.T (OpenBLAS handles this shape better), added block by block
            _by_inner(colT, drows, dWT[c], pieces[1])
        if need_dx and direct[1].size:
            Wt, off, dpb = direct[0], direct[1], direct[2]
            full = direct[3][w].reshape(Wt.shape[0], -1)
            for i in range(n1 - n0):  # the gradient padded by FH - 1 - pad: a stride-1 convolution
                pad_rows(drows, i * OH * OW, OH, OW, FH - 1 - pad, dpb[w])
                convolve(Wt, dpb[w], off, full)
                to_image(full, OW + 2 * (FH - 1 - pad), db[c, :0], False, dx[n0 + i])
        elif need_dx:
            dcolT = bufs[2][w, : K * m].reshape(K, m)
            _by_columns(True, Wm, drows, dcolT, pieces[0])
            fold(dcolT, FH, FW, stride, pad, dx[n0:n1])


guard_cache(globals())
