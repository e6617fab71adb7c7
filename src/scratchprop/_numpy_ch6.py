"""The NumPy reference for the book's chapter 6: activation functions, Sigmoid, Dropout, BatchNormalization.

Re-exported by :mod:`scratchprop.numpy`. The formulas and their operation
order are the book's (``common/functions.py``, ``common/layers.py``), so
float64 results equal the book's bit for bit.

Fixed relative to the book (each has a test):

* ``sigmoid`` / ``Sigmoid``: a large negative ``x`` gives 0 without an
  overflow warning; bool input works (promoted to float64 like int input).
* ``Dropout``: ``dropout_ratio`` must lie in ``[0, 1)`` (1 would silence every
  unit in training and scale every output to 0 at test time).
* ``BatchNormalization`` takes any ``(N, ...)`` input, not only 2-D and 4-D,
  and checks that ``x`` has ``gamma.size`` values per sample.
* ``BatchNormalization`` makes its running statistics in the dtype of
  ``x`` and ``gamma`` (the book: always float64), so float32 stays float32
  in test mode.
* An empty batch in training mode is a ValueError (the book: NaN and a
  warning).
* ``Dropout`` / ``BatchNormalization`` ``backward`` before a training
  ``forward``, or after a test-mode one, is a ValueError (the book: a crash,
  or silently the gradient of an older training batch).
* ``BatchNormalization`` stores ``xn`` from the start (None) and checks that
  ``running_mean`` / ``running_var`` are given together with shape ``(D,)``.

Kept as the book has it: ``relu_grad`` is 1 at ``x == 0`` (``x >= 0``, unlike
``Relu``'s mask); Dropout is not inverted (test mode scales by
``1 - dropout_ratio``); BatchNormalization normalises per activation, not per
channel, with ``eps`` written ``10e-7`` and running statistics rebound (not
updated in place).
"""

import numpy as np

from . import _validate as check

__all__ = [
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "softmax_loss",
    "Sigmoid",
    "Dropout",
    "BatchNormalization",
]


def identity_function(x):
    """Returns ``x`` itself (the book's output activation for regression)."""
    return x


def step_function(x):
    """``1`` where ``x > 0``, else ``0``, as an int array of ``x``'s shape."""
    x = check.as_numeric("step_function", "x", x)
    return np.array(x > 0, dtype=int)


def _sigmoid(layer, x):
    x = check.as_numeric(layer, "x", x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)  # what np.exp does with ints; bool has no unary minus
    # exp(-x) overflows to inf for x < -709 (float64); 1 / inf is the right 0, so no warning
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def sigmoid(x):
    """``1 / (1 + exp(-x))`` elementwise, in ``x``'s float dtype (float64 for int/bool)."""
    return _sigmoid("sigmoid", x)


def sigmoid_grad(x):
    """``(1 - sigmoid(x)) * sigmoid(x)``."""
    s = _sigmoid("sigmoid_grad", x)
    return (1.0 - s) * s


def relu(x):
    """``max(0, x)`` elementwise."""
    return np.maximum(0, check.as_numeric("relu", "x", x))


def relu_grad(x):
    """``1`` where ``x >= 0``, else ``0``, in ``x``'s dtype (the book counts ``x == 0`` as active)."""
    x = check.as_numeric("relu_grad", "x", x)
    grad = np.zeros_like(x)
    grad[x >= 0] = 1
    return grad


def softmax_loss(X, t):
    """``cross_entropy_error(softmax(X), t)``."""
    from . import numpy as _ref  # lazily: scratchprop.numpy imports this module

    return _ref.cross_entropy_error(_ref.softmax(X), t)


class Sigmoid:
    """``out = 1 / (1 + exp(-x))``; backward ``dout * (1 - out) * out``."""

    def __init__(self):
        self.out = None

    def forward(self, x):
        """``x (...) -> (...)``."""
        self.out = _sigmoid("Sigmoid", x)
        return self.out

    def backward(self, dout):
        """``dout`` of ``x``'s shape -> ``dx``."""
        check.forward_done("Sigmoid", self.out)
        dout = check.dout_like("Sigmoid", dout, np.shape(self.out))
        return dout * (1.0 - self.out) * self.out


class Dropout:
    """Dropout as the book has it (http://arxiv.org/abs/1207.0580), not inverted.

    Training keeps each unit where ``np.random.rand(...) > dropout_ratio``
    (the global NumPy generator, so ``np.random.seed`` reproduces the book's
    masks); test mode scales everything by ``1 - dropout_ratio`` instead.
    """

    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = check.fraction("Dropout", "dropout_ratio", dropout_ratio)
        self.mask = None
        self._last_train = False

    def forward(self, x, train_flg=True):
        """``x (...) -> (...)``; sets ``mask`` (bool, ``x``'s shape) in training."""
        x = check.as_numeric("Dropout", "x", x)
        self._last_train = bool(train_flg)
        if train_flg:
            # asarray: rand() with no arguments (0-d x) returns a Python float
            self.mask = np.asarray(np.random.rand(*x.shape) > self.dropout_ratio)
            return x * self.mask
        return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        """``dout * mask`` of the last training forward."""
        check.train_forward_done("Dropout", self.mask, self._last_train)
        dout = check.dout_like("Dropout", dout, self.mask.shape)
        return dout * self.mask


class BatchNormalization:
    """Batch normalization as the book has it (http://arxiv.org/abs/1502.03167).

    ``x (N, ...)`` is flattened to ``(N, D)`` and every one of the ``D``
    activations is normalised on its own (also for conv feature maps);
    ``gamma`` and ``beta`` are ``(D,)`` and held by reference. Training uses
    the batch statistics and updates ``running_mean`` / ``running_var`` as
    ``momentum * running + (1 - momentum) * batch``; test mode uses them.
    """

    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        check.batchnorm_params("BatchNormalization", gamma, beta)
        self.gamma = gamma
        self.beta = beta
        # 1 is allowed: it freezes running statistics given to the constructor
        self.momentum = check.fraction("BatchNormalization", "momentum", momentum, allow_one=True)
        self.input_shape = None
        self.running_mean, self.running_var = check.batchnorm_running(
            "BatchNormalization", running_mean, running_var, gamma.size
        )
        # what forward(train_flg=True) keeps for backward
        self.batch_size = None
        self.xc = None
        self.xn = None
        self.std = None
        self.dgamma = None
        self.dbeta = None
        self._last_train = False

    def forward(self, x, train_flg=True):
        """``x (N, ...) -> out`` of ``x``'s shape."""
        layer = "BatchNormalization"
        check.batchnorm_params(layer, self.gamma, self.beta)
        D = self.gamma.size
        x2 = check.batchnorm_input(layer, x, D, train_flg)
        self.input_shape = np.shape(x)
        if self.running_mean is None:
            # the book starts from float64 zeros; the dtype of x and gamma keeps float32 float32
            dtype = np.result_type(x2.dtype, self.gamma.dtype)
            self.running_mean = np.zeros(D, dtype=dtype)
            self.running_var = np.zeros(D, dtype=dtype)
        else:
            check.batchnorm_running(layer, self.running_mean, self.running_var, D)
        out = self._forward(x2, train_flg)
        self._last_train = bool(train_flg)
        return out.reshape(self.input_shape)

    def _forward(self, x, train_flg):
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)  # the book's eps, written as it writes it (= 1e-6)
            xn = xc / std

            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            # rebound, not updated in place, as in the book
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / np.sqrt(self.running_var + 10e-7)
        return self.gamma * xn + self.beta

    def backward(self, dout):
        """``dout`` of the input's shape -> ``dx``; sets ``dgamma``, ``dbeta`` ``(D,)``."""
        layer = "BatchNormalization"
        check.train_forward_done(layer, self.xc, self._last_train)
        dout = check.dout_like(layer, dout, self.input_shape)
        dx = self._backward(dout.reshape(self.xc.shape))
        return dx.reshape(self.input_shape)

    def _backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size

        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx
