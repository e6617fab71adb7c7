"""Sigmoid kernels: ``out = 1 / (1 + exp(-x))`` and ``dx = dout * (1 - out) * out``, one pass each.

Arrays are flat (``(n,)``, C order), float32 or float64, all of one dtype;
the caller reshapes and allocates the outputs (``np.empty``), as for
:mod:`.relu`. The reference's formulas in its order, with the constants in
the array's dtype (NumPy 2 computes ``1 + float32`` in float32): large
negative ``x`` gives ``0`` (``exp`` overflows to inf, silently here, with a
RuntimeWarning in NumPy), NaN propagates. ``exp`` is libm's here and NumPy's
own SIMD one there: the two may differ in the last bit. Serial, on the
calling thread (see ``scratchprop.threads``).
"""

import numpy as np
from numba import njit

from .config import SERIAL, guard_cache

__all__ = ["forward", "backward", "forward_naive", "backward_naive"]


@njit(**SERIAL)
def forward(x, out):
    """``x (n,) -> out (n,)``: ``out = 1 / (1 + exp(-x))``, written into the caller's ``out``."""
    one = x.dtype.type(1)
    for i in range(x.shape[0]):
        out[i] = one / (one + np.exp(-x[i]))
    return out


@njit(**SERIAL)
def backward(dout, out, dx):
    """``dout (n,), out (n,) -> dx (n,)``: ``dx = dout * (1 - out) * out`` (the forward's ``out``)."""
    one = dout.dtype.type(1)
    for i in range(dout.shape[0]):
        y = out[i]
        dx[i] = dout[i] * (one - y) * y
    return dx


# Naive references: plain loops over NumPy scalars, what the kernels are tested against.


def forward_naive(x):
    """Element loop: ``x (n,) -> out``."""
    one = x.dtype.type(1)
    out = np.empty_like(x)
    with np.errstate(over="ignore"):
        for i in range(x.shape[0]):
            out[i] = one / (one + np.exp(-x[i]))
    return out


def backward_naive(dout, out):
    """Element loop: ``dout (n,), out (n,) -> dx``."""
    one = dout.dtype.type(1)
    dx = np.empty_like(dout)
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * (one - out[i]) * out[i]
    return dx


guard_cache(globals())
