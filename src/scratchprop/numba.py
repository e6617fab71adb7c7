"""The Numba backend: a drop-in replacement for :mod:`scratchprop.numpy`.

Same names, signatures, attributes, results (within
:mod:`scratchprop.tolerances`) and errors (the same :mod:`._validate`
checks, run in Python before any kernel). Change only the import::

    from scratchprop.numba import Affine, Relu, SoftmaxWithLoss, BatchNormalization, Adam

Chapter 5's layers live in :mod:`scratchprop._numba_layers`, chapter 6's in
:mod:`scratchprop._numba_ch6`, the optimizers in
:mod:`scratchprop._numba_optimizers`; the book's helper functions
(``sigmoid``, ``relu_grad``, ...) and ``im2col``, ``col2im``,
``conv_output_size`` are the reference's; Convolution and Pooling are in
:mod:`scratchprop._numba_conv` and :mod:`scratchprop._numba_pool`. For
:class:`scratchprop.TwoLayerNet` (``backend="numba"``) this module also
provides the fused hooks :func:`net_predict`, :func:`net_gradient`,
:func:`net_train_step` (:mod:`scratchprop._numba_net`) and
:func:`net_numerical_gradient` (:mod:`scratchprop.numba_numgrad`); for the chapter-6 nets
(:class:`scratchprop.layernet.LayerNet`), :func:`layer_net_gradient`
(:mod:`scratchprop._numba_mlp`).

Threads: :mod:`scratchprop.threads` says when and why, in one place. In
short, matrix products run in NumPy's own BLAS pool (the one the user's
NumPy code uses), everything else on the calling thread.
:func:`set_num_threads` sizes Numba's threads and that pool;
:func:`get_num_threads` is Numba's. Every result is bit-identical for a
given thread count.
"""

from ._numba_ch6 import BatchNormalization, Dropout, Sigmoid
from ._numba_conv import Convolution
from ._numba_layers import (
    Affine,
    Relu,
    SoftmaxWithLoss,
    cross_entropy_error,
    numerical_gradient,
    softmax,
)
from ._numba_mlp import gradient as layer_net_gradient
from ._numba_net import net_gradient, net_predict, net_train_step
from ._numba_optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from ._numba_pool import Pooling
from ._numpy_ch6 import (
    identity_function,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax_loss,
    step_function,
)
from ._numpy_conv import col2im, conv_output_size, im2col
from .numba_numgrad import net_numerical_gradient
from .threads import get_num_threads, set_num_threads

__all__ = [
    "Affine",
    "Relu",
    "SoftmaxWithLoss",
    "Sigmoid",
    "Dropout",
    "BatchNormalization",
    "Convolution",
    "Pooling",
    "im2col",
    "col2im",
    "conv_output_size",
    "softmax",
    "cross_entropy_error",
    "numerical_gradient",
    "identity_function",
    "step_function",
    "sigmoid",
    "sigmoid_grad",
    "relu",
    "relu_grad",
    "softmax_loss",
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "set_num_threads",
    "get_num_threads",
    "net_predict",
    "net_gradient",
    "net_train_step",
    "net_numerical_gradient",
    "layer_net_gradient",
]
