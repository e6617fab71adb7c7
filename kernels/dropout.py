"""Dropout kernels: mask and masked output from given draws in one pass; masked gradient.

The layer's usual forward draws inside :func:`.mt19937.dropout_mask`; :func:`forward_train`
takes draws ``r`` made by ``np.random.rand`` when the global generator is not MT19937.
Arrays are flat (``(n,)``, C order); ``x``, ``out``, ``dout``, ``dx`` are
float32 or float64 of one dtype, ``r`` float64, ``mask`` bool. The
caller allocates the outputs (``np.empty``), as for :mod:`.relu`.

As NumPy's ``x * mask``, a dropped element is ``x * 0`` and not a stored
zero: ``-0.0`` for negative ``x``, NaN for NaN (and inf) ``x``. Serial, on
the calling thread (see ``scratchprop.threads``).
"""

import numpy as np
from numba import njit

from .config import SERIAL, guard_cache

__all__ = [
    "forward_train",
    "backward",
    "forward_train_naive",
    "backward_naive",
]


@njit(**SERIAL)
def forward_train(x, r, ratio, out, mask):
    """``x (n,), r (n,) float64, ratio -> out (n,), mask (n,) bool``: ``mask = r > ratio``, ``out = x * mask``.

    ``ratio`` a Python float (compared in float64, like NumPy's float64 ``r``).
    """
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for i in range(x.shape[0]):
        m = r[i] > ratio
        mask[i] = m
        out[i] = x[i] * (one if m else zero)  # x * 0, not 0: -0.0 and NaN as in NumPy
    return out, mask


@njit(**SERIAL)
def backward(dout, mask, dx):
    """``dout (n,), mask (n,) bool -> dx (n,)``: ``dx = dout * mask`` (``-0.0``/NaN as in NumPy)."""
    one = dout.dtype.type(1)
    zero = dout.dtype.type(0)
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * (one if mask[i] else zero)
    return dx


# Naive references: plain loops over NumPy scalars, what the kernels are tested against.


def forward_train_naive(x, r, ratio):
    """Element loop: ``x (n,), r (n,), ratio -> out, mask``."""
    out = np.empty_like(x)
    mask = np.empty(x.shape, dtype=bool)
    for i in range(x.shape[0]):
        mask[i] = r[i] > ratio
        out[i] = x[i] * x.dtype.type(mask[i])
    return out, mask


def backward_naive(dout, mask):
    """Element loop: ``dout (n,), mask (n,) -> dx``."""
    dx = np.empty_like(dout)
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * dout.dtype.type(mask[i])
    return dx


guard_cache(globals())
