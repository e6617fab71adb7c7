"""The NumPy reference for the book's chapter 7: im2col, col2im, Convolution, Pooling.

Re-exported by :mod:`scratchprop.numpy` (and, until their kernels land, by
:mod:`scratchprop.numba`). Layouts, attributes and operation order are the
book's (``common/util.py``, ``common/layers.py``): images are NCHW, filters
``(FN, C, FH, FW)``; ``im2col`` makes one row per output position, ordered
``(n, oh, ow)``, and one column per input value of a window, ordered
``(c, fh, fw)``. A window that does not fit in full is dropped (the output
size is ``(H + 2*pad - FH) // stride + 1``), as the book's ``im2col`` does.

Fixed relative to the book (each has a test):

* ``Pooling`` sizes its output with the padding (the book's ``out_h`` ignores
  ``pad``, so ``pad > 0`` crashes). The padding is the book's zeros, so a
  window that is all negative and reaches into the padding pools to 0.
* ``conv_output_size`` returns an int, and a ValueError when the filter does
  not fit or the windows do not tile the padded input (the book: a float,
  e.g. ``12.5``). The layers still drop such a remainder, as the book's do.
* ``im2col`` / ``col2im`` keep the input's float dtype (float32 stays
  float32; the book always makes float64); integer input becomes float64.
* Shapes, sizes, strides and paddings are checked up front with one-line
  errors naming the function or layer; ``backward`` before ``forward`` is a
  ValueError.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _validate as check

__all__ = ["im2col", "col2im", "conv_output_size", "Convolution", "Pooling"]


# --- checks ---------------------------------------------------------------------------------------


def _int(where, name, value, least):
    """``value`` as a Python int ``>= least`` (bool and non-integers refused)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be an integer, got {type(value).__name__} {value!r}")
    if value < least:
        raise ValueError(f"{where}: {name} must be >= {least}, got {value!r}")
    return int(value)


def _image(where, name, x):
    """``x`` as a numeric 4-D ``(N, C, H, W)`` array."""
    x = check.as_numeric(where, name, x)
    if x.ndim != 4:
        raise ValueError(f"{where}: {name} must be 4-D (N, C, H, W), got {check._desc(x)}")
    return x


def _out_size(where, axis, size, filter_size, stride, pad):
    """How many whole windows fit along one axis: ``(size + 2*pad - filter_size) // stride + 1``."""
    span = size + 2 * pad - filter_size
    if span < 0:
        raise ValueError(
            f"{where}: the window ({axis} {filter_size}) is larger than the padded input "
            f"({axis} {size} + 2*{pad} = {size + 2 * pad})"
        )
    return span // stride + 1


def _out_hw(where, shape, filter_h, filter_w, stride, pad):
    _, _, H, W = shape
    return (
        _out_size(where, "height", H, filter_h, stride, pad),
        _out_size(where, "width", W, filter_w, stride, pad),
    )


def _float_dtype(a):
    """The dtype results take: ``a``'s if floating point, else float64 (what the book always uses)."""
    return a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)


def _conv_params(layer, W, b):
    """``W (FN, C, FH, FW)`` and ``b (FN,)``, both floating-point ndarrays."""
    for name, a in (("W", W), ("b", b)):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            got = check._desc(a) if isinstance(a, np.ndarray) else ""
            raise TypeError(
                f"{layer}: {name} must be a floating-point ndarray, got {type(a).__name__} {got}".rstrip()
            )
    if W.ndim != 4:
        raise ValueError(f"{layer}: W must be 4-D (FN, C, FH, FW), got {check._desc(W)}")
    if min(W.shape[2:]) < 1:
        raise ValueError(f"{layer}: the filter must be at least 1x1, got W {check._desc(W)}")
    if b.shape != (W.shape[0],):
        raise ValueError(
            f"{layer}: b must have shape ({W.shape[0]},) to match W {W.shape}, got {check._desc(b)}"
        )


# --- the book's helpers ---------------------------------------------------------------------------


def conv_output_size(input_size, filter_size, stride=1, pad=0):
    """The output size of a convolution or pooling along one axis: ``(input + 2*pad - filter) / stride + 1``.

    An int. A filter larger than the padded input, or windows that do not
    tile it exactly (``input + 2*pad - filter`` not a multiple of
    ``stride``), is a ValueError.
    """
    where = "conv_output_size"
    input_size = _int(where, "input_size", input_size, 1)
    filter_size = _int(where, "filter_size", filter_size, 1)
    stride = _int(where, "stride", stride, 1)
    pad = _int(where, "pad", pad, 0)
    span = input_size + 2 * pad - filter_size
    if span < 0:
        raise ValueError(
            f"{where}: filter_size {filter_size} is larger than the padded input "
            f"({input_size} + 2*{pad} = {input_size + 2 * pad})"
        )
    if span % stride:
        raise ValueError(
            f"{where}: input_size + 2*pad - filter_size = {span} is not a multiple of stride {stride}; "
            f"the windows do not tile the input ({span % stride} left over)"
        )
    return span // stride + 1


def im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    """Unfold images into one row per filter position: ``(N, C, H, W) -> (N*out_h*out_w, C*filter_h*filter_w)``.

    Rows are ordered ``(n, oh, ow)``, columns ``(c, fh, fw)``; the image is
    zero-padded by ``pad`` on each side of H and W first. Float input keeps
    its dtype; integer input becomes float64.
    """
    where = "im2col"
    x = _image(where, "input_data", input_data)
    filter_h = _int(where, "filter_h", filter_h, 1)
    filter_w = _int(where, "filter_w", filter_w, 1)
    stride = _int(where, "stride", stride, 1)
    pad = _int(where, "pad", pad, 0)
    N, C, _, _ = x.shape
    out_h, out_w = _out_hw(where, x.shape, filter_h, filter_w, stride, pad)

    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
    # every filter_h x filter_w window, at every stride-th position: (N, C, out_h, out_w, fh, fw)
    windows = sliding_window_view(img, (filter_h, filter_w), axis=(2, 3))[:, :, ::stride, ::stride]
    rows = windows.transpose(0, 2, 3, 1, 4, 5)  # (N, out_h, out_w, C, fh, fw)
    return rows.reshape(N * out_h * out_w, C * filter_h * filter_w).astype(_float_dtype(x))


def col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    """Fold rows back into images, the adjoint of :func:`im2col`: ``-> input_shape (N, C, H, W)``.

    Where windows overlap their values add up; the padding is cropped off
    at the end. ``col`` is ``(N*out_h*out_w, C*filter_h*filter_w)``.
    """
    where = "col2im"
    col = check.as_numeric(where, "col", col)
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 4:
        raise ValueError(f"{where}: input_shape must be 4 sizes (N, C, H, W), got {input_shape!r}")
    N, C, H, W = (_int(where, "input_shape", s, 0) for s in shape)
    filter_h = _int(where, "filter_h", filter_h, 1)
    filter_w = _int(where, "filter_w", filter_w, 1)
    stride = _int(where, "stride", stride, 1)
    pad = _int(where, "pad", pad, 0)
    out_h, out_w = _out_hw(where, (N, C, H, W), filter_h, filter_w, stride, pad)
    want = (N * out_h * out_w, C * filter_h * filter_w)
    if col.shape != want:
        raise ValueError(
            f"{where}: col must be {want} for input_shape {(N, C, H, W)} and a {filter_h}x{filter_w} "
            f"filter (stride {stride}, pad {pad}), got {check._desc(col)}"
        )
    windows = col.reshape(N, out_h, out_w, C, filter_h, filter_w)

    img = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=_float_dtype(col))
    # add each filter offset's values at the input positions it read (stride apart)
    for i in range(filter_h):
        for j in range(filter_w):
            rows = slice(i, i + stride * (out_h - 1) + 1, stride)
            cols = slice(j, j + stride * (out_w - 1) + 1, stride)
            img[:, :, rows, cols] += windows[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return img[:, :, pad : pad + H, pad : pad + W]


# --- layers ---------------------------------------------------------------------------------------


class Convolution:
    """2-D convolution (cross-correlation, as the book) of ``x (N, C, H, W)`` with ``W (FN, C, FH, FW)``.

    ``forward`` returns ``(N, FN, out_h, out_w)``: ``im2col(x) @ W.reshape(FN, -1).T + b``.
    Keeps references to ``W`` and ``b`` (never copies them); keeps ``x``,
    ``col`` (``im2col(x)``) and ``col_W`` for ``backward``, which sets
    ``dW`` (``W``'s shape) and ``db`` ``(FN,)`` and returns ``dx`` of ``x``'s shape.
    """

    def __init__(self, W, b, stride=1, pad=0):
        _conv_params("Convolution", W, b)
        self.W = W
        self.b = b
        self.stride = _int("Convolution", "stride", stride, 1)
        self.pad = _int("Convolution", "pad", pad, 0)
        self.x = None
        self.col = None
        self.col_W = None
        self.dW = None
        self.db = None

    def _out_shape(self):
        out_h, out_w = _out_hw("Convolution", self.x.shape, *self.W.shape[2:], self.stride, self.pad)
        return (self.x.shape[0], self.W.shape[0], out_h, out_w)

    def _check_forward(self, x):
        """``x`` as a checked ndarray, and the output's height and width."""
        layer = "Convolution"
        _conv_params(layer, self.W, self.b)
        x = _image(layer, "x", x)
        C = self.W.shape[1]
        if x.shape[1] != C:
            raise ValueError(
                f"{layer}: x has {x.shape[1]} channels but W {self.W.shape} expects {C}; got x {check._desc(x)}"
            )
        return (x, *_out_hw(layer, x.shape, *self.W.shape[2:], self.stride, self.pad))

    def _check_backward(self, dout):
        check.forward_done("Convolution", self.x)
        return check.dout_like("Convolution", dout, self._out_shape())

    def forward(self, x):
        """``x (N, C, H, W) -> (N, FN, out_h, out_w)``."""
        x, out_h, out_w = self._check_forward(x)
        FN, C, FH, FW = self.W.shape

        col = im2col(x, FH, FW, self.stride, self.pad)  # (N*out_h*out_w, C*FH*FW)
        col_W = self.W.reshape(FN, C * FH * FW).T  # (C*FH*FW, FN): one column per filter
        out = np.dot(col, col_W) + self.b  # (N*out_h*out_w, FN)

        self.x = x
        self.col = col
        self.col_W = col_W
        # rows are (n, oh, ow): to NCHW (a transposed view, as in the book)
        return out.reshape(x.shape[0], out_h, out_w, FN).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """``dout (N, FN, out_h, out_w) -> dx (N, C, H, W)``; sets ``dW``, ``db``."""
        dout = self._check_backward(dout)
        FN, C, FH, FW = self.W.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN)  # rows (n, oh, ow), like col

        self.db = np.sum(dout, axis=0)
        self.dW = np.dot(self.col.T, dout).T.reshape(FN, C, FH, FW)
        dcol = np.dot(dout, self.col_W.T)
        return col2im(dcol, self.x.shape, FH, FW, self.stride, self.pad)


class Pooling:
    """Max pooling over ``pool_h x pool_w`` windows, ``stride`` apart, of each channel of ``x (N, C, H, W)``.

    ``arg_max`` holds, per window (rows ordered ``(n, oh, ow, c)``), the index
    within the window of its first maximum; ``backward`` routes each
    ``dout`` value to that one input. The book's default ``stride`` is 1
    (its nets pass ``stride=2``). ``pad`` pads with zeros, as the book's
    ``im2col`` does, so padding takes part in the maximum.
    """

    def __init__(self, pool_h, pool_w, stride=1, pad=0):
        layer = "Pooling"
        self.pool_h = _int(layer, "pool_h", pool_h, 1)
        self.pool_w = _int(layer, "pool_w", pool_w, 1)
        self.stride = _int(layer, "stride", stride, 1)
        self.pad = _int(layer, "pad", pad, 0)
        self.x = None
        self.arg_max = None

    def _out_shape(self):
        out_h, out_w = _out_hw("Pooling", self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)
        return (*self.x.shape[:2], out_h, out_w)

    def _check_forward(self, x):
        """``x`` as a checked ndarray, and the output's height and width."""
        x = _image("Pooling", "x", x)
        return (x, *_out_hw("Pooling", x.shape, self.pool_h, self.pool_w, self.stride, self.pad))

    def _check_backward(self, dout):
        check.forward_done("Pooling", self.x)
        return check.dout_like("Pooling", dout, self._out_shape())

    def forward(self, x):
        """``x (N, C, H, W) -> (N, C, out_h, out_w)``."""
        x, out_h, out_w = self._check_forward(x)
        N, C, _, _ = x.shape

        # one row per (n, oh, ow, c): the values of one channel's window
        col = im2col(x, self.pool_h, self.pool_w, self.stride, self.pad)
        col = col.reshape(-1, self.pool_h * self.pool_w)
        arg_max = np.argmax(col, axis=1)  # the first maximum, as np.argmax and the book
        out = np.max(col, axis=1)

        self.x = x
        self.arg_max = arg_max
        return out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)

    def backward(self, dout):
        """``dout (N, C, out_h, out_w) -> dx (N, C, H, W)``: each value goes to its window's ``arg_max``."""
        dout = self._check_backward(dout)
        N, C, out_h, out_w = dout.shape
        dout = dout.transpose(0, 2, 3, 1).reshape(-1)  # (n, oh, ow, c), like arg_max

        pool_size = self.pool_h * self.pool_w
        dmax = np.zeros((dout.size, pool_size), dtype=_float_dtype(dout))
        dmax[np.arange(dout.size), self.arg_max] = dout
        dcol = dmax.reshape(N * out_h * out_w, C * pool_size)
        return col2im(dcol, self.x.shape, self.pool_h, self.pool_w, self.stride, self.pad)
