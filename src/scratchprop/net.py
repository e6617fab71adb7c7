"""``TwoLayerNet``: the book's two-layer net, on any backend."""

from collections import OrderedDict

import numpy as np

from . import _validate as check
from .backends import backend_name, get_backend

_INF = float("inf")


class TwoLayerNet:
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, with the notebook's surface.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        ``D``, ``H`` and ``C``: ``W1 (D, H)``, ``b1 (H,)``, ``W2 (H, C)``, ``b2 (C,)``.
    weight_init_std : float
        Weights are ``weight_init_std * N(0, 1)``; biases are zero.
    backend : str or module
        ``"numpy"`` (the reference), ``"numba"``, or a module with the layers.
    dtype : numpy dtype
        The parameters' dtype (float64 or float32).
    seed : int or None
        Seed for the weight initialisation.

    Attributes
    ----------
    params : dict
        ``W1, b1, W2, b2``; the very arrays the layers hold, so in-place
        updates (``params[k] -= lr * grad[k]``) are seen by the layers.
    layers : OrderedDict
        ``Affine1, Relu1, Affine2``.
    lastLayer : SoftmaxWithLoss
    """

    params_key = ("W1", "b1", "W2", "b2")

    def __init__(
        self,
        input_size,
        hidden_size,
        output_size,
        weight_init_std=0.01,
        *,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TwoLayerNet: {name} must be a positive integer, got {value!r}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"TwoLayerNet: dtype must be a floating-point type, got {dtype}")
        self.backend = get_backend(backend)
        self.dtype = dtype
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (weight_init_std * rng.standard_normal((input_size, hidden_size))).astype(dtype),
            "b1": np.zeros(hidden_size, dtype=dtype),
            "W2": (weight_init_std * rng.standard_normal((hidden_size, output_size))).astype(dtype),
            "b2": np.zeros(output_size, dtype=dtype),
        }
        self._build_layers()

    def _build_layers(self):
        B = self.backend
        self.layers = OrderedDict()
        self.layers["Affine1"] = B.Affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = B.Relu()
        self.layers["Affine2"] = B.Affine(self.params["W2"], self.params["b2"])
        self.lastLayer = B.SoftmaxWithLoss()

    @property
    def backend_name(self):
        """The backend's registry name (``"numpy"``, ``"numba"``) or module name."""
        return backend_name(self.backend)

    @property
    def sizes(self):
        """``(input_size, hidden_size, output_size)``."""
        D, H = self.params["W1"].shape
        return D, H, self.params["W2"].shape[1]

    def load_params(self, params):
        """Copy ``params`` (a mapping ``W1, b1, W2, b2``) into this net's arrays in place."""
        for k in self.params_key:
            if k not in params:
                raise ValueError(f"TwoLayerNet: parameters lack {k!r}")
            src = np.asarray(params[k])
            if src.shape != self.params[k].shape:
                raise ValueError(f"TwoLayerNet: {k} must have shape {self.params[k].shape}, got {src.shape}")
            if src.dtype.kind != "f":
                raise TypeError(f"TwoLayerNet: {k} must be floating point, got {src.dtype}")
            self.params[k][...] = src

    def predict(self, x):
        """Scores ``x (N, D) -> (N, C)``."""
        fast = getattr(self.backend, "net_predict", None)
        if fast is not None:
            return fast(self, x)
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Mean softmax cross-entropy of ``x (N, D)`` against labels or one-hot ``t``."""
        y = self.predict(x)
        return self.lastLayer.forward(y, t)

    def accuracy(self, x, t):
        """Fraction of samples whose arg-max score is the label (``t`` labels or one-hot)."""
        y = self.predict(x)
        y2 = y.reshape(-1, y.shape[-1])
        N, C = y2.shape
        labels, T = check.targets("TwoLayerNet.accuracy", t, N, C, y2.dtype)
        if T is not None:
            labels = np.argmax(T, axis=1)
        if N == 0:
            raise ValueError("TwoLayerNet.accuracy: the batch is empty")
        return np.sum(np.argmax(y2, axis=1) == labels) / float(N)

    def numerical_gradient(self, x, t, h=1e-4):
        """Central-difference gradient of the loss for every parameter (slow, for checking)."""
        fast = getattr(self.backend, "net_numerical_gradient", None)
        if fast is not None:
            return fast(self, x, t, h)

        def loss_W(W):
            return self.loss(x, t)

        return {k: self.backend.numerical_gradient(loss_W, self.params[k], h) for k in self.params_key}

    def gradient(self, x, t):
        """Backprop gradient of the loss: a dict ``W1, b1, W2, b2``."""
        fast = getattr(self.backend, "net_gradient", None)
        if fast is not None:
            return fast(self, x, t)
        self.loss(x, t)
        dout = self.lastLayer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {
            "W1": self.layers["Affine1"].dW,
            "b1": self.layers["Affine1"].db,
            "W2": self.layers["Affine2"].dW,
            "b2": self.layers["Affine2"].db,
        }

    def train_step(self, x, t, lr):
        """One SGD step: ``params[k] -= lr * gradient(x, t)[k]`` in place; returns the loss.

        ``lr`` is one finite real number (see :func:`scratchprop._validate.learning_rate`);
        anything else raises before a parameter is touched, on every backend.
        """
        if type(lr) is not float or not -_INF < lr < _INF:  # the common case in one test
            check.learning_rate("TwoLayerNet.train_step", lr)
        fast = getattr(self.backend, "net_train_step", None)
        if fast is not None:
            return fast(self, x, t, lr)
        grads = self.gradient(x, t)
        for k in self.params_key:
            self.params[k] -= lr * grads[k]
        return self.lastLayer.loss
