"""``LayerNet``: a net built from an ordered list of layers, on any backend.

The book's chapter-6 nets (:mod:`scratchprop.multilayer`) are thin
constructors over it: they build ``params`` and the layers, this class does
the rest the way the book does — ``predict`` walks the layers in order
(passing ``train_flg`` to the layers whose ``forward`` takes it),
``gradient`` walks them backwards and gathers each parameter's gradient by
name from the layer that holds it (``W1`` -> ``Affine1.dW``, ``gamma1`` ->
``BatchNorm1.dgamma``), weight decay added to every ``W``.

A backend may compute ``gradient`` in one call (the Numba backend's
``layer_net_gradient`` for fully connected nets: :mod:`scratchprop._numba_mlp`), leaving every
layer as the walk below would; :meth:`LayerNet.layered_gradient` is that walk, and runs for
any net the hook does not take.

Differences from the book, each tested:

* ``numerical_gradient`` evaluates every perturbed loss with the same
  random draws (Dropout masks) as :meth:`gradient` called from the same
  ``np.random`` state, and leaves the net as it found it: BatchNorm's running
  statistics and the ``np.random`` state are restored (the book's version
  draws new masks for every evaluation, so it cannot check a dropout net).
* ``accuracy`` accepts labels ``(N,)``/``(N, 1)`` or one-hot rows and
  raises a clear error on an empty batch.
"""

import contextlib
import inspect
from collections import OrderedDict

import numpy as np

from . import _validate as check
from .backends import backend_name

__all__ = ["LayerNet", "GRAD_OF", "takes_train_flg"]

#: A parameter attribute of a layer -> the attribute its backward writes the gradient to.
GRAD_OF = {"W": "dW", "b": "db", "gamma": "dgamma", "beta": "dbeta"}

_TRAIN_FLG = {}


def takes_train_flg(layer):
    """Whether ``layer.forward`` has a ``train_flg`` parameter (Dropout, BatchNormalization)."""
    cls = type(layer)
    if cls not in _TRAIN_FLG:
        _TRAIN_FLG[cls] = "train_flg" in inspect.signature(cls.forward).parameters
    return _TRAIN_FLG[cls]


def _groups(layers):
    """``[(i, n), ...]``: layer ``i`` takes the ``n`` layers after it into its own passes
    (``forward_fused`` / ``backward_fused``, when its ``fuses_with`` says so: Numba's Convolution
    and the Relu, or Relu and Pooling, after it; its BatchNormalization and the Relu, or Relu and
    Dropout, after it); ``n = 0`` for a layer on its own."""
    groups, i = [], 0
    while i < len(layers):
        fuses = getattr(layers[i], "fuses_with", None)
        n = fuses(layers[i + 1 : i + 3]) if fuses is not None else 0
        groups.append((i, n))
        i += 1 + n
    return groups


def _runs(layers, groups):
    """``groups`` in runs ``[(context, [group, ...]), ...]``: consecutive groups whose first layers
    have the same ``chain`` (Numba's Convolution: their kernels in one region of threads, each
    thread taking its images through every layer) run inside it; any other group alone."""
    runs = []
    for g in groups:
        chain = getattr(layers[g[0]], "chain", None)
        if runs and chain is not None and runs[-1][0] is chain:
            runs[-1][1].append(g)
        else:
            runs.append((chain, [g]))
    return [(c if c is not None and len(gs) > 1 else contextlib.nullcontext, gs) for c, gs in runs]


class LayerNet:
    """Layers in order, a loss layer, and parameters shared with the layers by reference.

    Subclasses set, in ``__init__``: ``backend`` (module), ``dtype``,
    ``params`` (name -> array, the very arrays the layers hold), ``layers``
    (``OrderedDict`` name -> layer), ``last_layer``, ``weight_decay_lambda``
    and ``param_owner`` (parameter name -> ``(layer name, attribute)``, e.g.
    ``"W1": ("Affine1", "W")``); :meth:`owner` fills the last one.
    """

    weight_decay_lambda = 0

    def owner(self, layer_name, **params):
        """Record that ``layers[layer_name]`` holds ``params`` (attribute -> parameter name)."""
        for attr, key in params.items():
            self.param_owner[key] = (layer_name, attr)

    @property
    def backend_name(self):
        """The backend's registry name (``"numpy"``, ``"numba"``) or module name."""
        return backend_name(self.backend)

    @property
    def lastLayer(self):  # noqa: N802 - TwoLayerNet's (chapter 5) name for the same layer
        return self.last_layer

    def predict(self, x, train_flg=False):
        """Scores ``x (N, D) -> (N, C)``; ``train_flg`` goes to Dropout and BatchNormalization."""
        layers = list(self.layers.values())
        for context, run in _runs(layers, _groups(layers)):
            with context():
                for i, n in run:
                    layer = layers[i]
                    if n:  # e.g. Numba's Convolution + Relu + Pooling: one pass
                        x = layer.forward_fused(x, layers[i + 1 : i + 1 + n], train_flg)
                    else:
                        x = layer.forward(x, train_flg) if takes_train_flg(layer) else layer.forward(x)
        return x

    def weight_decay(self):
        """``0.5 * lambda * sum(W ** 2)`` over every weight matrix (0 without decay)."""
        lam = self.weight_decay_lambda
        if not lam:
            return 0
        return sum(0.5 * lam * np.sum(self.params[k] ** 2) for k in self.param_owner if k[0] == "W")

    def loss(self, x, t, train_flg=False):
        """Mean softmax cross-entropy of ``predict(x, train_flg)`` against ``t``, plus weight decay."""
        y = self.predict(x, train_flg)
        return self.last_layer.forward(y, t) + self.weight_decay()

    def accuracy(self, x, t):
        """Fraction of samples whose arg-max score (``train_flg=False``) is the label."""
        y = self.predict(x, train_flg=False)
        y2 = y.reshape(-1, y.shape[-1])
        N, C = y2.shape
        where = f"{type(self).__name__}.accuracy"
        labels, T = check.targets(where, t, N, C, y2.dtype)
        if T is not None:
            labels = np.argmax(T, axis=1)
        if N == 0:
            raise ValueError(f"{where}: the batch is empty")
        return np.sum(np.argmax(y2, axis=1) == labels) / float(N)

    def gradient(self, x, t):
        """Backprop gradient of ``loss(x, t, train_flg=True)``: a dict keyed like ``params``."""
        fused = getattr(self.backend, "layer_net_gradient", None)  # the whole walk in one call
        if fused is not None and fused(self, x, t):
            return self._grads()
        return self.layered_gradient(x, t)

    def layered_gradient(self, x, t):
        """:meth:`gradient` as the book computes it, layer by layer (whatever the backend)."""
        self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for context, run in reversed(_runs(layers, _groups(layers))):
            with context():
                for i, n in reversed(run):
                    # nothing reads the input's gradient: a first layer that can skip it (Numba's) does
                    if n:
                        dout = layers[i].backward_fused(dout, layers[i + 1 : i + 1 + n], need_dx=i > 0)
                    elif i == 0:
                        getattr(layers[0], "backward_params", layers[0].backward)(dout)
                    else:
                        dout = layers[i].backward(dout)
        return self._grads()

    def _grads(self):
        grads = {}
        lam = self.weight_decay_lambda
        for key, (layer_name, attr) in self.param_owner.items():
            g = getattr(self.layers[layer_name], GRAD_OF[attr])
            grads[key] = g + lam * self.params[key] if lam and attr == "W" else g
        return grads

    def numerical_gradient(self, x, t, h=1e-4):
        """Central differences of ``loss(x, t, train_flg=True)`` for every parameter (slow)."""
        state = np.random.get_state()
        saved = self._running_stats()

        def loss_w(_):
            np.random.set_state(state)  # the same Dropout masks for every evaluation
            return self.loss(x, t, train_flg=True)

        try:
            return {k: self.backend.numerical_gradient(loss_w, self.params[k], h) for k in self.param_owner}
        finally:
            np.random.set_state(state)
            self._restore_running_stats(saved)

    def _running_stats(self):
        return {
            name: tuple(None if a is None else np.array(a) for a in (layer.running_mean, layer.running_var))
            for name, layer in self.layers.items()
            if hasattr(layer, "running_mean")
        }

    def _restore_running_stats(self, saved):
        for name, (mean, var) in saved.items():
            self.layers[name].running_mean, self.layers[name].running_var = mean, var

    def load_params(self, params):
        """Copy ``params`` (a mapping with every key of ``self.params``) into this net's arrays in place."""
        where = type(self).__name__
        for k, dst in self.params.items():
            if k not in params:
                raise ValueError(f"{where}: parameters lack {k!r}")
            src = np.asarray(params[k])
            if src.shape != dst.shape:
                raise ValueError(f"{where}: {k} must have shape {dst.shape}, got {src.shape}")
            if src.dtype.kind != "f":
                raise TypeError(f"{where}: {k} must be floating point, got {src.dtype}")
        for k, dst in self.params.items():  # all checked first: never a half-loaded net
            dst[...] = params[k]

    def _new_layers(self):
        self.layers = OrderedDict()
        self.param_owner = {}
