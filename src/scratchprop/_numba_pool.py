"""The Numba backend's max pooling (the book's chapter 7): :class:`Pooling`.

It subclasses the reference's (:mod:`scratchprop._numpy_conv`): the constructor, the checks, the
attributes and every edge case are the reference's. A net's Convolution may run it inside its own
passes (:meth:`scratchprop._numba_conv.Convolution.forward_relu_pool`); its ``x`` is then made
when first read.
"""

import numpy as np

from . import _dispatch as _d
from . import _numpy_conv as _ref
from .kernels import conv as _K

__all__ = ["Pooling"]

_INTP = np.dtype(np.intp)


class Pooling(_ref.Pooling):
    """Max pooling in one pass (the max and its window index together); backward routes ``dout``
    to each window's maximum.

    The kernel keeps the window indices compact (one byte each, in ``out``'s order); ``arg_max``,
    the reference's array (``intp``, rows ``(n, oh, ow, c)``), is made from them when first read,
    and from then on backward reads that array, so changes made to it count as in the reference."""

    _arg = None  # the kernel's window indices (N*C*OH*OW,), when the last forward ran it
    _arg_max = None  # the reference's arg_max: set by its code or a user, or made when first read
    _x = None  # the input, as set by a forward or a user
    _pending = None  # a Conv + Relu + Pooling forward's: makes the input when first read

    @property
    def x(self):
        if self._x is None and self._pending is not None:
            self._x = self._pending()
        return self._x

    @x.setter
    def x(self, value):
        self._x, self._pending = value, None

    @property
    def arg_max(self):
        if self._arg_max is None and self._arg is not None:
            N, C, OH, OW = self._out_shape()
            self._arg_max = self._arg.reshape(N, C, OH, OW).transpose(0, 2, 3, 1).astype(_INTP).reshape(-1)
        return self._arg_max

    @arg_max.setter
    def arg_max(self, value):
        self._arg_max, self._arg = value, None

    def forward(self, x):
        x, OH, OW = self._check_forward(x)
        dt = _d.own_dtype(x)
        if dt is None:
            return super().forward(x)
        N, C, _, _ = x.shape
        out = np.empty((N, C, OH, OW), dt)
        arg = np.empty(out.size, np.uint8 if self.pool_h * self.pool_w <= 256 else _INTP)
        _K.pool_forward(_d.as_c(x, dt), self.pool_h, self.pool_w, self.stride, self.pad, out, arg)
        self.x, self._arg, self._arg_max = x, arg, None
        return out

    def backward(self, dout):
        dout = self._check_backward(dout)
        dt = _d.own_dtype(dout)
        arg = self._arg
        if dt is None or (arg is None and self._arg_max is None):
            return super().backward(dout)
        if self._arg_max is not None:  # read (or set) since forward: the reference's array counts
            arg = self._arg_max
            if arg.dtype != _INTP or arg.shape != (dout.size,):
                return super().backward(dout)
            N, C, OH, OW = dout.shape
            arg = np.ascontiguousarray(arg.reshape(N, OH, OW, C).transpose(0, 3, 1, 2)).reshape(-1)
            if arg.size and (arg.min() < 0 or arg.max() >= self.pool_h * self.pool_w):
                return super().backward(dout)  # out of the window: the reference's own IndexError
        dx = np.empty(self.x.shape, dt)
        _K.pool_backward(_d.as_c(dout, dt), arg, self.pool_h, self.pool_w, self.stride, self.pad, dx)
        return dx
