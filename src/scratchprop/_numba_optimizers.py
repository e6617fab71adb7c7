"""The Numba backend's optimizers: the book's six, each parameter updated in one fused pass.

Each subclasses its reference class (:mod:`scratchprop.optimizers`), so the
checks, the state (made on the first ``update``), ``state_dict`` and the
handling of float parameters are the reference's. Per parameter, one kernel
pass replaces NumPy's four to eight temporaries, when the parameter, its
gradient and its state are C-contiguous arrays of one float dtype (what the
nets hold); anything else takes the reference's NumPy step, with its exact
promotion rules. From the second ``update`` of the same parameters on, all of them go through a
few kernel calls (:class:`_Each`), with the same bits.
"""

from operator import is_ as _is

import numpy as np

from . import _dispatch as _d
from . import optimizers as _ref
from . import threads as _threads
from .kernels import optim as _K
from .kernels import pair as _K_pair

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


_CW = _d.C_WRITEABLE


def _fused(kernel, p, g, state, *scalars):
    """Run ``kernel(p, g, *state, *scalars)`` on flat views and return True, if all can take it."""
    if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
        return False
    dt = _d.own_dtype(p)
    if dt is None or g.dtype != dt or p.flags.num & _CW != _CW:
        return False
    for a in state:
        if a.dtype != dt or a.flags.num & _CW != _CW:
            return False
    kernel(p.reshape(-1), _d.as_c(g, dt).reshape(-1), *[a.reshape(-1) for a in state], *scalars)
    return True


class _Each:
    """What an update of the same net's parameters needs, step after step, in a few kernel calls.

    The first ``update`` takes the reference's path (its checks, the state it makes, a kernel call
    per parameter); then, while ``params`` holds the same arrays and the state is the same, each
    update checks only the gradients (a C-contiguous array of the parameter's dtype and shape each,
    else the full path runs and raises the reference's error) and updates every parameter in
    ``ceil(n / EACH)`` calls of a ``kernels.optim.*_each`` kernel. At ~22 parameters a net, the
    per-key checks and calls cost ~0.1 ms of Python a step, a third of Adam's update.
    """

    def __init__(self, params, slots, op=0):
        keys = list(params.keys())
        p0 = params[keys[0]] if keys else None
        dt = _d.own_dtype(p0) if type(p0) is np.ndarray else None
        self.ok = dt is not None and all(
            type(a) is np.ndarray and a.dtype == dt and a.flags.num & _CW == _CW
            for k in keys
            for a in [params[k]] + [s[k] for s in slots]
        )
        if not self.ok:
            return
        self.params, self.slots = params, [(s, [s[k] for k in keys]) for s in slots]
        self.dt = dt
        self.keys, self.ps = keys, [params[k] for k in keys]
        self.shapes = [p.shape for p in self.ps]
        flats = [[params[k].reshape(-1)] + [s[k].reshape(-1) for s in slots] for k in keys]
        # per call: (p, *states) tuples of EACH flat arrays
        self.calls = [
            [tuple(a) for a in zip(*call)] for call in _calls(flats, [_NONE[dt]] * (1 + len(slots)))
        ]
        self.pair = _pair_records(op, flats) if op and _K_pair.AVAILABLE else None  # (records, where)
        self.fn = _K.share_address(dt) if self.pair is not None else 0  # compiled only for those

    def holds(self, params, slots):
        """Whether ``params`` and ``slots`` are the arrays this was made from."""
        keys = self.keys
        if params is not self.params or len(params) != len(keys):
            return False
        if not all(map(_is, map(params.get, keys), self.ps)):
            return False
        return all(
            s is s0 and all(map(_is, map(s.get, keys), arrays)) for s, (s0, arrays) in zip(slots, self.slots)
        )

    def grads(self, grads):
        """``grads`` as flat arrays in :attr:`calls`' order, or ``None`` if one is not a
        C-contiguous array of its parameter's dtype and shape (the per-key path copies those)."""
        if not hasattr(grads, "get"):
            return None
        dt, out = self.dt, []
        for g, shape in zip(map(grads.get, self.keys), self.shapes):
            if type(g) is not np.ndarray or g.shape != shape or not g.flags.c_contiguous or g.dtype != dt:
                return None
            out.append(g.ravel())  # a view: checked C-contiguous above (faster than reshape)
        return [tuple(call) for call in _calls(out, _NONE[dt])]


def _pair_records(op, flats):
    """The two threads' records of a divider-bound update over the flat ``(p, state...)`` of each
    parameter (``kernels.optim.records``); ``None`` when no parameter has
    :data:`~scratchprop.threads.UPDATE_PAIR_MIN_ELEMENTS`. The worker takes the tail of each such
    parameter, enough of them for half of all the elements (of a net's first layer: the rows whose
    ``dW`` it made when the products were paired, and more); everything else runs here."""
    least = _threads.UPDATE_PAIR_MIN_ELEMENTS
    sizes = [f[0].size for f in flats]
    big = sum(n for n in sizes if n >= least)
    if not big:
        return None
    share = min(1.0, sum(sizes) / 2 / big)
    pieces = [[], []]  # per thread: (parameter, first element, end)
    for k, n in enumerate(sizes):
        cut = n - int(n * share) // 8 * 8 if n >= least else n  # the worker's piece: whole 8 elements
        if cut:
            pieces[0].append((k, 0, cut))
        if cut < n:
            pieces[1].append((k, cut, n))
    return _K.records(op, flats, pieces)


_NONE = {_d.F32: np.empty(0, _d.F32), _d.F64: np.empty(0, _d.F64)}


def _calls(items, filler):
    """``items`` in lists of ``kernels.optim.EACH``, the last one padded with ``filler``."""
    n = _K.EACH
    items = items + [filler] * (-len(items) % n)
    return [items[i : i + n] for i in range(0, len(items), n)]


class _Updates:
    """``update`` in a few kernel calls once the state exists (:class:`_Each`); the first update,
    and any that :class:`_Each` does not take, is the reference's, a kernel call per parameter."""

    _each = None
    _op = 0  # kernels.optim's op where the update can split large parameters with BLAS's worker

    def __getstate__(self):
        """Pickled and copied without :class:`_Each`: its records hold this process's raw addresses
        of the arrays it was made from, not of their copies. The next update makes it again."""
        state = dict(self.__dict__)
        state.pop("_each", None)
        return state

    def update(self, params, grads):
        slots = tuple(getattr(self, s) for s in self._slots)
        each = self._each
        held = each is not None and each.holds(params, slots)
        gs = each.grads(grads) if held else None
        if gs is None:
            super().update(params, grads)  # its checks and errors, the state on the first call
            if not held:  # new parameters or state: what a few calls need, made again
                each = _Each(params, tuple(getattr(self, s) for s in self._slots), self._op)
                self._each = each if each.ok else None
            return
        self._prepare()
        scalars = self._scalars()
        # not while a convnet trains: the worker woken here would spin in its next step (rule 4)
        if (
            each.pair is not None
            and not _threads.blas_held_lately()
            and all(type(s) in _AS_F64 for s in scalars)
        ):
            rec, where = each.pair
            for i, g in enumerate(gs):
                _K.stage_grads(rec, where, g, i * _K.EACH)
            if _K.run_update(rec, *(*scalars, 0.0, 0.0)[:3], each.fn):
                return
        for arrays, g in zip(each.calls, gs):
            self._kernel_each(arrays[0], g, *arrays[1:], *scalars)


_AS_F64 = (float, int, np.float64)  # scalars the paired kernel takes as float64 with the same results


class SGD(_Updates, _ref.SGD):
    __doc__ = _ref.SGD.__doc__
    _kernel_each = staticmethod(_K.sgd_each)

    def _scalars(self):
        return (self.lr,)

    def _step(self, params, key, g):
        if not _fused(_K.sgd, params[key], g, (), self.lr):
            super()._step(params, key, g)


class Momentum(_Updates, _ref.Momentum):
    __doc__ = _ref.Momentum.__doc__
    _kernel_each = staticmethod(_K.momentum_each)

    def _scalars(self):
        return self.lr, self.momentum

    def _step(self, params, key, g):
        if not _fused(_K.momentum, params[key], g, (self.v[key],), self.lr, self.momentum):
            super()._step(params, key, g)


class Nesterov(_Updates, _ref.Nesterov):
    __doc__ = _ref.Nesterov.__doc__
    _kernel_each = staticmethod(_K.nesterov_each)

    def _scalars(self):
        return self.lr, self.momentum

    def _step(self, params, key, g):
        if not _fused(_K.nesterov, params[key], g, (self.v[key],), self.lr, self.momentum):
            super()._step(params, key, g)


class AdaGrad(_Updates, _ref.AdaGrad):
    __doc__ = _ref.AdaGrad.__doc__
    _kernel_each = staticmethod(_K.adagrad_each)
    _op = _K.ADAGRAD

    def _scalars(self):
        return (self.lr,)

    def _step(self, params, key, g):
        if not _fused(_K.adagrad, params[key], g, (self.h[key],), self.lr):
            super()._step(params, key, g)


class RMSprop(_Updates, _ref.RMSprop):
    __doc__ = _ref.RMSprop.__doc__
    _kernel_each = staticmethod(_K.rmsprop_each)
    _op = _K.RMSPROP

    def _scalars(self):
        return self.lr, self.decay_rate

    def _step(self, params, key, g):
        if not _fused(_K.rmsprop, params[key], g, (self.h[key],), self.lr, self.decay_rate):
            super()._step(params, key, g)


class Adam(_Updates, _ref.Adam):
    __doc__ = _ref.Adam.__doc__
    _kernel_each = staticmethod(_K.adam_each)
    _op = _K.ADAM

    def _scalars(self):
        return self.lr_t, self.beta1, self.beta2

    def _step(self, params, key, g):
        state = (self.m[key], self.v[key])
        if not _fused(_K.adam, params[key], g, state, self.lr_t, self.beta1, self.beta2):
            super()._step(params, key, g)
