"""The book's optimizers as fused in-place updates: one pass over one parameter array per call.

Each kernel updates ONE flat C-contiguous parameter array ``p`` and its
state (``v``, ``h``, ``m``) in place, from its gradient ``g``; all of one
dtype, float32 or float64; its ``*_each`` twin does so for :data:`EACH`
parameters in one call (a net's ~20 calls cost more than the update). NumPy
makes 4-8 temporaries per parameter for these; a kernel makes none.

The book's formulas in the book's order. Hyperparameters (``lr``, ``mom``,
``decay``, ``b1``, ``b2``) are passed as Python floats: a derived
coefficient (``(1 + mom) * lr``, ``mom * mom``, ``1 - b1``) is computed in
float64, as Python does, and every coefficient is then cast to the arrays'
dtype, as NumPy 2 casts a Python float (NEP 50: ``lr * g`` of a float32
``g`` is float32 arithmetic). ``1e-7`` likewise.

Adam's ``lr_t`` keeps its own type, as a NumPy scalar does: the book's
``lr_t`` is an ``np.float64`` (from ``np.sqrt``), and ``lr_t * m`` of a
float32 ``m`` is then float64 arithmetic, rounded once into ``p``; pass
``p.dtype.type(lr_t)`` for a reference whose ``lr_t`` is a Python float
(float32 arithmetic). Serial, on the calling thread (see
``scratchprop.threads``).
"""

import numpy as np
from numba import njit

from .config import SERIAL, guard_cache

__all__ = [
    "EACH",
    "sgd_each",
    "momentum_each",
    "nesterov_each",
    "adagrad_each",
    "rmsprop_each",
    "adam_each",
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adam",
    "sgd_naive",
    "momentum_naive",
    "nesterov_naive",
    "adagrad_naive",
    "rmsprop_naive",
    "adam_naive",
]


@njit(**SERIAL)
def sgd(p, g, lr):
    """``p -= lr * g``."""
    a = p.dtype.type(lr)
    for i in range(p.shape[0]):
        p[i] = p[i] - a * g[i]


@njit(**SERIAL)
def momentum(p, g, v, lr, mom):
    """``v = mom * v - lr * g; p += v``."""
    t = p.dtype.type
    a = t(mom)
    b = t(lr)
    for i in range(p.shape[0]):
        w = a * v[i] - b * g[i]
        v[i] = w
        p[i] = p[i] + w


@njit(**SERIAL)
def nesterov(p, g, v, lr, mom):
    """The book's order (``common/optimizer.py``): ``v *= mom; v -= lr * g; p += mom * mom * v;
    p -= (1 + mom) * lr * g``."""
    t = p.dtype.type
    a = t(mom * mom)
    b = t((1 + mom) * lr)
    c = t(mom)
    d = t(lr)
    for i in range(p.shape[0]):
        gi = g[i]
        w = v[i] * c - d * gi
        v[i] = w
        p[i] = (p[i] + a * w) - b * gi


@njit(**SERIAL)
def adagrad(p, g, h, lr):
    """``h += g * g; p -= lr * g / (sqrt(h) + 1e-7)``."""
    t = p.dtype.type
    a = t(lr)
    e = t(1e-7)
    for i in range(p.shape[0]):
        gi = g[i]
        s = h[i] + gi * gi
        h[i] = s
        p[i] = p[i] - a * gi / (np.sqrt(s) + e)


@njit(**SERIAL)
def rmsprop(p, g, h, lr, decay):
    """``h *= decay; h += (1 - decay) * g * g; p -= lr * g / (sqrt(h) + 1e-7)``."""
    t = p.dtype.type
    a = t(lr)
    k = t(decay)
    c = t(1 - decay)
    e = t(1e-7)
    for i in range(p.shape[0]):
        gi = g[i]
        s = h[i] * k + c * gi * gi
        h[i] = s
        p[i] = p[i] - a * gi / (np.sqrt(s) + e)


@njit(**SERIAL)
def adam(p, g, m, v, lr_t, b1, b2):
    """``m += (1 - b1) * (g - m); v += (1 - b2) * (g**2 - v); p -= lr_t * m / (sqrt(v) + 1e-7)``.

    ``lr_t`` (``lr * sqrt(1 - b2**t) / (1 - b1**t)``, the caller's) is not cast: see the module.
    """
    t = p.dtype.type
    c1 = t(1 - b1)
    c2 = t(1 - b2)
    e = t(1e-7)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + c1 * (gi - m[i])
        vi = v[i] + c2 * (gi * gi - v[i])
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - lr_t * mi / (np.sqrt(vi) + e)


#: Parameters per call of the ``*_each`` kernels: a tuple's length is part of its type, so one
#: fixed length serves every net with one compile (shorter calls are padded with size-0 arrays).
EACH = 8


@njit(**SERIAL)
def sgd_each(ps, gs, lr):
    """:func:`sgd` over :data:`EACH` parameters in one call (tuples of flat arrays)."""
    for i in range(len(ps)):
        sgd(ps[i], gs[i], lr)


@njit(**SERIAL)
def momentum_each(ps, gs, vs, lr, mom):
    """:func:`momentum` over :data:`EACH` parameters in one call."""
    for i in range(len(ps)):
        momentum(ps[i], gs[i], vs[i], lr, mom)


@njit(**SERIAL)
def nesterov_each(ps, gs, vs, lr, mom):
    """:func:`nesterov` over :data:`EACH` parameters in one call."""
    for i in range(len(ps)):
        nesterov(ps[i], gs[i], vs[i], lr, mom)


@njit(**SERIAL)
def adagrad_each(ps, gs, hs, lr):
    """:func:`adagrad` over :data:`EACH` parameters in one call."""
    for i in range(len(ps)):
        adagrad(ps[i], gs[i], hs[i], lr)


@njit(**SERIAL)
def rmsprop_each(ps, gs, hs, lr, decay):
    """:func:`rmsprop` over :data:`EACH` parameters in one call."""
    for i in range(len(ps)):
        rmsprop(ps[i], gs[i], hs[i], lr, decay)


@njit(**SERIAL)
def adam_each(ps, gs, ms, vs, lr_t, b1, b2):
    """:func:`adam` over :data:`EACH` parameters in one call."""
    for i in range(len(ps)):
        adam(ps[i], gs[i], ms[i], vs[i], lr_t, b1, b2)


# Naive references: the book's NumPy statements (in place, on the arrays given).


def sgd_naive(p, g, lr):
    p -= lr * g


def momentum_naive(p, g, v, lr, mom):
    v[...] = mom * v - lr * g
    p += v


def nesterov_naive(p, g, v, lr, mom):
    v *= mom
    v -= lr * g
    p += mom * mom * v
    p -= (1 + mom) * lr * g


def adagrad_naive(p, g, h, lr):
    h += g * g
    p -= lr * g / (np.sqrt(h) + 1e-7)


def rmsprop_naive(p, g, h, lr, decay):
    h *= decay
    h += (1 - decay) * g * g
    p -= lr * g / (np.sqrt(h) + 1e-7)


def adam_naive(p, g, m, v, lr_t, b1, b2):
    m += (1 - b1) * (g - m)
    v += (1 - b2) * (g**2 - v)
    p -= lr_t * m / (np.sqrt(v) + 1e-7)


guard_cache(globals())
