"""NumPy's global ``np.random.rand`` stream, drawn by a Numba kernel, in place.

``np.random.rand(n)`` (the legacy global ``RandomState`` on an ``MT19937``
bit generator) draws each double from two 32-bit outputs, as NumPy's C code
(``numpy/random/src/mt19937``) does::

    a = next32() >> 5; b = next32() >> 6
    r = (a * 67108864.0 + b) / 9007199254740992.0

where ``next32`` twists the 624-word ``key`` when ``pos == 624`` and then
tempers ``key[pos++]``. The kernels here read and write that same state
(``uint32 key[624]; int pos``) through a NumPy view on the bit generator's
``ctypes.state_address``: they give exactly NumPy's doubles and leave the
generator exactly where ``np.random.rand(n)`` would (the legacy
``has_gauss``/``gauss`` fields are not touched). The twist and the
tempering run a block at a time, in loops LLVM vectorises; NumPy's are
scalar, one call per word.

:func:`global_state` gives ``(lock, state)`` for the current global
generator; hold ``lock`` while a kernel runs, as NumPy does::

    lock, state = global_state()
    with lock:
        fill_uniform(state, out)
"""

import ctypes
import sys

import numpy as np
from numba import njit

from .config import INLINE, SERIAL, guard_cache

__all__ = ["fill_uniform", "dropout_mask", "global_state", "rand_like_numpy", "N"]

#: Words of key; the state view has ``N + 1`` (``pos`` last).
N = 624
_M = 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER = np.uint32(0x80000000)
_LOWER = np.uint32(0x7FFFFFFF)
_T1 = np.uint32(0x9D2C5680)
_T2 = np.uint32(0xEFC60000)
_U32 = np.uint32
_SCALE = 1.0 / 9007199254740992.0  # 2**-53: multiplying is exact, as NumPy's division
_LOW_FIRST = sys.byteorder == "little"  # a uint64 view of two words holds the first in its low half

# Numba widens integer arithmetic to 64 bits; every step here is cast back to uint32, so LLVM
# keeps 32-bit lanes (eight words a vector, not four).


@njit(**INLINE)
def _mix(w, w1, wm):
    """One word of the twist: ``wm ^ (y >> 1) ^ (y & 1) * MATRIX_A`` with ``y`` from ``w``, ``w1``."""
    y = _U32((w & _UPPER) | (w1 & _LOWER))
    return _U32(wm ^ _U32(y >> _U32(1)) ^ _U32(_U32(y & _U32(1)) * _MATRIX_A))


@njit(**SERIAL)
def _twist(key):
    """``mt19937_gen``: NumPy's loop structure, in 32-bit arithmetic."""
    for i in range(N - _M):  # reads key[i + 1], key[i + M]: not yet rewritten
        key[i] = _mix(key[i], key[i + 1], key[i + _M])
    for i in range(N - _M, N - 1):  # reads key[i - 227]: rewritten 227 steps back
        key[i] = _mix(key[i], key[i + 1], key[i + (_M - N)])
    key[N - 1] = _mix(key[N - 1], key[0], key[_M - 1])


@njit(**INLINE)
def _temper(w):
    y = _U32(w)
    y = _U32(y ^ _U32(y >> _U32(11)))
    y = _U32(y ^ _U32(_U32(y << _U32(7)) & _T1))
    y = _U32(y ^ _U32(_U32(y << _U32(15)) & _T2))
    return _U32(y ^ _U32(y >> _U32(18)))


@njit(**INLINE)
def _to_double(first, second):
    """The double of two tempered words: ``(a * 2**26 + b) / 2**53``, as NumPy computes it.

    ``a < 2**27`` and ``b < 2**26`` go through int32, whose conversion to float64 vectorises
    (AVX2 has none from 64-bit integers); every step is exact, so the bits are NumPy's.
    """
    a = np.int32(first >> _U32(5))
    b = np.int32(second >> _U32(6))
    return (np.float64(a) * 67108864.0 + np.float64(b)) * _SCALE


@njit(**INLINE)
def _double(w0, w1):
    """The double of the words ``w0, w1`` (untempered)."""
    return _to_double(_temper(w0), _temper(w1))


@njit(**INLINE)
def _pairs(key, pos, take, tw):
    """The words ``key[pos:pos + 2 * take]`` tempered into ``tw``, as ``take`` uint64 pairs.

    Tempering in a loop of its own, then reading each pair as one uint64, lets both loops
    vectorise (reading the two words of a pair from the key directly, a stride of two, does not).
    """
    k = key[pos : pos + 2 * take]
    for j in range(np.uint64(2 * take)):  # unsigned: no negative-index wraparound
        tw[j] = _temper(k[j])
    return tw.view(np.uint64)[:take]


@njit(**INLINE)
def _pair_double(w):
    """The double of a tempered pair (:func:`_pairs`)."""
    lo, hi = _U32(w), _U32(w >> np.uint64(32))
    return _to_double(lo, hi) if _LOW_FIRST else _to_double(hi, lo)


@njit(**INLINE)
def _block(key, pos, out, i, take, tw):
    """``out[i:i + take]`` from ``key[pos:pos + 2 * take]`` (no twist inside)."""
    w = _pairs(key, pos, take, tw)
    o = out[i : i + take]
    for j in range(np.uint64(take)):
        o[j] = _pair_double(w[j])


@njit(**SERIAL)
def fill_uniform(state, out):
    """``state (625,) uint32, out (n,) float64 -> out``: ``out = np.random.rand(n)``, ``state`` advanced.

    ``state`` is ``key[624]`` followed by ``pos`` (an int32 in ``0..624``), the
    bit generator's own memory (see :func:`global_state`); it is updated in place.
    """
    key = state[:N]
    pos = np.int64(state.view(np.int32)[N])
    tw = np.empty(N, np.uint32)  # a block's tempered words
    n = out.shape[0]
    i = 0
    while i < n:
        if pos == N:
            _twist(key)
            pos = 0
        avail = N - pos
        if avail == 1:  # the pair straddles a twist
            w0 = key[N - 1]
            _twist(key)
            out[i] = _double(w0, key[0])
            pos = 1
            i += 1
            continue
        take = min(n - i, avail // 2)
        _block(key, pos, out, i, take, tw)
        pos += 2 * take
        i += take
    state[N] = np.uint32(pos)
    return out


@njit(**INLINE)
def _dropout_block(key, pos, x, ratio, out, mask, i, take, tw):
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    w = _pairs(key, pos, take, tw)
    ms = mask[i : i + take]
    if x.shape[0] == 0:  # the mask alone
        for j in range(np.uint64(take)):
            ms[j] = _pair_double(w[j]) > ratio
        return
    xs = x[i : i + take]
    o = out[i : i + take]
    for j in range(np.uint64(take)):
        m = _pair_double(w[j]) > ratio
        ms[j] = m
        o[j] = xs[j] * (one if m else zero)  # x * 0, not 0: -0.0 and NaN as in NumPy


@njit(**INLINE)
def _dropout_block_one(w0, w1, x, ratio, out, mask, i):
    m = _double(w0, w1) > ratio
    mask[i] = m
    if x.shape[0]:
        out[i] = x[i] * (out.dtype.type(1) if m else out.dtype.type(0))


@njit(**SERIAL)
def dropout_mask(state, x, ratio, out, mask):
    """``state, x (n,), ratio -> out (n,), mask (n,) bool``: ``mask = np.random.rand(n) > ratio``, ``out = x * mask``.

    ``x``/``out`` float32 or float64 (one dtype); ``ratio`` compared in float64,
    as NumPy compares the float64 draws. ``state`` advances as in :func:`fill_uniform`;
    no float64 draws are stored. With ``x`` and ``out`` of size 0, the mask alone.
    """
    key = state[:N]
    pos = np.int64(state.view(np.int32)[N])
    r = np.float64(ratio)
    tw = np.empty(N, np.uint32)  # a block's tempered words
    n = mask.shape[0]
    i = 0
    while i < n:
        if pos == N:
            _twist(key)
            pos = 0
        avail = N - pos
        if avail == 1:
            w0 = key[N - 1]
            _twist(key)
            _dropout_block_one(w0, key[0], x, r, out, mask, i)
            pos = 1
            i += 1
            continue
        take = min(n - i, avail // 2)
        _dropout_block(key, pos, x, r, out, mask, i, take, tw)
        pos += 2 * take
        i += take
    state[N] = np.uint32(pos)
    return out, mask


_CACHE = []  # [(bit generator, lock, state view)]: one entry, the last global generator seen


def _view(bg):
    """The ``(625,) uint32`` view on ``bg``'s ``mt19937_state`` (checked against ``bg.state``)."""
    view = np.ctypeslib.as_array((ctypes.c_uint32 * (N + 1)).from_address(bg.ctypes.state_address))
    st = bg.state["state"]
    if int(view.view(np.int32)[N]) != int(st["pos"]) or not np.array_equal(view[:N], st["key"]):
        raise TypeError("MT19937 state layout is not {uint32 key[624]; int pos} in this NumPy")
    return view


def global_state():
    """``(lock, state)`` of NumPy's global generator (``np.random.mtrand._rand``).

    ``state`` is a ``(625,) uint32`` view on the bit generator's own memory
    (``np.random.seed``/``set_state`` write into that same memory). Cached per
    bit generator object, rebuilt when the global one is another object.
    Raises ``TypeError`` when the global generator is not ``MT19937`` or this
    NumPy does not expose it as expected (the caller then draws through ``np.random.rand``).
    """
    bg = getattr(getattr(np.random.mtrand, "_rand", None), "_bit_generator", None)
    if _CACHE and _CACHE[0][0] is bg:
        return _CACHE[0][1], _CACHE[0][2]
    if not isinstance(bg, np.random.MT19937):
        raise TypeError(f"the global generator's bit generator is {type(bg).__name__}, not MT19937")
    entry = (bg, bg.lock, _view(bg))  # holds bg: its memory outlives the view
    _CACHE[:] = [entry]
    return entry[1], entry[2]


def rand_like_numpy(n):
    """What ``np.random.rand(n)`` returns, advancing the global generator alike."""
    out = np.empty(n, dtype=np.float64)
    lock, state = global_state()
    with lock:
        fill_uniform(state, out)
    return out


guard_cache(globals())
