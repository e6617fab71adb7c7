"""The whole Affine -> Relu -> Affine -> SoftmaxWithLoss step in one call.

``x (N, D)``, ``W1 (D, H)``, ``b1 (H,)``, ``W2 (H, C)``, ``b2 (C,)``, all
C-contiguous, one float dtype; ``labels (N,)`` intp with ``T (0, C)``, or
``T (N, C)`` one-hot / probability rows with ``labels (0,)``.

Five products remain (``x@W1``, ``h@W2``, ``dy@W2.T``, ``h.T@dy``,
``x.T@dh``; the first layer's input gradient ``dh@W1.T`` is skipped: nothing
uses it), with everything else fused around them in three passes:

1. ``h = relu(x @ W1 + b1)``: the bias added and ReLU applied in one pass
   over the product (the mask is ``h <= 0``);
2. per row of ``h @ W2``: ``+ b2``, softmax, loss and ``dy = (y - T) / N``
   in one pass, then ``db2`` (column sums of ``dy``);
3. ``dh = (dy @ W2.T) * (h > 0)`` and ``db1 += dh`` in one pass.

With ``update`` the SGD step is fused into the weight-gradient products:
``W -= lr * (a.T @ d)`` is one ``gemm`` with ``alpha = -lr, beta = 1`` (no
``dW`` array, one pass over ``W``); a batch of one uses a rank-1 loop.

Threads: the products run in NumPy's BLAS pool (:mod:`._blas`), called from
this serial code, or (``mode``: the caller decides, see ``scratchprop.threads``)
on this thread by :func:`.gemm.product` (small products), or the first
layer's as that kernel on this thread and OpenBLAS's worker (:mod:`.pair`);
the passes stay on the calling thread. Sums here run in row order, so results
depend only on ``mode`` and the BLAS's thread count.
"""

import math

import numpy as np
from numba import njit

from ._blas import gemm, gemv
from .config import SERIAL, guard_cache
from .gemm import product
from .pair import HERE, PAIR, PAIR_FORWARD, paired_product, split_product
from .softmax_loss import labels_out_of_range as _bad_labels

__all__ = ["step"]


@njit(**SERIAL)
def _sgd_rank1(W, a, d, rate):
    """``W -= rate * outer(a, d)``: the weight update of a batch of one.

    Rows with ``rate * a[i] == 0`` are skipped when ``d`` is finite: there
    ``W[i] - 0 * d`` equals ``W[i]`` (up to the sign of a zero weight). MNIST
    images are ~80 % zero pixels, so this skips most of ``W1``'s rows.
    """
    finite = True
    for j in range(d.shape[0]):
        if not math.isfinite(d[j]):
            finite = False
    for i in range(W.shape[0]):
        s = rate * a[i]
        if s == 0 and finite:
            continue
        for j in range(W.shape[1]):
            W[i, j] -= s * d[j]


@njit(**SERIAL)
def _first_times(x, W1, h, mode, fn, part):
    """``h = x @ W1`` where ``mode`` runs the first layer's product: from two rows, on this thread
    and OpenBLAS's worker through ``fn``, as :func:`.affine.forward_pair` pairs it (``PAIR``: its
    two half sums, the worker's into ``part``, ``h``'s shape), else :func:`_times`."""
    if mode == PAIR and x.shape[0] > 1:
        split_product(x, W1, h, False, part, fn)
    elif mode == PAIR_FORWARD and x.shape[0] > 1:
        paired_product(x, x.shape[1], 1, W1, h, 1.0, False, fn)
    else:
        _times(x, W1, h, mode == HERE)


@njit(**SERIAL)
def _times(a, W, out, own, W_transposed=False):
    """``out = a @ W`` (``a (N, K), W (K, M)``), or ``a @ W.T`` (``W (M, K)``) when ``W_transposed``.

    A batch of one runs as ``gemv`` (BLAS's ``gemv`` beats its one-row ``gemm``); with ``own``,
    :func:`.gemm.product` (``a @ W.T`` through a transposed copy of ``W``, the second layer's).
    """
    one, zero = W.dtype.type(1), W.dtype.type(0)
    if own:
        if W_transposed:
            W = np.ascontiguousarray(W.T)
        product(a, a.shape[1], 1, W, out, one, False)
    elif a.shape[0] == 1:
        gemv(not W_transposed, one, W, a[0], zero, out[0])
    else:
        gemm(False, W_transposed, one, a, W, zero, out)


@njit(**SERIAL)
def _sgd_vec(b, db, rate):
    """``b -= rate * db`` in place: a bias update."""
    for j in range(b.shape[0]):
        b[j] -= rate * db[j]


@njit(**SERIAL)
def _outer(out, a, d):
    """``out = outer(a, d)``: the weight gradient of a batch of one."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = a[i] * d[j]


@njit(**SERIAL)
def _bias_relu_rows(h, b, lo, hi):
    """``h[i] = relu(h[i] + b)`` for rows ``lo:hi`` (NaN stays NaN, as in the reference's mask)."""
    for i in range(lo, hi):
        for j in range(h.shape[1]):
            v = h[i, j] + b[j]
            if v <= 0:
                v = 0
            h[i, j] = v


@njit(**SERIAL)
def _softmax_dy_rows(s, b2, labels, T, y, rowloss, lo, hi):
    """Rows ``lo:hi`` of ``s += b2``: ``y``, each row's loss into ``rowloss``, ``dy = (y - T) / N`` over ``s``."""
    N, C = s.shape
    dt = s.dtype
    one = dt.type(1)
    nf = dt.type(N)
    use_labels = T.shape[0] == 0
    for i in range(lo, hi):
        s[i, 0] += b2[0]
        m = s[i, 0]
        for j in range(1, C):
            v = s[i, j] + b2[j]
            s[i, j] = v
            if v > m or v != v:  # NaN wins, as in np.max
                m = v
        acc = 0.0
        for j in range(C):
            e = math.exp(s[i, j] - m)
            y[i, j] = e
            acc += e
        lse = math.log(acc)
        row = 0.0
        for j in range(C):
            log_y = (s[i, j] - m) - lse
            yij = dt.type(y[i, j] / acc)  # one exp per element
            y[i, j] = yij
            if use_labels:
                if j == labels[i]:
                    row = lse - (s[i, j] - m)
                    d = yij - one
                else:
                    d = yij
            else:
                row -= T[i, j] * log_y
                d = yij - T[i, j]
            s[i, j] = d / nf  # the row's scores are read above, before this overwrite
        rowloss[i] = row


@njit(**SERIAL)
def _second_layer_back(h, W2, b2, labels, T, s, y, dh, own):
    """``s = h @ W2 + b2``, softmax ``y``, loss, ``dy`` (over ``s``), ``dh = dy @ W2.T`` masked.

    Returns ``(dy, loss, db1, db2)``; ``W2`` is only read (its update comes later).
    """
    N = h.shape[0]
    _times(h, W2, s, own)  # 2
    rowloss = np.empty(N)
    _softmax_dy_rows(s, b2, labels, T, y, rowloss, 0, N)
    dy = s
    loss, db2 = _mean_loss_db2(rowloss, dy)
    _times(dy, W2, dh, own, True)  # 3, before W2 changes
    db1 = _relu_mask_db1(h, dh)
    return dy, loss, db1, db2


@njit(**SERIAL)
def _column_sums(a, out, lo, hi):
    """``out[j] += a[i, j]`` for columns ``lo:hi``, rows in order (NumPy's ``axis=0`` order)."""
    for i in range(a.shape[0]):
        for j in range(lo, hi):
            out[j] += a[i, j]


@njit(**SERIAL)
def _mean_loss_db2(rowloss, dy):
    """``(mean of rowloss, db2 = column sums of dy)``, both summed in row order."""
    loss = 0.0
    for i in range(rowloss.shape[0]):
        loss += rowloss[i]
    db2 = np.zeros(dy.shape[1], dtype=dy.dtype)
    _column_sums(dy, db2, 0, dy.shape[1])
    return loss / rowloss.shape[0], db2


@njit(**SERIAL)
def _relu_mask_db1(h, dh):
    """``dh[h <= 0] = 0`` and ``db1`` (column sums of ``dh``, row order) in one pass."""
    db1 = np.zeros(dh.shape[1], dtype=dh.dtype)
    zero = dh.dtype.type(0)
    for i in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            # an unconditional store: a select, not a branch (the mask is random, so a
            # branch mispredicts half the time)
            d = zero if h[i, j] <= 0 else dh[i, j]
            dh[i, j] = d
            db1[j] += d
    return db1


@njit(**SERIAL)
def _rejected(dt):
    """What a step returns for bad labels: ``status -1``, nothing computed."""
    empty = np.empty((0, 0), dtype=dt)
    return -1, 0.0, empty, np.empty(0, dtype=dt), empty, np.empty(0, dtype=dt)


@njit(**SERIAL)
def _update_or_gradients(x, h, dy, dh, W1, b1, W2, b2, lr, update, loss, db1, db2, dW1, mode, fn):
    """The step's end: the SGD update in place, or the weight gradients (see :func:`step`)."""
    own = mode == HERE
    N, D = x.shape
    H = W1.shape[1]
    C = W2.shape[1]
    dt = W1.dtype
    empty = np.empty((0, 0), dtype=dt)
    one = dt.type(1)
    zero = dt.type(0)
    if update:
        rate = dt.type(lr)
        if N == 1:  # a rank-1 update: a plain loop beats gemm's k = 1 path
            _sgd_rank1(W2, h[0], dy[0], rate)
            _sgd_rank1(W1, x[0], dh[0], rate)
        elif own:
            product(h, 1, H, dy, W2, -rate, True)
            product(x, 1, D, dh, W1, -rate, True)
        else:
            gemm(True, False, -rate, h, dy, one, W2)
            if mode == PAIR:
                paired_product(x, 1, D, dh, W1, -rate, True, fn)
            else:
                gemm(True, False, -rate, x, dh, one, W1)
        _sgd_vec(b1, db1, rate)
        _sgd_vec(b2, db2, rate)
        return 0, loss, empty, db1, empty, db2
    dW2 = np.empty((H, C), dtype=dt)
    if N == 1:  # outer products
        _outer(dW2, h[0], dy[0])
        _outer(dW1, x[0], dh[0])
        return 0, loss, dW1, db1, dW2, db2
    if own:
        product(h, 1, H, dy, dW2, one, False)
        product(x, 1, D, dh, dW1, one, False)
    else:
        gemm(True, False, one, h, dy, zero, dW2)
        if mode == PAIR:
            paired_product(x, 1, D, dh, dW1, one, False, fn)
        else:
            gemm(True, False, one, x, dh, zero, dW1)
    return 0, loss, dW1, db1, dW2, db2


@njit(**SERIAL)
def step(x, labels, T, W1, b1, W2, b2, lr, update, h, s, y, dh, dW1, mode, fn):
    """One forward + backward pass, optionally with the SGD update in place.

    ``h (N, H)``, ``s (N, C)``, ``y (N, C)``, ``dh (N, H)`` are work arrays
    that the caller reuses across calls, and ``dW1 (D, H)`` is where the first
    weight gradient goes (the caller's: fresh arrays cost page faults every
    step; any shape with ``update``, which never forms it). On return ``h``
    is the ReLU output and ``y`` the probabilities. ``mode``: the products on
    this thread (:func:`.gemm.product`), in BLAS, or the first layer's paired
    (:mod:`.pair`, through ``fn``; its weight gradient too with ``PAIR``) and
    the second layer's in BLAS.

    Returns ``(status, loss, dW1, db1, dW2, db2)``: ``status`` 0, or -1 when
    a label is outside ``[0, C)`` (nothing computed or modified; the caller
    raises the reference's error); ``loss`` the mean loss (float64);
    ``dW1 (D, H), db1 (H,), dW2 (H, C), db2 (C,)``. With ``update`` the
    parameters are updated in place (``p -= lr * dp``) and ``dW1``, ``dW2``
    are not formed (returned ``(0, 0)``).
    """
    N = x.shape[0]
    if _bad_labels(labels, T, W2.shape[1]):
        return _rejected(W1.dtype)

    _first_times(x, W1, h, mode, fn, dh)  # 1 (dh: free until the backward)
    _bias_relu_rows(h, b1, 0, N)
    dy, loss, db1, db2 = _second_layer_back(h, W2, b2, labels, T, s, y, dh, mode == HERE)
    return _update_or_gradients(x, h, dy, dh, W1, b1, W2, b2, lr, update, loss, db1, db2, dW1, mode, fn)


guard_cache(globals())
