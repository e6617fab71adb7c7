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
``scratchprop.threads``), except that AdaGrad's, RMSprop's and Adam's
updates can take two records of pieces of parameters, one run here and one
on OpenBLAS's worker (:func:`run_update`).
"""

import numpy as np
from numba import carray, njit

from .config import INLINE, SERIAL, guard_cache
from .pair import compiled_share, f32_at, f64_at, pool_threads, run_pair

__all__ = [
    "EACH",
    "sgd_each",
    "momentum_each",
    "nesterov_each",
    "adagrad_each",
    "rmsprop_each",
    "adam_each",
    "ADAGRAD",
    "RMSPROP",
    "ADAM",
    "share_address",
    "record_size",
    "records",
    "stage_grads",
    "run_update",
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


# The updates that divide by a square root (AdaGrad, RMSprop, Adam) are bound by the core's divider
# (~1.3-1.5 ns an element, in cache as from memory), not by memory: pieces of large parameters can
# run on OpenBLAS's worker (``kernels/pair.py``'s pool and mechanism) beside the rest, same bits.

#: The update a record asks for (:func:`share_address`).
ADAGRAD, RMSPROP, ADAM = 1, 2, 3


@njit(**INLINE)
def _apply(op, p, g, s1, s2, a, b, c):
    if op == ADAM:
        adam(p, g, s1, s2, a, b, c)
    elif op == RMSPROP:
        rmsprop(p, g, s1, a, b)
    else:
        adagrad(p, g, s1, a)


@njit(**INLINE)
def record_size(pieces):
    """Int64 slots of one thread's record of ``pieces`` pieces of parameters."""
    return 5 + 5 * pieces


@njit(**INLINE)
def _share(arg, at):
    size = record_size(carray(arg, (2,), dtype=np.int64)[1])
    r = carray(arg, (size,), dtype=np.int64)
    f = carray(arg, (size,), dtype=np.float64)
    for k in range(r[1]):
        o = 5 + 5 * k
        n = r[o + 4]
        _apply(
            r[0], carray(at(r[o]), (n,)), carray(at(r[o + 1]), (n,)), carray(at(r[o + 2]), (n,)),
            carray(at(r[o + 3]), (n,)), f[2], f[3], f[4],
        )  # fmt: skip


def _share_f64(arg):
    _share(arg, f64_at)


def _share_f32(arg):
    _share(arg, f32_at)


_SHARES = {}


def share_address(dtype):
    """The address of the update's share ``cfunc`` for ``dtype``, or 0 where the pool cannot take
    one (:func:`.pair.compiled_share`).

    It runs the pieces of one record: ``rec[0]`` the ``op``, ``rec[1]`` their count, ``rec[2:5]``
    the scalars (float64 bits), then per piece the addresses of its ``p, g, s1, s2`` (``s1``: ``h``
    or Adam's ``m``, ``s2``: Adam's ``v``, else ``s1`` again) and its element count."""
    return compiled_share(_SHARES, dtype, _share_f64, _share_f32)


def records(op, flats, pieces):
    """``(rec, where)``: the two threads' records of pieces of parameters (:func:`share_address`'s
    layout; the gradients' addresses left for :func:`stage_grads`) and, per piece, ``(thread,
    slot, parameter, first element)`` of its gradient's address. ``flats[k]``: parameter ``k``'s
    flat ``p`` and state arrays (Adam's ``m``, ``v``; else one); ``pieces[t]``: thread ``t``'s
    ``(parameter, first element, end)``. The arrays must outlive the records."""
    rec = np.zeros((2, record_size(max(map(len, pieces)))), np.int64)
    where = []
    for t, mine in enumerate(pieces):
        rec[t, 0], rec[t, 1] = op, len(mine)
        for j, (k, lo, hi) in enumerate(mine):
            p, *state = flats[k]
            o = 5 + 5 * j
            size = p.itemsize
            rec[t, o], rec[t, o + 2], rec[t, o + 3] = (
                a.ctypes.data + lo * size for a in (p, state[0], state[-1])
            )
            rec[t, o + 4] = hi - lo
            where.append((t, o + 1, k, lo))
    return rec, np.array(where, np.int64).reshape(-1, 4)


@njit(**SERIAL)
def stage_grads(rec, where, gs, start):
    """Write the addresses of the gradients ``gs`` (the update's parameters ``start`` on) into the
    records: ``where[e] = (thread, slot, parameter, first element)`` of each piece."""
    for e in range(where.shape[0]):
        k = where[e, 2] - start
        if 0 <= k < len(gs):
            g = gs[k]
            rec[where[e, 0], where[e, 1]] = g.ctypes.data + where[e, 3] * g.itemsize


@njit(**SERIAL)
def run_update(rec, a, b, c, fn):
    """The update in ``rec`` (two records of pieces: :func:`share_address`'s layout), the first here
    and the second on OpenBLAS's worker, with the scalars ``a, b, c`` (``lr`` or Adam's ``lr_t``,
    ``decay`` or ``b1``, ``b2``; as float64). Returns False, running nothing, where the pool has
    one thread (the caller then updates here)."""
    if pool_threads() < 2:
        return False
    f = rec.view(np.float64)
    for t in range(2):
        f[t, 2], f[t, 3], f[t, 4] = a, b, c
    run_pair(rec, fn)
    return True


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
