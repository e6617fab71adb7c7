"""The book's optimizers (``common/optimizer.py``), with input checks and a saveable state.

``update(params, grads)`` walks ``params.keys()`` and updates every array
IN PLACE (``params[key] -= ...``): layers hold references to the same arrays.
A plain Python float parameter (the book's ch06/optimizer_compare_naive.py)
is rebound in the dict instead, as in the book. The update formulas and their
operation order are the book's, so the numbers equal its bit for bit.

State (``v``, ``h``, ``m``) is made on the first ``update`` as
``np.zeros_like`` of each parameter. ``state_dict()`` / ``load_state_dict()``
save and restore hyper-parameters and state exactly, as one flat dict of
numbers and arrays such as ``{"lr": 0.001, "beta1": 0.9, "beta2": 0.999,
"iter": 3, "m/W1": ..., "v/W1": ...}`` (parameter keys must be strings).

Added to the book: hyper-parameters are checked in the constructor (``lr``
one finite real number; ``momentum``, ``decay_rate``, ``beta1``, ``beta2`` in
``[0, 1)``) and kept as Python floats; ``update`` checks every key and shape
before it changes anything.
"""

import numpy as np

from . import _validate as check

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "OPTIMIZERS", "get_optimizer"]


class _Optimizer:
    _hyper = ("lr",)  # constructor arguments, saved in state_dict
    _slots = ()  # names of the per-parameter state dicts
    _counters = ()  # integer state saved in state_dict (Adam's "iter")

    def _set_hyper(self, **values):
        name = type(self).__name__
        checked = {}
        for key, value in values.items():  # all checked before any is set
            if key == "lr":
                check.learning_rate(name, value)
                checked[key] = float(value)
            else:
                checked[key] = check.fraction(name, key, value)
        for key, value in checked.items():
            setattr(self, key, value)

    def update(self, params, grads):
        """Update every parameter in place (a float parameter is rebound in the dict)."""
        self._begin(params, grads)
        self._prepare()
        for key in params.keys():
            self._step(params, key, grads[key])

    def _prepare(self):
        """Per-update work before the parameters (Adam's step count)."""

    def _begin(self, params, grads):
        """Check the step and make the state on the first call."""
        where = f"{type(self).__name__}.update"
        check.optimizer_step(where, params, grads)
        for slot in self._slots:
            state = getattr(self, slot)
            if state is None:
                setattr(self, slot, {key: np.zeros_like(val) for key, val in params.items()})
                continue
            for key in params.keys():
                if key not in state or check.shape_of(state[key]) != check.shape_of(params[key]):
                    have = np.shape(state[key]) if key in state else "no entry"
                    raise ValueError(
                        f"{where}: params[{key!r}] (shape {np.shape(params[key])}) does not match the "
                        f"optimizer state {slot}[{key!r}] ({have}); use a new optimizer for other parameters"
                    )

    def state_dict(self):
        """Hyper-parameters, counters and copies of the state arrays, as one flat dict."""
        d = {key: getattr(self, key) for key in self._hyper + self._counters}
        for slot in self._slots:
            for key, val in (getattr(self, slot) or {}).items():
                d[f"{slot}/{key}"] = np.array(val)  # a copy: later updates must not change a checkpoint
        return d

    def load_state_dict(self, d):
        """Restore what :meth:`state_dict` returned (copies the arrays)."""
        name = type(self).__name__
        missing = [key for key in self._hyper + self._counters if key not in d]
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing {missing} (got keys {sorted(d)})")
        state = {slot: {} for slot in self._slots}
        for key, val in d.items():
            slot, _, param = str(key).partition("/")
            if key in self._hyper or key in self._counters:
                continue
            if slot not in state or not param:
                raise ValueError(
                    f"{name}.load_state_dict: unexpected key {key!r}; expected {list(self._hyper + self._counters)}"
                    f" and state entries {[s + '/<param>' for s in self._slots]}"
                )
            state[slot][param] = np.array(check.as_numeric(name, key, val))
        if len({frozenset(s) for s in state.values()}) > 1:
            raise ValueError(
                f"{name}.load_state_dict: the state entries {list(state)} name different parameters"
            )
        for key in self._counters:
            count = d[key]
            if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
                raise ValueError(f"{name}.load_state_dict: {key} must be an integer >= 0, got {count!r}")
        self._set_hyper(**{key: d[key] for key in self._hyper})
        for key in self._counters:
            setattr(self, key, int(d[key]))
        for slot in self._slots:
            setattr(self, slot, state[slot] or None)  # no entries: never updated, made on the next update


class SGD(_Optimizer):
    """``p -= lr * g``."""

    def __init__(self, lr=0.01):
        self._set_hyper(lr=lr)

    def _step(self, params, key, g):
        params[key] -= self.lr * g


class Momentum(_Optimizer):
    """``v = momentum * v - lr * g; p += v``."""

    _hyper = ("lr", "momentum")
    _slots = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        self._set_hyper(lr=lr, momentum=momentum)
        self.v = None

    def _step(self, params, key, g):
        self.v[key] = self.momentum * self.v[key] - self.lr * g
        params[key] += self.v[key]


class Nesterov(_Optimizer):
    """Nesterov's accelerated gradient (http://arxiv.org/abs/1212.0901), in the book's order:
    ``v *= m; v -= lr * g; p += m * m * v; p -= (1 + m) * lr * g``."""

    _hyper = ("lr", "momentum")
    _slots = ("v",)

    def __init__(self, lr=0.01, momentum=0.9):
        self._set_hyper(lr=lr, momentum=momentum)
        self.v = None

    def _step(self, params, key, g):
        self.v[key] *= self.momentum
        self.v[key] -= self.lr * g
        params[key] += self.momentum * self.momentum * self.v[key]
        params[key] -= (1 + self.momentum) * self.lr * g


class AdaGrad(_Optimizer):
    """``h += g * g; p -= lr * g / (sqrt(h) + 1e-7)``."""

    _slots = ("h",)

    def __init__(self, lr=0.01):
        self._set_hyper(lr=lr)
        self.h = None

    def _step(self, params, key, g):
        self.h[key] += g * g
        params[key] -= self.lr * g / (np.sqrt(self.h[key]) + 1e-7)


class RMSprop(_Optimizer):
    """``h = decay_rate * h + (1 - decay_rate) * g * g; p -= lr * g / (sqrt(h) + 1e-7)``."""

    _hyper = ("lr", "decay_rate")
    _slots = ("h",)

    def __init__(self, lr=0.01, decay_rate=0.99):
        self._set_hyper(lr=lr, decay_rate=decay_rate)
        self.h = None

    def _step(self, params, key, g):
        self.h[key] *= self.decay_rate
        self.h[key] += (1 - self.decay_rate) * g * g
        params[key] -= self.lr * g / (np.sqrt(self.h[key]) + 1e-7)


class Adam(_Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8) as the book writes it: the bias correction is
    folded into ``lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)``."""

    _hyper = ("lr", "beta1", "beta2")
    _slots = ("m", "v")
    _counters = ("iter",)

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self._set_hyper(lr=lr, beta1=beta1, beta2=beta2)
        self.iter = 0
        self.m = None
        self.v = None

    def _prepare(self):
        self.iter += 1
        # an np.float64, as in the book (float32 parameters take a float64 step, rounded once)
        self.lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)

    def _step(self, params, key, g):
        self.m[key] += (1 - self.beta1) * (g - self.m[key])
        self.v[key] += (1 - self.beta2) * (g**2 - self.v[key])
        params[key] -= self.lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


#: The book's Trainer names (``common/trainer.py``), lower case.
OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def get_optimizer(name_or_obj, **params):
    """An optimizer from a name (case-insensitive, see :data:`OPTIMIZERS`) or class and its
    constructor ``params``; an object with an ``update`` method is returned as is."""
    if isinstance(name_or_obj, str):
        cls = OPTIMIZERS.get(name_or_obj.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {name_or_obj!r}; choose one of {sorted(OPTIMIZERS)}")
        return cls(**params)
    if isinstance(name_or_obj, type) and callable(getattr(name_or_obj, "update", None)):
        return name_or_obj(**params)
    if callable(getattr(name_or_obj, "update", None)):
        if params:
            raise ValueError(f"get_optimizer: parameters {sorted(params)} given with an optimizer object")
        return name_or_obj
    raise TypeError(
        f"get_optimizer: expected a name in {sorted(OPTIMIZERS)}, an optimizer class, or an object with "
        f"an update(params, grads) method; got {type(name_or_obj).__name__}"
    )
