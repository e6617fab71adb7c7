"""The Numba backend's chapter-7 layers: Convolution and Pooling.

Each subclasses its reference class (:mod:`scratchprop._numpy_conv`): the
constructor, the checks, the attributes and every edge case are the
reference's. The three products run in NumPy's BLAS on the unfolded images
kept transposed (``kernels/conv.py`` says why); the kernels do the rest in
one pass each: the unfold with the padding and the dtype conversion, the
bias with the move to NCHW, the fold, and max pooling with its ``arg_max``,
each parallel across the batch when the work pays (:mod:`scratchprop.threads`).

What differs from the reference, none of it in the values: the outputs are
C-contiguous (the reference returns a transposed view), and float32 images
with float64 filters are unfolded straight into a float64 ``col`` (the
reference unfolds in float32 and NumPy converts the whole matrix for the
product); ``col`` still reads back in the image's dtype, as the reference's.
The products sum in another order than the reference's, so the last bits
of ``out``, ``dW`` and ``dx`` may differ (:mod:`scratchprop.tolerances`).
"""

import numpy as np

from . import _dispatch as _d
from . import _numpy_conv as _ref
from .kernels import conv as _K
from .threads import CONV_MIN_ELEMENTS, get_num_threads, parallel_region

__all__ = ["Convolution", "Pooling"]

_INTP = np.dtype(np.intp)


def _run(name, n_elements, n_images, *args):
    """Kernel ``name`` over the batch: on Numba's threads (``name(*args, nchunks)``) when the work
    pays, else on the calling thread (``name_images(0, N, *args)``); the same bits either way."""
    with parallel_region(n_elements if n_images > 1 else 0, CONV_MIN_ELEMENTS) as threaded:
        if threaded:
            getattr(_K, name)(*args, min(n_images, get_num_threads()))
        else:
            getattr(_K, name + "_images")(0, n_images, *args)


def _scratch(layer, name, shape, dt):
    """A work array of the layer's, reused from call to call while ``shape`` and ``dt`` fit: a fresh
    array of megabytes per call costs its page faults again (more than the pass that fills it)."""
    ws = layer.__dict__.setdefault("_scratch", {})
    a = ws.get(name)
    if a is None or a.shape != shape or a.dtype != dt:
        a = ws[name] = np.empty(shape, dt)
    return a


def _images(x, dt):
    """``x`` C-contiguous for a kernel that reads float32 or float64 (``dt`` otherwise)."""
    if x.dtype == _d.F64 or x.dtype == _d.F32:
        return _d.as_c(x, x.dtype)
    return _d.as_c(x, dt)


class Convolution(_ref.Convolution):
    """``W.reshape(FN, -1) @ im2col(x).T + b`` as NCHW; ``backward`` sets ``dW``, ``db``.

    ``backward_params`` sets ``dW`` and ``db`` without ``dx`` (a net's first layer: no
    fold, one product saved)."""

    _colT = None  # the unfolded x, (C*FH*FW, N*OH*OW), when the kernels ran
    _col = None  # the reference's col, when its code ran

    @property
    def col(self):
        """``im2col(x)`` in ``x``'s float dtype, as the reference's: a transposed view of the layer's
        work array, which the next forward rewrites (the reference makes a new one each call)."""
        if self._colT is None:
            return self._col
        col = self._colT.T
        want = _ref._float_dtype(self.x)
        return col if col.dtype == want else col.astype(want)

    @col.setter
    def col(self, value):
        self._col, self._colT = value, None

    def forward(self, x):
        x, OH, OW = self._check_forward(x)
        W, b = self.W, self.b
        dt = _d.kernel_dtype(_ref._float_dtype(x), W, b)
        if dt is None:
            return super().forward(x)
        FN, C, FH, FW = W.shape
        N = x.shape[0]
        colT = _scratch(self, "colT", (C * FH * FW, N * OH * OW), dt)
        _run("unfold", colT.size, N, _images(x, dt), FH, FW, self.stride, self.pad, colT)
        rows = _scratch(self, "rows", (FN, colT.shape[1]), dt)
        np.dot(_d.as_c(W, dt).reshape(FN, -1), colT, out=rows)
        out = np.empty((N, FN, OH, OW), dt)
        _run("cn_to_nchw", rows.size, N, rows, _d.as_c(b, dt), out)
        self.x, self.col_W = x, W.reshape(FN, C * FH * FW).T
        self._colT, self._col = colT, None
        return out

    def backward(self, dout):
        return self._backward(dout, True)

    def backward_params(self, dout):
        """Set ``dW`` and ``db`` as :meth:`backward` does, without ``dx``."""
        self._backward(dout, False)

    def _backward(self, dout, need_dx):
        dout = self._check_backward(dout)
        colT = self._colT
        if colT is None or dout.dtype != colT.dtype:
            return super().backward(dout)  # the reference's code ran, or another dtype: its promotions
        dt = colT.dtype
        FN, C, FH, FW = self.W.shape
        drows = _scratch(self, "rows", (FN, colT.shape[1]), dt)
        db = np.empty(FN, dt)
        _K.nchw_to_cn(_d.as_c(dout, dt), drows, db)
        self.db = db
        self.dW = np.dot(drows, colT.T).reshape(FN, C, FH, FW)
        if not need_dx:
            return None
        dcolT = _scratch(self, "dcolT", colT.shape, dt)
        np.dot(_d.as_c(self.W, dt).reshape(FN, -1).T, drows, out=dcolT)
        dx = np.empty(self.x.shape, dt)
        _run("fold", dcolT.size, dx.shape[0], dcolT, FH, FW, self.stride, self.pad, dx)
        return dx


class Pooling(_ref.Pooling):
    """Max pooling in one pass (the max and its ``arg_max`` together); backward routes ``dout``
    to each window's ``arg_max``."""

    _kernel = False  # whether the last forward ran the kernel (its arg_max is then C-contiguous intp)

    def forward(self, x):
        x, OH, OW = self._check_forward(x)
        dt = _d.own_dtype(x)
        self._kernel = dt is not None
        if dt is None:
            return super().forward(x)
        N, C, _, _ = x.shape
        out = np.empty((N, C, OH, OW), dt)
        arg_max = np.empty(out.size, _INTP)
        _run(
            "pool_forward",
            x.size,
            N,
            _d.as_c(x, dt),
            self.pool_h,
            self.pool_w,
            self.stride,
            self.pad,
            out,
            arg_max,
        )
        self.x, self.arg_max = x, arg_max
        return out

    def backward(self, dout):
        dout = self._check_backward(dout)
        dt = _d.own_dtype(dout)
        arg_max = self.arg_max
        if dt is None or not self._kernel or arg_max.dtype != _INTP or arg_max.shape != (dout.size,):
            return super().backward(dout)
        dx = np.empty(self.x.shape, dt)
        _run(
            "pool_backward",
            dx.size,
            dx.shape[0],
            _d.as_c(dout, dt),
            _d.as_c(arg_max, _INTP),
            self.pool_h,
            self.pool_w,
            self.stride,
            self.pad,
            dx,
        )
        return dx
