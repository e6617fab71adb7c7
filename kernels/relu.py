"""ReLU kernels: output and mask in one pass; masked gradient in one pass.

Arrays are flat (``(n,)``, C order) and float32/float64; the caller reshapes
and allocates the outputs (with NumPy: huge pages, see :mod:`.affine`).
NumPy needs three passes for the forward (``x <= 0``, ``x.copy()``,
``out[mask] = 0``) and two for the backward; these need one each, on the
calling thread (see ``scratchprop.threads``).
"""

import numpy as np
from numba import njit

from .config import INLINE, SERIAL, guard_cache

__all__ = ["forward", "backward", "forward_naive", "backward_naive"]


@njit(**INLINE)
def _forward_span(x, out, mask, lo, hi):
    for i in range(lo, hi):
        v = x[i]
        m = v <= 0  # NaN is not <= 0: it passes through, as in NumPy
        mask[i] = m
        out[i] = 0 if m else v


@njit(**INLINE)
def _backward_span(dout, mask, dx, lo, hi):
    for i in range(lo, hi):
        dx[i] = 0 if mask[i] else dout[i]


@njit(**SERIAL)
def forward(x, out, mask):
    """``x (n,) -> out (n,), mask (n,) bool``: ``out = max(x, 0)``, ``mask = x <= 0``."""
    n = x.shape[0]
    _forward_span(x, out, mask, 0, n)
    return out, mask


@njit(**SERIAL)
def backward(dout, mask, dx):
    """``dout (n,), mask (n,) -> dx (n,)``: ``dout`` with zeros where ``mask``."""
    n = dout.shape[0]
    _backward_span(dout, mask, dx, 0, n)
    return dx


def forward_naive(x):
    """Element loop: ``x (n,) -> out, mask``."""
    out = np.empty_like(x)
    mask = np.empty(x.shape, dtype=bool)
    for i in range(x.shape[0]):
        mask[i] = x[i] <= 0
        out[i] = 0 if mask[i] else x[i]
    return out, mask


def backward_naive(dout, mask):
    """Element loop: ``dout (n,), mask (n,) -> dx``."""
    return np.array([0 if m else d for d, m in zip(dout, mask)], dtype=dout.dtype)


guard_cache(globals())
