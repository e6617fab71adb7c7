"""The NumPy reference: the book's chapter-5 layers, with its known bugs fixed.

Chapter 6 (Sigmoid, Dropout, BatchNormalization, optimizers) is re-exported from ``_numpy_ch6`` / ``optimizers``.
Chapter 7 (im2col, col2im, conv_output_size, Convolution, Pooling) is re-exported from ``_numpy_conv``.

This module is the spec every other backend is tested against. It stays
plain NumPy and readable; speed tricks live in ``scratchprop.kernels``.

Fixed relative to the book's notebook (each has a test):

* 1-D input: ``Affine`` takes one sample ``(D,)``; ``softmax`` works on any
  ndim over the last axis; ``cross_entropy_error`` takes a 1-D ``y``.
* One-hot targets no longer crash ``SoftmaxWithLoss.backward``.
* ``(N, 1)`` labels no longer broadcast to ``(N, N)`` in ``backward``.
* A 1-D sample with a 1-D one-hot target is a batch of one, not of ``C``.
* Soft (probability) targets: the loss is ``-sum(t * log y) / N``, the
  function whose gradient ``(y - t) / N`` is, instead of ``-log y[argmax t]``.
* ``SoftmaxWithLoss`` computes the loss as ``logsumexp(x) - x[t]`` (exact and
  finite for huge logits) instead of ``-log(y + 1e-7)``.
"""

import numpy as np

from . import _validate as check

__all__ = ["Affine", "Relu", "SoftmaxWithLoss", "softmax", "cross_entropy_error", "numerical_gradient"]


def softmax(x):
    """Softmax over the last axis, stable for huge logits: ``x (..., C) -> (..., C)``."""
    x = check.as_numeric("softmax", "x", x)
    if x.ndim == 0:
        raise ValueError("softmax: x must have at least one axis, got a scalar")
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def cross_entropy_error(y, t):
    """Mean cross-entropy of probabilities ``y (N, C)`` or ``(C,)`` against ``t``.

    ``t`` is labels ``(N,)`` / ``(N, 1)`` or one-hot / probability rows
    ``(N, C)``. As in the book, ``1e-7`` is added inside the log so that a zero
    probability gives a large finite loss.
    """
    y2 = check.logits("cross_entropy_error", y)
    N, C = y2.shape
    labels, T = check.targets(
        "cross_entropy_error", t, N, C, y2.dtype if y2.dtype.kind == "f" else np.float64
    )
    delta = 1e-7
    if labels is not None:
        return -np.sum(np.log(y2[np.arange(N), labels] + delta)) / N
    return -np.sum(T * np.log(y2 + delta)) / N


class Affine:
    """``out = x @ W + b``: ``x (N, D)`` (or ``(N, ...)``, or ``(D,)``), ``W (D, M)``, ``b (M,)``.

    Keeps references to ``W`` and ``b`` (never copies them), so in-place
    updates of the caller's arrays are seen by the next call.
    """

    def __init__(self, W, b):
        check.affine_params("Affine", W, b)
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None

    def forward(self, x):
        """``x (N, ...) -> (N, M)``; a single sample ``(D,) -> (M,)``."""
        check.affine_params("Affine", self.W, self.b)
        x2, x = check.affine_input("Affine", x, self.W)
        self.original_x_shape = x.shape
        self.x = x2
        out = np.dot(x2, self.W) + self.b
        return out.reshape(self.W.shape[1]) if x.ndim == 1 else out

    def backward(self, dout):
        """``dout (N, M) -> dx`` in the input's original shape; sets ``dW (D, M)``, ``db (M,)``."""
        check.forward_done("Affine", self.x)
        out_shape = (
            (self.W.shape[1],) if len(self.original_x_shape) == 1 else (self.x.shape[0], self.W.shape[1])
        )
        dout = check.dout_like("Affine", dout, out_shape).reshape(self.x.shape[0], self.W.shape[1])
        dx = np.dot(dout, self.W.T)
        self.dW = np.dot(self.x.T, dout)
        self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)


class Relu:
    """``out = max(x, 0)``; ``mask`` is ``x <= 0``. Never modifies its inputs."""

    def __init__(self):
        self.mask = None

    def forward(self, x):
        """``x (...) -> (...)``."""
        x = check.as_numeric("Relu", "x", x)
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        """``dout`` of ``x``'s shape -> ``dx``, zero where ``x <= 0``."""
        check.forward_done("Relu", self.mask)
        dout = check.dout_like("Relu", dout, self.mask.shape)
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class SoftmaxWithLoss:
    """Softmax followed by the mean cross-entropy loss.

    ``forward(x (N, C), t) -> loss``; sets ``y`` (probabilities, ``x``'s
    shape), ``t`` (as given) and ``loss``. ``backward(dout=1)`` returns
    ``dout * (y - T) / N`` with ``T`` the one-hot / probability targets.
    """

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None
        self._labels = None
        self._T = None

    def forward(self, x, t):
        x2 = check.logits("SoftmaxWithLoss", x)
        x2 = x2 if x2.dtype.kind == "f" else x2.astype(np.float64)
        N, C = x2.shape
        self._labels, self._T = check.targets("SoftmaxWithLoss", t, N, C, x2.dtype)
        self.t = t
        shifted = x2 - np.max(x2, axis=1, keepdims=True)
        log_sum = np.log(np.sum(np.exp(shifted), axis=1))
        log_y = shifted - log_sum[:, None]
        y = np.exp(log_y)
        if self._labels is not None:
            self.loss = -np.sum(log_y[np.arange(N), self._labels]) / N
        else:
            self.loss = -np.sum(self._T * log_y) / N
        self.y = y.reshape(np.shape(x))
        return self.loss

    def backward(self, dout=1):
        check.forward_done("SoftmaxWithLoss", self.y)
        y2 = self.y.reshape(-1, self.y.shape[-1])
        N = y2.shape[0]
        if self._labels is not None:
            dx = y2.copy()
            dx[np.arange(N), self._labels] -= 1
        else:
            dx = y2 - self._T
        return (dout * dx / N).reshape(self.y.shape)


def numerical_gradient(f, x, h=1e-4):
    """Central-difference gradient of ``f`` at ``x``: ``(f(x+h) - f(x-h)) / 2h`` per element.

    ``x`` is perturbed in place (``f`` is expected to read it, as in the book's
    ``lambda W: net.loss(x, t)``) and every element is restored bit-exactly.
    Returns an array of ``x``'s shape and dtype.
    """
    check.perturbable("x", x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        idx = it.multi_index
        tmp_val = x[idx]
        x[idx] = tmp_val + h
        fxh1 = f(x)
        x[idx] = tmp_val - h
        fxh2 = f(x)
        grad[idx] = (fxh1 - fxh2) / (2 * h)
        x[idx] = tmp_val
        it.iternext()
    return grad


# Chapter 6, kept in its own modules; imported last because _numpy_ch6 reads this module lazily.
from ._numpy_ch6 import (  # noqa: E402
    BatchNormalization,
    Dropout,
    Sigmoid,
    identity_function,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax_loss,
    step_function,
)
from ._numpy_conv import Convolution, Pooling, col2im, conv_output_size, im2col  # noqa: E402
from .optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop  # noqa: E402

__all__ += [
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
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "im2col",
    "col2im",
    "conv_output_size",
    "Convolution",
    "Pooling",
]
