"""Every numeric tolerance the project uses, per dtype, in one place.

``EQUIVALENCE``
    How far the Numba backend may differ from the NumPy reference
    (relative, ``|a - b| <= rtol * max(|b|) + atol``, per array).
``GRADCHECK``
    When :func:`scratchprop.gradcheck` calls a backprop gradient correct.
    The error of one element is ``|num - bp| / max(|num|, |bp|, floor)``; a
    parameter passes when its largest error is at most ``rtol``. float32
    losses carry ~1e-7 relative rounding, so a central difference with
    ``h = 1e-4`` is only good to a few ``ulp(loss) / 2h`` ~ 1e-3 absolute
    there; hence the loose float32 row (5e-3 absolute below |g| = 0.1).
``TARGET_SUM``
    How far the rows of a one-hot / probability target may sum from 1.
"""

import numpy as np

EQUIVALENCE = {
    np.dtype(np.float64): {"rtol": 1e-12, "atol": 1e-14},
    np.dtype(np.float32): {"rtol": 1e-5, "atol": 1e-7},
}

GRADCHECK = {
    np.dtype(np.float64): {"rtol": 1e-4, "floor": 1e-6},
    np.dtype(np.float32): {"rtol": 5e-2, "floor": 1e-1},
}

TARGET_SUM = {
    np.dtype(np.float64): 1e-6,
    np.dtype(np.float32): 1e-4,
}


def _lookup(table, dtype):
    dtype = np.dtype(dtype)
    if dtype in table:
        return table[dtype]
    # anything that is not float32 (float16, ints promoted later) is judged as float32
    return table[np.dtype(np.float32)] if dtype.itemsize < 8 else table[np.dtype(np.float64)]


def equivalence(dtype):
    """``{"rtol", "atol"}`` for comparing backends in ``dtype``."""
    return _lookup(EQUIVALENCE, dtype)


def gradcheck(dtype):
    """``{"rtol", "floor"}`` for a gradient check in ``dtype``."""
    return _lookup(GRADCHECK, dtype)


def target_sum(dtype):
    """Allowed ``|row sum - 1|`` of a probability target in ``dtype``."""
    return _lookup(TARGET_SUM, dtype)
