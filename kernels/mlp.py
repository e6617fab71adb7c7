"""A fully connected net's training gradient in one call: the layers' own kernels, in their order.

The net (``LayerNet`` on the Numba backend: ``MultiLayerNet``, ``MultiLayerNetExtend``) is ``L``
hidden groups, each an Affine, optionally a BatchNormalization, a Relu and optionally a Dropout,
then a last Affine and SoftmaxWithLoss. :func:`gradient` runs the forward and the backward of all
of them, calling the very kernels the layers' own calls run (:mod:`.affine`, :mod:`.batchnorm`,
:mod:`.mt19937`, :mod:`.softmax_loss`) in the same order on the same values, so every result is
their bits; what it saves is the Python and the dispatch around ~45 kernel calls a step.

The layers' parameters come as tuples indexed by the group, of :data:`GROUPS` groups (``GROUPS +
1`` Affine layers) whatever the depth, padded with size-0 arrays: a tuple's length is part of its
type, and each compile of this kernel costs seconds (it carries every kernel it calls). What the
step writes comes as a few flat arrays, cut by offsets. ``mode[g]``: where Affine ``g``'s
products run (BLAS, this thread, or this thread and OpenBLAS's worker: :mod:`.pair`), the
layers' own choice, made by the caller. Beside this thread's work the worker also draws Dropout's
masks and makes the hidden layers' ``dW`` (:func:`share_address`; ``bench/THREADS.md``, "The
other core's cache").
"""

import numpy as np
from numba import carray, njit

from . import affine as _A
from . import batchnorm as _B
from .config import SERIAL, guard_cache
from .gemm import ROWS
from .mt19937 import N as _MT_WORDS
from .mt19937 import dropout_mask
from .pair import (
    HERE,
    PAIR,
    PAIR_FORWARD,
    RECORD,
    call_share,
    compiled,
    pool_threads,
    rows_record,
    run_pair,
    void_at,
)
from .softmax_loss import backward as _loss_backward
from .softmax_loss import forward as _loss_forward
from .two_layer import _column_sums

__all__ = ["GROUPS", "gradient", "scratch_size", "share_address"]

#: Hidden groups of every call's tuples (nets of up to this many take the kernel).
GROUPS = 8

_EPS = 10e-7  # the book's eps, as BatchNormalization writes it


@njit(**SERIAL)
def _affine_forward(mode, fn, x, W, b, out, part):
    if mode == HERE:
        _A.forward_here(x, W, b, out)
    elif mode == PAIR or mode == PAIR_FORWARD:
        _A.forward_pair(x, W, b, out, mode, fn, part)
    else:
        _A.forward(x, W, b, out)


@njit(**SERIAL)
def _affine_backward(mode, fn, dout, x, W, need_dx, dx, dW, db, work):
    if mode == HERE:
        _, _, got = _A.backward_here(dout, x, W, need_dx, dx, dW, work)
    elif mode == PAIR:
        _, _, got = _A.backward_pair(dout, x, W, need_dx, dx, dW, fn)
    else:
        _, _, got = _A.backward(dout, x, W, need_dx, dx, dW)
    for j in range(db.shape[0]):  # not db[:] = got: slice assignment compiles for seconds
        db[j] = got[j]


# A share's record (``run_pair``): its kind, a count and an address, then ``_PRODUCTS``: that many
# products' records (:func:`.pair.rows_record`'s fields each), run by the share at that address
# (:func:`.pair.share_address`, for their dtype); or ``_DRAWS``: the address is the generator's
# state, then per Dropout mask its address, size and ratio (float64 bits).
_PRODUCTS, _DRAWS = 0, 1
_R = 3 + RECORD * (GROUPS + 2)


def _share(arg):
    r = carray(arg, (_R,), dtype=np.int64)
    if r[0] == _PRODUCTS:
        for k in range(r[1]):
            call_share(r[2], r.ctypes.data + (3 + RECORD * k) * 8)
        return
    state = carray(void_at(r[2]), (_MT_WORDS + 1,), dtype=np.uint32)
    none = carray(void_at(r[2]), (0,), dtype=np.float64)
    ratio = carray(arg, (_R,), dtype=np.float64)
    for k in range(r[1]):
        m = 3 + 3 * k
        dropout_mask(state, none, ratio[m + 2], none, carray(void_at(r[m]), (r[m + 1],), dtype=np.bool_))


_SHARES = {}


def share_address():
    """The address of :func:`gradient`'s share ``cfunc`` (products, or Dropout masks drawn on
    OpenBLAS's worker meanwhile), or 0 where the pool cannot take one. One for both dtypes: the
    products run in :func:`.pair.share_address`'s share of theirs, the masks are ``bool``."""
    return compiled(_SHARES, "gradient", _share)


@njit(**SERIAL)
def _add_product(rec, fn, A, sa, sk, B, C, lo, hi, add):
    """Add to the share's record ``rec`` (its count set) ``C``'s rows ``lo:hi`` of ``op(A) @ B``
    (plus ``C`` with ``add``), run by the product share ``fn`` (:func:`.pair.share_address`)."""
    k = rec[1]
    rows_record(rec[3 + RECORD * k : 3 + RECORD * (k + 1)], A, sa, sk, B, C, lo, hi, 1.0, add)
    rec[0], rec[1], rec[2] = _PRODUCTS, k + 1, fn


@njit(**SERIAL)
def _draws_ahead(rec, state, masks, ratio, parts, N, S, P, g, L):
    """Write into ``rec`` the draws of the Dropout masks of groups ``g`` and ``g + 1`` (those that
    have one); returns how many draws."""
    k, n = 0, 0
    for h in range(g, min(g + 2, L)):
        if parts[h] & 2:
            keep = masks[N * (S + P[h]) : N * (S + P[h + 1])]
            m = 3 + 3 * k
            rec[m], rec[m + 1] = keep.ctypes.data, keep.shape[0]
            rec.view(np.float64)[m + 2] = ratio[h]
            k += 1
            n += keep.shape[0]
    rec[0], rec[1], rec[2] = _DRAWS, k, state.ctypes.data
    return n


@njit(**SERIAL)
def _sums(d, db):
    """``db = d.sum(axis=0)`` in row order, as the Affine backward sums it."""
    for j in range(db.shape[0]):
        db[j] = 0
    _column_sums(d, db, 0, db.shape[0])


@njit(**SERIAL)
def _relu_dropout(out, rmask, keep):
    """The Relu's and the Dropout's forwards over ``out`` in place, row by row (their kernels' bits)."""
    M = out.shape[1]
    for i in range(out.shape[0]):
        k = keep[i * M : (i + 1) * M] if keep.shape[0] else keep
        _B._relu_dropout_row(out[i], rmask[i * M : (i + 1) * M], k)


@njit(**SERIAL)
def _rows(flat, start, N, M):
    """``flat[start : start + N * M]`` as an ``(N, M)`` array."""
    return flat[start : start + N * M].reshape(N, M)


@njit(**SERIAL)
def gradient(
    x, labels, T, Ws, bs, dWs, mode, fn, widths, parts,  # the Affine layers and the net's shape
    gammas, betas, running_means, running_vars, momentum, state, ratio,  # BatchNorm, Dropout
    fwd, masks, stats, scratch,  # flat arrays: what the layers keep, and scratch
    share, draws_least,  # Dropout's draws on OpenBLAS's worker beside a product here
):  # fmt: skip
    """One step's forward (training mode) and backward; returns ``(y, loss)`` of SoftmaxWithLoss.

    The net: ``x (N, D)``; ``labels``/``T`` as :func:`.softmax_loss.forward` takes them; ``Ws``,
    ``bs``, ``dWs`` (``L + 1`` of them used: every Affine's, ``dW`` written); ``mode`` (each
    Affine's products: the modes of :mod:`.pair`, the paired ones through
    ``fn``, :func:`.pair.share_address`); ``widths`` (``L`` hidden widths, then the
    classes); ``parts`` (per group: 1 BatchNormalization, 2 Dropout, 3 both); ``gammas``, ``betas``, ``running_means``,
    ``running_vars``, ``momentum`` (``L`` used; size 0 without BatchNormalization); NumPy's MT19937
    ``state`` and ``ratio`` (``L``) for the Dropout masks, drawn as ``np.random.rand(N, M) >
    ratio`` group by group in the forward.

    Flat arrays (``P[g]``: the widths before group ``g``, ``S``: all of them), written:
    ``fwd`` each group's output at ``N * P[g]``, ``xc`` at ``N * (S + P[g])``, ``xn`` at
    ``N * (2 * S + P[g])``; ``masks`` the Relu's at ``N * P[g]``, the Dropout's at
    ``N * (S + P[g])``; ``stats`` ``std``, the new running mean and variance, ``dgamma`` and
    ``dbeta`` at ``k * S + P[g]`` (``k = 0 .. 4``), every Affine's ``db`` at ``5 * S + P[g]``.
    ``scratch``: :func:`scratch_size`.

    ``share`` (:func:`share_address`; 0: none, and ``fn`` the products' share for ``x``'s dtype):
    OpenBLAS's worker takes work beside this thread's.
    In the forward, where a hidden Affine's product runs here (``HERE``), the worker draws the
    Dropout masks of that group and the next meanwhile, if they are ``draws_least`` draws or more
    (the same draws in the same order: a mask is drawn before the next, each when its group would
    draw it or earlier). In the backward, where the first layer's ``dW`` is paired (``PAIR``),
    those hidden Affines' ``dW`` wait until it: then this thread makes them and the first rows of
    the first ``dW``, the worker the rest, in one pairing (each ``dW`` the same product).
    """
    L = widths.shape[0] - 1
    N = x.shape[0]
    P = np.zeros(L + 2, np.int64)
    for g in range(L + 1):
        P[g + 1] = P[g] + widths[g]
    S = P[L]
    wide = 0
    for g in range(L + 1):
        wide = max(wide, widths[g])
    zero = np.empty(0, x.dtype)
    scores = np.empty((N, widths[L]), x.dtype)
    at = N * S + 2 * S  # scratch after the pre-BatchNorm outputs and the batch statistics
    rec = np.empty((2, _R), np.int64)  # the two shares' records (this thread's, the worker's)
    flat = rec.reshape(2 * _R)
    here, there = flat[:_R], flat[_R:]
    paired = share != 0 and fn != 0 and pool_threads() > 1
    drawn = 0  # the groups before this one have their Dropout masks
    for g in range(L + 1):  # g == L: the last Affine, into the scores
        a = x if g == 0 else _rows(fwd, N * P[g - 1], N, widths[g - 1])
        M = widths[g]
        bn = g < L and parts[g] & 1 != 0
        out = scores if g == L else _rows(fwd, N * P[g], N, M)
        pre = _rows(scratch, N * P[g], N, M) if bn else out
        ahead = 0
        if paired and 0 < g < L and g >= drawn and mode[g] == HERE:
            ahead = _draws_ahead(there, state, masks, ratio, parts, N, S, P, g, L)
        if ahead >= draws_least and ahead > 0:
            _A._rows_of(bs[g], pre, 0, N)  # forward_here's product, here; the masks on the worker
            here[1] = 0
            _add_product(here, fn, a, a.shape[1], 1, Ws[g], pre, 0, N, True)
            run_pair(rec, share)
            drawn = g + 2
        else:
            _affine_forward(mode[g], fn, a, Ws[g], bs[g], pre, _rows(scratch, at, N, M))
        if g == L:
            break
        rmask = masks[N * P[g] : N * P[g + 1]]
        keep = masks[N * (S + P[g]) : N * (S + P[g + 1]) if parts[g] & 2 else N * (S + P[g])]
        if keep.shape[0] and g >= drawn:  # before BatchNorm's passes, as its fused forward draws
            dropout_mask(state, zero, ratio[g], zero, keep)
        if bn:
            mu = scratch[N * S + P[g] : N * S + P[g + 1]]
            var = scratch[N * S + S + P[g] : N * S + S + P[g + 1]]
            _B.forward_train(
                _rows(scratch, N * P[g], N, M), gammas[g], betas[g], _EPS, out,
                _rows(fwd, N * (S + P[g]), N, M), _rows(fwd, N * (2 * S + P[g]), N, M),
                stats[P[g] : P[g + 1]], mu, var, keep, rmask,
            )  # fmt: skip
            _B.running_update(running_means[g], mu, momentum[g], stats[S + P[g] : S + P[g + 1]])
            _B.running_update(running_vars[g], var, momentum[g], stats[2 * S + P[g] : 2 * S + P[g + 1]])
        else:
            _relu_dropout(out, rmask, keep)
    y, loss = _loss_forward(scores, labels, T)
    t = y.dtype.type
    d = _loss_backward(y, labels, T, t(1), t(N))
    dA, dZ, dK = at, at + N * wide, at + 2 * N * wide  # dK: each group's d, kept to the end
    work = scratch[dK + N * S :]
    defer = paired and mode[0] == PAIR
    here[1] = 0
    later = 0  # multiply-adds per row of the batch of the dW waiting for the last pairing
    for g in range(L, -1, -1):  # d: the gradient at Affine g's output
        a = x if g == 0 else _rows(fwd, N * P[g - 1], N, widths[g - 1])
        D = a.shape[1]
        need_dx = g > 0  # not a literal: one compiled backward for both (the layers' own)
        dx = _rows(scratch, dA, N * need_dx, D)  # (0, D): the first layer's, unused
        db = stats[5 * S + P[g] : 5 * S + P[g + 1]]
        if defer and g > 0 and mode[g] == HERE:  # dx here now, dW in the last pairing
            _A.dx_here(d, Ws[g], dx, work)
            _sums(d, db)
            _add_product(here, fn, a, 1, D, d, dWs[g], 0, D, False)
            later += D * widths[g]
        elif defer and g == 0:  # the rows of dW that balance the two threads' multiply-adds
            _sums(d, db)
            M = widths[0]
            cut = min(D, max(0, (D * M - later) // (2 * M))) // ROWS * ROWS
            if cut:
                _add_product(here, fn, a, 1, D, d, dWs[0], 0, cut, False)
            there[1] = 0
            _add_product(there, fn, a, 1, D, d, dWs[0], cut, D, False)
            run_pair(rec, share)
        else:
            _affine_backward(mode[g], fn, d, a, Ws[g], need_dx, dx, dWs[g], db, work)
        if g == 0:
            break
        h = g - 1  # the group whose output this is
        rmask = masks[N * P[h] : N * P[g]]
        keep = masks[N * (S + P[h]) : N * (S + P[g]) if parts[h] & 2 else N * (S + P[h])]
        kept = scratch[dK + N * P[h] : dK + N * P[g]]
        if parts[h] & 1:
            _B.act_backward(scratch[dA : dA + N * D], keep, rmask, scratch[dZ : dZ + N * D])
            dgamma, dbeta = stats[3 * S + P[h] : 3 * S + P[g]], stats[4 * S + P[h] : 4 * S + P[g]]
            xc, xn = _rows(fwd, N * (S + P[h]), N, D), _rows(fwd, N * (2 * S + P[h]), N, D)
            _B.backward(
                _rows(scratch, dZ, N, D),
                gammas[h],
                xc,
                xn,
                stats[P[h] : P[g]],
                kept.reshape(N, D),
                dgamma,
                dbeta,
            )
        else:
            _B.act_backward(scratch[dA : dA + N * D], keep, rmask, kept)
        d = kept.reshape(N, D)
    return y, loss


def scratch_size(N, widths, work):
    """Elements of :func:`gradient`'s ``scratch``: the pre-BatchNorm outputs, the batch means and
    variances, two ``N`` x widest arrays (the first a paired forward's part, then the backward's),
    each group's gradient (``N`` x its width), then ``work`` for the Affine backward."""
    S = sum(widths[:-1])
    return 2 * N * S + 2 * S + 2 * N * max(widths) + work


guard_cache(globals())
