"""The Numba backend's optimizers: the book's six, each parameter updated in one fused pass.

Each subclasses its reference class (:mod:`scratchprop.optimizers`), so the
checks, the state (made on the first ``update``), ``state_dict`` and the
handling of float parameters are the reference's. Per parameter, one kernel
pass replaces NumPy's four to eight temporaries, when the parameter, its
gradient and its state are C-contiguous arrays of one float dtype (what the
nets hold); anything else takes the reference's NumPy step, with its exact
promotion rules.
"""

import numpy as np

from . import _dispatch as _d
from . import optimizers as _ref
from .kernels import optim as _K

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


class SGD(_ref.SGD):
    __doc__ = _ref.SGD.__doc__

    def _step(self, params, key, g):
        if not _fused(_K.sgd, params[key], g, (), self.lr):
            super()._step(params, key, g)


class Momentum(_ref.Momentum):
    __doc__ = _ref.Momentum.__doc__

    def _step(self, params, key, g):
        if not _fused(_K.momentum, params[key], g, (self.v[key],), self.lr, self.momentum):
            super()._step(params, key, g)


class Nesterov(_ref.Nesterov):
    __doc__ = _ref.Nesterov.__doc__

    def _step(self, params, key, g):
        if not _fused(_K.nesterov, params[key], g, (self.v[key],), self.lr, self.momentum):
            super()._step(params, key, g)


class AdaGrad(_ref.AdaGrad):
    __doc__ = _ref.AdaGrad.__doc__

    def _step(self, params, key, g):
        if not _fused(_K.adagrad, params[key], g, (self.h[key],), self.lr):
            super()._step(params, key, g)


class RMSprop(_ref.RMSprop):
    __doc__ = _ref.RMSprop.__doc__

    def _step(self, params, key, g):
        if not _fused(_K.rmsprop, params[key], g, (self.h[key],), self.lr, self.decay_rate):
            super()._step(params, key, g)


class Adam(_ref.Adam):
    __doc__ = _ref.Adam.__doc__

    def _step(self, params, key, g):
        state = (self.m[key], self.v[key])
        if not _fused(_K.adam, params[key], g, state, self.lr_t, self.beta1, self.beta2):
            super()._step(params, key, g)
