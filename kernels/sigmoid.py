"""Sigmoid's backward kernel: ``dx = dout * (1 - out) * out`` in one pass.

The forward is NumPy's: its ``exp`` is vectorised and Numba's is not here
(no SVML), so ``scratchprop._numba_ch6.Sigmoid.forward`` runs the
reference's ufuncs in place. Arrays are flat (``(n,)``, C order), float32
or float64, all of one dtype; the caller reshapes and allocates ``dx``
(``np.empty``), as for :mod:`.relu`. The reference's formula in its order,
the constant in the array's dtype; NaN propagates. Serial, on the calling
thread (see ``scratchprop.threads``).
"""

import numpy as np
from numba import njit

from .config import SERIAL, guard_cache

__all__ = ["backward", "backward_naive"]


@njit(**SERIAL)
def backward(dout, out, dx):
    """``dout (n,), out (n,) -> dx (n,)``: ``dx = dout * (1 - out) * out`` (the forward's ``out``)."""
    one = dout.dtype.type(1)
    for i in range(dout.shape[0]):
        y = out[i]
        dx[i] = dout[i] * (one - y) * y
    return dx


# Naive references: plain loops over NumPy scalars, what the kernels are tested against.


def backward_naive(dout, out):
    """Element loop: ``dout (n,), out (n,) -> dx``."""
    one = dout.dtype.type(1)
    dx = np.empty_like(dout)
    for i in range(dout.shape[0]):
        dx[i] = dout[i] * (one - out[i]) * out[i]
    return dx


guard_cache(globals())
