"""Softmax-with-loss kernels: probabilities and loss in one pass per row.

``x (N, C)`` scores, C-contiguous float32/float64. Targets are either
``labels (N,)`` intp (then ``T`` is ``(0, C)``) or one-hot / probability
rows ``T (N, C)`` (then ``labels`` is ``(0,)``); one compiled kernel serves
both. Per row, as the reference computes it::

    m = max(x);  e = exp(x - m);  lse = log(sum(e))
    y = e / sum(e)                        # the reference: exp((x - m) - lse)
    loss_row = lse - (x[t] - m)          # labels
    loss_row = -sum(T * ((x - m) - lse)) # targets

Sums run in float64 (float32 inputs included). Row losses are stored and
then summed in row order. Serial on purpose (see ``scratchprop.threads``).
"""

import math

import numpy as np
from numba import njit

from .config import INLINE, SERIAL, guard_cache

__all__ = [
    "forward",
    "checked_forward",
    "backward",
    "softmax",
    "cross_entropy",
    "labels_out_of_range",
    "targets_suspect",
    "forward_naive",
]


@njit(**INLINE)
def _row_max(x, i):
    m = x[i, 0]
    for j in range(1, x.shape[1]):
        v = x[i, j]
        if v > m or v != v:  # NaN wins, as in np.max
            m = v
    return m


@njit(**INLINE)
def _forward_rows(x, labels, T, y, rowloss, lo, hi):
    C = x.shape[1]
    for i in range(lo, hi):
        m = _row_max(x, i)
        s = 0.0
        for j in range(C):
            e = math.exp(x[i, j] - m)
            y[i, j] = e
            s += e
        lse = math.log(s)
        acc = 0.0
        for j in range(C):
            y[i, j] = y[i, j] / s  # one exp per element; exp(log_y) agrees to an ulp or two
            if T.shape[0] != 0:
                acc -= T[i, j] * ((x[i, j] - m) - lse)
        if T.shape[0] == 0:
            acc = lse - (x[i, labels[i]] - m)
        rowloss[i] = acc


@njit(**SERIAL)
def labels_out_of_range(labels, T, C):
    """Whether integer ``labels (N,)`` (``T`` empty) fall outside ``[0, C)``.

    The kernels index rows with the labels unchecked: callers check first,
    here in one pass instead of NumPy's ``min`` and ``max`` (two passes and
    their Python overhead).
    """
    if T.shape[0] == 0:
        for i in range(labels.shape[0]):
            if labels[i] < 0 or labels[i] >= C:
                return True
    return False


@njit(**SERIAL)
def targets_suspect(labels, T, C, tol):
    """Whether the targets may be invalid, in one pass: integer ``labels`` outside ``[0, C)``
    (exact), or a row of ``T`` with an entry that is negative or NaN, or a sum farther than
    ``tol`` from 1. The caller passes a tolerance inside its own and, for a suspect target,
    lets NumPy's check decide (its sums round differently), so only a bad target raises."""
    if T.shape[0] == 0:
        return labels_out_of_range(labels, T, C)
    for i in range(T.shape[0]):
        s = 0.0
        for j in range(T.shape[1]):
            v = T[i, j]
            if not v >= 0:
                return True
            s += v
        if not abs(s - 1.0) <= tol:
            return True
    return False


@njit(**INLINE)
def _mean(rowloss):
    s = 0.0
    for i in range(rowloss.shape[0]):
        s += rowloss[i]
    return s / rowloss.shape[0]


@njit(**SERIAL)
def forward(x, labels, T):
    """``x (N, C), labels (N,) | T (N, C) -> y (N, C), mean loss (float64)``."""
    y = np.empty_like(x)
    rowloss = np.empty(x.shape[0])
    _forward_rows(x, labels, T, y, rowloss, 0, x.shape[0])
    return y, _mean(rowloss)


@njit(**SERIAL)
def checked_forward(x, labels, T, tol):
    """:func:`forward` after :func:`targets_suspect` in the same call: ``-> y, loss, suspect``;
    a suspect target computes nothing (``y`` empty, the caller lets NumPy's check decide)."""
    if targets_suspect(labels, T, x.shape[1], tol):
        return np.empty((0, x.shape[1]), x.dtype), 0.0, True
    y, loss = forward(x, labels, T)
    return y, loss, False


@njit(**INLINE)
def _backward_rows(y, labels, T, dout, n, dx, lo, hi):
    C = y.shape[1]
    one = y.dtype.type(1)
    for i in range(lo, hi):
        for j in range(C):
            if T.shape[0] != 0:
                d = y[i, j] - T[i, j]
            elif j == labels[i]:
                d = y[i, j] - one
            else:
                d = y[i, j]
            dx[i, j] = dout * d / n


@njit(**SERIAL)
def backward(y, labels, T, dout, n):
    """``y (N, C), labels | T, dout, n -> dx = dout * (y - T) / n (N, C)``.

    ``dout`` and ``n`` are scalars of ``y``'s dtype, so float32 stays float32
    exactly as NumPy computes ``dout * dx / N``.
    """
    dx = np.empty_like(y)
    _backward_rows(y, labels, T, dout, n, dx, 0, y.shape[0])
    return dx


@njit(**SERIAL)
def _softmax_rows(x, y, lo, hi):
    C = x.shape[1]
    for i in range(lo, hi):
        m = _row_max(x, i)
        s = 0.0
        for j in range(C):
            e = math.exp(x[i, j] - m)
            y[i, j] = e
            s += e
        for j in range(C):
            y[i, j] = y[i, j] / s


@njit(**SERIAL)
def softmax(x):
    """``x (N, C) -> softmax over each row (N, C)``: ``e / sum(e)`` like the reference."""
    y = np.empty_like(x)
    _softmax_rows(x, y, 0, x.shape[0])
    return y


@njit(**SERIAL)
def cross_entropy(y, labels, T):
    """``y (N, C)`` probabilities, ``labels | T -> -sum(log(y[t] + 1e-7)) / N`` (float64)."""
    N, C = y.shape
    s = 0.0
    for i in range(N):
        if T.shape[0] == 0:
            s -= math.log(y[i, labels[i]] + 1e-7)
        else:
            for j in range(C):
                s -= T[i, j] * math.log(y[i, j] + 1e-7)
    return s / N


def forward_naive(x, labels=None, T=None):
    """Row loop in float64: ``x (N, C) -> y, mean loss``."""
    x = np.asarray(x, dtype=np.float64)
    N, C = x.shape
    y = np.empty_like(x)
    total = 0.0
    for i in range(N):
        m = max(x[i])
        lse = np.log(sum(np.exp(v - m) for v in x[i]))
        log_y = (x[i] - m) - lse
        y[i] = np.exp(log_y)
        total -= log_y[labels[i]] if T is None else sum(T[i] * log_y)
    return y, total / N


guard_cache(globals())
