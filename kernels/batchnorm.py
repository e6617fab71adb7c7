"""Batch normalization kernels (the book's ``BatchNorm`` on 2-D input), passes fused.

Arrays are C-contiguous; ``(N, D)`` ones are the batch, ``(D,)`` ones per
feature; float32 or float64, all of one dtype, except in
:func:`forward_test` and :func:`running_update`, where the running
statistics may be float64 beside a float32 batch (the book's
``np.zeros(D)``), promoted as NumPy promotes. The caller allocates every
output (``np.empty``; the kernels overwrite them, sums included) and passes
scalars (``eps``, ``momentum``) as Python floats: each is cast to its array's
dtype, as NumPy 2 does with a Python float.

The reference's arithmetic in its order: a mean is the column sum divided by
``N``; column sums add the rows in order, from zero (NumPy's ``axis=0``
reduction of a C array, so the sums are NumPy's bits). Exception: with
``D == 1`` NumPy sums the single column pairwise; the kernels still add in
row order (the last bits may differ, well within the tolerances).

Serial, on the calling thread: at the book's sizes (100 x 100 to 1000 x 100)
a call is far less work than a parallel region needs to pay for
(``scratchprop.threads`` states the model).
"""

import numpy as np
from numba import njit

from .config import INLINE, SERIAL, guard_cache

__all__ = [
    "forward_train",
    "act_backward",
    "forward_test",
    "backward",
    "running_update",
    "forward_train_naive",
    "forward_test_naive",
    "backward_naive",
    "running_update_naive",
]


@njit(**SERIAL)
def forward_train(x, gamma, beta, eps, out, xc, xn, std, mu, var, keep, rmask):
    """``x (N, D), gamma (D,), beta (D,), eps -> out, xc, xn (N, D); std, mu, var (D,)``; returns ``out``.

    ``mu = mean(x)``, ``xc = x - mu``, ``var = mean(xc**2)``, ``std = sqrt(var + eps)``,
    ``xn = xc / std``, ``out = gamma * xn + beta`` (means over the rows), in three passes.

    With ``rmask`` (``N * D`` bools, flat; size 0: none), a net's Relu (and Dropout) after it
    run in the last pass: ``rmask = out <= 0``, ``out = where(rmask, 0, out)``, then with
    ``keep`` (the Dropout's mask, given) ``out = out * keep``: the layers' own kernels' bits.
    """
    N, D = x.shape
    t = x.dtype.type
    n = t(N)
    for j in range(D):
        mu[j] = 0
        var[j] = 0
    for i in range(N):  # pass 1: column sums
        for j in range(D):
            mu[j] += x[i, j]
    for j in range(D):
        mu[j] = mu[j] / n
    for i in range(N):  # pass 2: xc and the sums of its squares
        for j in range(D):
            c = x[i, j] - mu[j]
            xc[i, j] = c
            var[j] += c * c
    e = t(eps)
    for j in range(D):
        v = var[j] / n
        var[j] = v
        std[j] = np.sqrt(v + e)
    for i in range(N):  # pass 3: xn and out
        for j in range(D):
            z = xc[i, j] / std[j]
            xn[i, j] = z
            out[i, j] = gamma[j] * z + beta[j]
        if rmask.shape[0]:  # the row again while in cache, in loops of their own (they vectorise)
            _relu_dropout_row(
                out[i], rmask[i * D : (i + 1) * D], keep[i * D : (i + 1) * D] if keep.shape[0] else keep
            )
    return out


@njit(**INLINE)
def _relu_dropout_row(row, rmask, keep):
    """The Relu's forward over ``row`` in place (``rmask = row <= 0``), then the Dropout's product
    by ``keep`` (size 0: none), as those layers' kernels compute them."""
    one, zero = row.dtype.type(1), row.dtype.type(0)
    for j in range(row.shape[0]):
        v = row[j]
        m = v <= 0  # NaN is not <= 0: it passes, as in the Relu
        rmask[j] = m
        row[j] = zero if m else v
    if keep.shape[0]:
        for j in range(row.shape[0]):
            row[j] = row[j] * (one if keep[j] else zero)  # v * 0: the Dropout's product


@njit(**SERIAL)
def act_backward(dout, keep, rmask, out):
    """``dout (n,), keep (n,) or (0,), rmask (n,) -> out (n,)``: the backwards of the Dropout (by
    ``keep``; size 0: none) and the Relu (``rmask``) that :func:`forward_train` fused, in one pass;
    returns ``out``, the gradient for :func:`backward`."""
    one, zero = dout.dtype.type(1), dout.dtype.type(0)
    if keep.shape[0]:  # one loop each way: no branch on the random mask inside (LLVM selects)
        for j in range(dout.shape[0]):
            v = dout[j] * (one if keep[j] else zero)
            out[j] = zero if rmask[j] else v
    else:
        for j in range(dout.shape[0]):
            out[j] = zero if rmask[j] else dout[j]
    return out


@njit(**SERIAL)
def forward_test(x, gamma, beta, running_mean, running_var, eps, out):
    """``x (N, D), gamma, beta, running_mean, running_var (D,), eps -> out (N, D)``; returns ``out``.

    ``out = gamma * ((x - running_mean) / sqrt(running_var + eps)) + beta``, the square root
    once per column. ``eps`` is cast to ``running_var``'s dtype.
    """
    N, D = x.shape
    den = np.empty(D, dtype=running_var.dtype)
    e = running_var.dtype.type(eps)
    for j in range(D):
        den[j] = np.sqrt(running_var[j] + e)
    for i in range(N):
        for j in range(D):
            z = (x[i, j] - running_mean[j]) / den[j]
            out[i, j] = gamma[j] * z + beta[j]
    return out


@njit(**SERIAL)
def backward(dout, gamma, xc, xn, std, dx, dgamma, dbeta):
    """``dout (N, D), gamma (D,), xc, xn (N, D), std (D,) -> dx (N, D), dgamma, dbeta (D,)``; returns ``dx``.

    The book's order: ``dbeta = sum(dout)``, ``dgamma = sum(xn * dout)``, ``dxn = gamma * dout``,
    ``dxc = dxn / std``, ``dstd = -sum(dxn * xc / (std * std))``, ``dvar = 0.5 * dstd / std``,
    ``dxc += (2 / N) * xc * dvar``, ``dmu = sum(dxc)``, ``dx = dxc - dmu / N``: three passes,
    ``dxc`` kept in ``dx``.
    """
    N, D = dout.shape
    t = dout.dtype.type
    s2 = np.empty(D, dtype=dout.dtype)
    acc = np.zeros(D, dtype=dout.dtype)  # sum for dstd, then dmu
    for j in range(D):
        dbeta[j] = 0
        dgamma[j] = 0
        s2[j] = std[j] * std[j]
    for i in range(N):  # pass 1: dbeta, dgamma, dxc = gamma * dout / std, sum for dstd
        for j in range(D):
            d = dout[i, j]
            dbeta[j] += d
            dgamma[j] += xn[i, j] * d
            g = gamma[j] * d
            dx[i, j] = g / std[j]
            acc[j] += (g * xc[i, j]) / s2[j]
    half = t(0.5)
    c = t(2.0 / N)
    dvar = s2  # reused
    for j in range(D):
        dvar[j] = half * -acc[j] / std[j]
        acc[j] = 0
    for i in range(N):  # pass 2: dxc += (2 / N) * xc * dvar, dmu
        for j in range(D):
            v = dx[i, j] + c * xc[i, j] * dvar[j]
            dx[i, j] = v
            acc[j] += v
    n = t(N)
    for j in range(D):
        acc[j] = acc[j] / n
    for i in range(N):  # pass 3: dx = dxc - dmu / N
        for j in range(D):
            dx[i, j] = dx[i, j] - acc[j]
    return dx


@njit(**SERIAL)
def running_update(running, batch, momentum, out):
    """``running (D,), batch (D,), momentum -> out (D,)``: ``out = momentum * running + (1 - momentum) * batch``.

    ``1 - momentum`` in float64, then each coefficient cast to its array's dtype (a float64
    ``running`` beside a float32 ``batch`` computes as NumPy does); returns ``out``.
    """
    a = running.dtype.type(momentum)
    b = batch.dtype.type(1.0 - momentum)
    for j in range(out.shape[0]):
        out[j] = a * running[j] + b * batch[j]
    return out


# Naive references: the book's NumPy code, what the kernels are tested against.


def forward_train_naive(x, gamma, beta, eps):
    """``-> (out, xc, xn, std, mu, var)``, as the book computes them."""
    mu = x.mean(axis=0)
    xc = x - mu
    var = np.mean(xc**2, axis=0)
    std = np.sqrt(var + eps)
    xn = xc / std
    out = gamma * xn + beta
    return out, xc, xn, std, mu, var


def forward_test_naive(x, gamma, beta, running_mean, running_var, eps):
    """``-> out``, as the book computes it."""
    xc = x - running_mean
    xn = xc / (np.sqrt(running_var + eps))
    return gamma * xn + beta


def backward_naive(dout, gamma, xc, xn, std):
    """``-> (dx, dgamma, dbeta)``, as the book computes them."""
    batch_size = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(xn * dout, axis=0)
    dxn = gamma * dout
    dxc = dxn / std
    dstd = -np.sum((dxn * xc) / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc += (2.0 / batch_size) * xc * dvar
    dmu = np.sum(dxc, axis=0)
    dx = dxc - dmu / batch_size
    return dx, dgamma, dbeta


def running_update_naive(running, batch, momentum):
    """``-> momentum * running + (1 - momentum) * batch``."""
    return momentum * running + (1 - momentum) * batch


guard_cache(globals())
