"""Convolution and max-pooling kernels (the book's chapter 7).

Images are ``(N, C, H, W)``. The unfolded images are kept transposed from
the book's ``im2col`` matrix: ``colT (C*FH*FW, N*OH*OW)``, one row per
window value ``(c, fh, fw)``, one column per output position ``(n, oh, ow)``
(``colT.T`` is the book's ``col``). In that layout every pass reads and
writes runs of contiguous memory, and the products, which stay in BLAS
(called by the wrapper: ``W (FN, C*FH*FW) @ colT``), give channel-major
rows ``(FN, N*OH*OW)`` that move into NCHW as whole image rows, not element
by element. Padding is ``pad`` zeros on each side, never materialised.

Every kernel here is serial, over whatever images it is given:
:mod:`.conv_batch` runs the convolution's kernels on each thread's images, a
few at a time, so the unfolded block stays in that core's cache between the
kernel that writes it and the product that reads it. Every sum is formed in
a fixed order, so the bits depend on nothing but the inputs.

The folds (:func:`fold`, :func:`pool_backward`) add into zeroed images
one window offset ``(fh, fw)`` after another, the order of the reference's
``col2im`` (one ``+=`` per offset), so each pixel's sum is its bits.

Outputs are allocated by the caller; values are cast to the output's dtype
on store (float32 images into a float64 ``col``: no separate conversion).
"""

import numpy as np
from numba import njit

from .config import INLINE, SERIAL, guard_cache

__all__ = [
    "unfold",
    "fold",
    "cn_to_nchw",
    "nchw_to_cn",
    "pool_forward",
    "pool_backward",
    "pool_rows",
    "unpool_rows",
]


#: Flat indices are unsigned: Numba wraps a negative signed index around, a test per element
#: that kept the row copies below from vectorising (2-4x slower, ``bench/CONV.md``).
_U = np.uint64


@njit(**SERIAL)
def unfold(x, FH, FW, stride, pad, colT):
    """``x (N, C, H, W) -> colT (C*FH*FW, N*OH*OW)``: the book's ``im2col`` transposed, zeros for the
    padding. Row ``(c, fh, fw)`` holds that window value for every output position ``(n, oh, ow)``."""
    N, C, H, W = x.shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (W + 2 * pad - FW) // stride + 1
    P = OH * OW
    src = x.reshape(-1)
    dst = colT.reshape(-1)
    M = colT.shape[1]
    zero = colT.dtype.type(0)
    for n in range(N):
        for c in range(C):
            for i in range(FH):
                for j in range(FW):
                    off = j - pad
                    lo, hi = _inside(OW, W, stride, off)  # the columns that read inside the image
                    row = _U(((c * FH + i) * FW + j) * M + n * P)
                    for oh in range(OH):
                        h = oh * stride + i - pad
                        d = row + _U(oh * OW)
                        a, e = (lo, hi) if 0 <= h < H else (OW, OW)  # a padding row: all zeros
                        for k in range(_U(a)):
                            dst[d + k] = zero
                        if e > a:
                            s0 = _U(((n * C + c) * H + h) * W + a * stride + off)
                            if stride == 1:
                                for k in range(_U(e - a)):
                                    dst[d + _U(a) + k] = src[s0 + k]
                            else:
                                for k in range(_U(e - a)):
                                    dst[d + _U(a) + k] = src[s0 + k * _U(stride)]
                        for k in range(_U(e), _U(OW)):
                            dst[d + k] = zero


@njit(**SERIAL)
def fold(colT, FH, FW, stride, pad, dx):
    """``colT (C*FH*FW, N*OH*OW) -> dx (N, C, H, W)``: the reference's ``col2im`` of ``colT.T``
    (overlaps add up, the padding is dropped)."""
    N, C, H, W = dx.shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (W + 2 * pad - FW) // stride + 1
    P = OH * OW
    src = colT.reshape(-1)
    dst = dx.reshape(-1)
    M = colT.shape[1]
    for n in range(N):
        dx[n] = 0
        for c in range(C):
            for i in range(FH):  # one window offset at a time, in the reference's order
                for j in range(FW):
                    off = j - pad
                    lo, hi = _inside(OW, W, stride, off)  # columns inside the image only
                    row = _U(((c * FH + i) * FW + j) * M + n * P + lo)
                    for oh in range(OH):
                        h = oh * stride + i - pad
                        if h < 0 or h >= H or hi <= lo:
                            continue
                        s0 = row + _U(oh * OW)
                        d0 = _U(((n * C + c) * H + h) * W + lo * stride + off)
                        if stride == 1:
                            for k in range(_U(hi - lo)):
                                dst[d0 + k] += src[s0 + k]
                        else:
                            for k in range(_U(hi - lo)):
                                dst[d0 + k * _U(stride)] += src[s0 + k]


@njit(**INLINE)
def _inside(OW, W, stride, off):
    """``(lo, hi)``: the output columns ``ow`` whose input column ``ow * stride + off`` is in ``[0, W)``."""
    lo = 0
    while lo < OW and lo * stride + off < 0:
        lo += 1
    hi = OW
    while hi > lo and (hi - 1) * stride + off >= W:
        hi -= 1
    return lo, hi


@njit(**SERIAL)
def cn_to_nchw(rows, b, out, relu):
    """``rows (F, N*OH*OW) + b (F,) -> out (N, F, OH, OW)``: the bias, and channels back inside images;
    with ``relu``, the ReLU that follows too (``max(v, 0)``, NaN kept: the Relu kernel's values)."""
    N, F, OH, OW = out.shape
    P = OH * OW
    for n in range(N):
        for f in range(F):
            o = out[n, f].reshape(P)  # C-contiguous: a view
            src = rows[f, n * P : (n + 1) * P]
            bf = b[f]
            if relu:
                for p in range(P):
                    v = src[p] + bf
                    o[p] = 0 if v <= 0 else v
            else:
                for p in range(P):
                    o[p] = src[p] + bf


@njit(**INLINE)
def _sum8(v):
    """The sum of ``v``: eight running sums over its values in turn (so the loop runs in vector
    registers), added as a tree, then the tail. A fixed order: the same bits every run."""
    n = v.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = v.dtype.type(0)
    q = 0
    while q + 8 <= n:
        a0 += v[q]
        a1 += v[q + 1]
        a2 += v[q + 2]
        a3 += v[q + 3]
        a4 += v[q + 4]
        a5 += v[q + 5]
        a6 += v[q + 6]
        a7 += v[q + 7]
        q += 8
    s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
    while q < n:
        s += v[q]
        q += 1
    return s


@njit(**SERIAL)
def nchw_to_cn(dout, rows, db, relu_out, relu):
    """``dout (N, F, OH, OW) -> rows (F, N*OH*OW)``, and to ``db (F,)`` each image's channel sum
    (:func:`_sum8`), image after image. With ``relu``, ``dout`` is the gradient of the ReLU that
    followed, whose output was ``relu_out``: zeros where that is ``<= 0`` (the Relu kernel's
    backward, fused). NumPy's ``sum(axis=0)`` adds the reference's rows one by one, a chain that
    runs one add at a time: several times slower here, for last bits only."""
    N, F, OH, OW = dout.shape
    P = OH * OW
    zero = rows.dtype.type(0)
    for n in range(N):
        d = dout[n].reshape(F, P)
        r = relu_out[n].reshape(F, P)
        for f in range(F):
            dst = rows[f, n * P : (n + 1) * P]
            src = d[f]
            if relu:
                rf = r[f]
                for p in range(P):
                    dst[p] = zero if rf[p] <= 0 else src[p]
            else:
                for p in range(P):
                    dst[p] = src[p]
            db[f] += _sum8(dst)


@njit(**INLINE)
def _window_max(xf, img, H, W, h0, w0, PH, PW):
    """The max of one window and np.argmax's index in it (the first maximum, or the first NaN);
    values outside the ``H x W`` image (the padding) are zeros."""
    zero = xf.dtype.type(0)
    best = zero
    arg = 0
    for i in range(PH):
        h = h0 + i
        for j in range(PW):
            w = w0 + j
            v = xf[img + h * W + w] if 0 <= h < H and 0 <= w < W else zero
            k = i * PW + j
            if k == 0 or (best == best and (v > best or v != v)):
                best = v
                arg = k
    return best, arg


@njit(**SERIAL)
def pool_forward(x, PH, PW, stride, pad, out, arg):
    """Max pooling: ``x (N, C, H, W) -> out (N, C, OH, OW)``, ``arg (N*C*OH*OW,)`` (any integer dtype that
    holds ``PH*PW - 1``; rows ``(n, c, oh, ow)``, like ``out``): the index in the ``PH x PW`` window of its
    first maximum; zero padding takes part, as in the book. (The reference's ``arg_max`` is the same
    numbers with rows ``(n, oh, ow, c)``: the wrapper reorders them only when asked.)"""
    N, C, H, W = x.shape
    _, _, OH, OW = out.shape
    xf = x.reshape(-1)  # flat indices: no views in the inner loops
    of = out.reshape(-1)
    for q in range(N * C):
        _pool_plane(xf, q * H * W, H, W, PH, PW, stride, pad, of, arg, q * OH * OW, OH, OW)


@njit(**SERIAL)
def _pool_plane(xf, img, H, W, PH, PW, stride, pad, of, arg, o, OH, OW):
    """One image channel's pooling: the ``H x W`` plane at ``xf[img:]`` -> ``of[o:]``, ``arg[o:]``."""
    fast = PH == 2 and PW == 2 and pad == 0  # the book's nets: every window inside, unrolled
    for oh in range(OH):
        h0 = oh * stride - pad
        r = o + oh * OW
        nan = False
        if fast:
            # selects, not branches (the comparisons are unpredictable); a NaN anywhere in
            # the row sends it to the generic loop below
            top = _U(img + h0 * W)  # unsigned (``_U``): no wrap-around test per access
            ru = _U(r)
            for ow in range(_U(OW)):
                p = top + ow * _U(stride)
                v0, v1, v2, v3 = xf[p], xf[p + _U(1)], xf[p + _U(W)], xf[p + _U(W + 1)]
                nan |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
                best, a = v0, 0
                t = v1 > best
                best, a = (v1, 1) if t else (best, a)
                t = v2 > best
                best, a = (v2, 2) if t else (best, a)
                t = v3 > best
                best, a = (v3, 3) if t else (best, a)
                of[ru + ow] = best
                arg[ru + ow] = a
        if not fast or nan:
            for ow in range(OW):
                best, a = _window_max(xf, img, H, W, h0, ow * stride - pad, PH, PW)
                of[r + ow] = best
                arg[r + ow] = a


@njit(**SERIAL)
def pool_rows(rows, b, H, W, PH, PW, stride, out, arg):
    """A block's Conv + ReLU + max pooling from its product: ``rows (F, B*H*W)`` (channel-major,
    before the bias) get the bias and the ReLU in place (with ``b`` empty: they have them), then
    each ``H x W`` plane is pooled into ``out (B, F, OH, OW)`` and ``arg`` (rows ``(n, f, oh,
    ow)``) as :func:`pool_forward` pools the Relu's output (no padding)."""
    F, m = rows.shape
    Bn, _, OH, OW = out.shape
    P = H * W
    for f in range(F if b.size else 0):
        r = rows[f]
        bf = b[f]
        for p in range(m):
            v = r[p] + bf
            r[p] = 0 if v <= 0 else v
    xf = rows.reshape(-1)
    of = out.reshape(-1)
    for n in range(Bn):
        for f in range(F):
            q = n * F + f
            _pool_plane(xf, f * m + n * P, H, W, PH, PW, stride, 0, of, arg, q * OH * OW, OH, OW)


@njit(**SERIAL)
def unpool_rows(dout, arg, pooled, H, W, PH, PW, stride, rows, db):
    """The backward of :func:`pool_rows`' block: ``rows (F, B*H*W)`` = the gradient at the
    convolution's output, each ``dout (B, F, OH, OW)`` value at its window's maximum where the
    ReLU passed it (``pooled``, the maximum, not ``<= 0``: the Relu's mask there), zeros
    elsewhere; and each plane's sum added to ``db`` (:func:`_sum8`, as :func:`nchw_to_cn`).
    Windows that do not overlap (``stride >= PH, PW``), without padding."""
    F, m = rows.shape
    Bn, _, OH, OW = dout.shape
    P = H * W
    zero = rows.dtype.type(0)
    at = np.empty(PH * PW, np.uint64)  # a window's index k -> its offset in the plane
    for k in range(PH * PW):
        at[k] = (k // PW) * W + k % PW
    g = np.empty(OH * OW, rows.dtype)
    df, pf = dout.reshape(-1), pooled.reshape(-1)
    for n in range(Bn):
        for f in range(F):
            q = (n * F + f) * OH * OW
            # the ReLU's mask in a loop of its own (vector selects; a branch per window mispredicted),
            # then a store per window at an offset from the table (a division per window cost more)
            for i in range(OH * OW):
                v, passed = zero + df[q + i], not pf[q + i] <= 0
                g[i] = v if passed else zero
            plane = rows[f, n * P : (n + 1) * P]
            plane[:] = 0
            a = arg[q : q + OH * OW]
            for oh in range(OH):
                top = _U(oh * stride * W)
                for ow in range(OW):
                    plane[top + _U(ow * stride) + at[a[oh * OW + ow]]] = g[oh * OW + ow]
            db[f] += _sum8(plane)


@njit(**SERIAL)
def pool_backward(dout, arg, PH, PW, stride, pad, dx):
    """``dout (N, C, OH, OW) -> dx (N, C, H, W)``: each value to its window's ``arg`` (rows
    ``(n, c, oh, ow)``, as :func:`pool_forward` writes it)."""
    N, C, H, W = dx.shape
    _, _, OH, OW = dout.shape
    # windows side by side covering every pixel (the book's 2x2, stride 2, even sizes): each pixel
    # is written once, its value or 0, with no zeroing pass
    tiled = stride == PH and stride == PW and pad == 0 and OH * PH == H and OW * PW == W
    apart = stride >= PH and stride >= PW  # windows never overlap: one pass
    ki = np.empty(PH * PW, np.intp)  # window index -> row, column (no division in the loop)
    kj = np.empty(PH * PW, np.intp)
    for k in range(PH * PW):
        ki[k] = k // PW
        kj[k] = k % PW
    zero = dx.dtype.type(0)
    for n in range(N):
        for c in range(C):
            img = dx[n, c]
            d = dout[n, c]
            a = arg[(n * C + c) * OH * OW : (n * C + c + 1) * OH * OW]
            if tiled:  # 0 + v: -0.0 comes out 0.0, as from col2im's sums into zeros
                for oh in range(OH):
                    # a row of windows: zeros, then each value at its maximum (a store per window,
                    # no select per pixel: data-dependent selects mispredict, 7x slower on Zen 3)
                    for i in range(PH):
                        row = img[oh * PH + i]
                        for w in range(W):
                            row[w] = zero
                    if PH == 2 and PW == 2:  # the book's nets: the pixel by arithmetic, no table
                        for ow in range(OW):
                            k = np.intp(a[oh * OW + ow])
                            if 0 <= k < 4:  # always, from pool_forward: never a write outside dx
                                img[2 * oh + (k >> 1), 2 * ow + (k & 1)] = zero + d[oh, ow]
                        continue
                    for ow in range(OW):
                        k = np.intp(a[oh * OW + ow])
                        if 0 <= k < PH * PW:
                            img[oh * PH + ki[k], ow * PW + kj[k]] = zero + d[oh, ow]
                continue
            img[:, :] = 0
            # overlapping windows: one pass per window offset, so each pixel adds its values in
            # the reference's order
            for k in range(1 if apart else PH * PW):
                for oh in range(OH):
                    for ow in range(OW):
                        ak = a[oh * OW + ow]
                        if apart or ak == k:
                            h = oh * stride + ki[ak] - pad
                            w = ow * stride + kj[ak] - pad
                            if 0 <= h < H and 0 <= w < W:
                                img[h, w] += d[oh, ow]


# --- naive versions: the book's loops, for the tests ----------------------------------------------


def im2col_naive(x, FH, FW, stride, pad):
    """The book's ``im2col`` (loops over the window offsets), in ``x``'s dtype."""
    N, C, H, W = x.shape
    OH = (H + 2 * pad - FH) // stride + 1
    OW = (W + 2 * pad - FW) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((N, C, FH, FW, OH, OW), x.dtype)
    for y in range(FH):
        for z in range(FW):
            col[:, :, y, z] = img[:, :, y : y + stride * OH : stride, z : z + stride * OW : stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * OH * OW, -1)


guard_cache(globals())
