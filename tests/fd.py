"""Finite differences for tests: a float64 central difference of any scalar function."""

import numpy as np


def fd_grad(f, x, h=1e-6):
    """Central-difference gradient of ``f()`` with respect to ``x`` (perturbed in place)."""
    g = np.zeros(x.shape, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g
