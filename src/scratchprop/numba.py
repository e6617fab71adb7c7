"""The Numba backend: a drop-in replacement for :mod:`scratchprop.numpy`.

Same names, signatures, attributes, results (within
:mod:`scratchprop.tolerances`) and errors (the same :mod:`._validate`
checks, run in Python before any kernel). Change only the import::

    from scratchprop.numba import Affine, Relu, SoftmaxWithLoss

Kernels (``scratchprop.kernels``) take C-contiguous float32/float64 arrays;
the wrappers here promote like NumPy (``np.result_type``: float32 images
with float64 weights compute in float64, uint8 in the weights' dtype) and
copy only when the dtype or layout requires it. Layers keep references to
``W``/``b`` and read them at every call, so in-place SGD updates and
in-place numerical perturbation are seen exactly as with NumPy. Dtypes the
kernels do not cover (float16, integer ``dout``, NumPy-scalar ``dout``)
run the reference's NumPy code.

For :class:`scratchprop.TwoLayerNet` (``backend="numba"``) the module also
provides the fused hooks :func:`net_predict`, :func:`net_gradient` and :func:`net_train_step`
(see :mod:`scratchprop._numba_net`).

Threads: the matrix products run in the BLAS's own pool, called from
serial code (MKL when installed, else SciPy's OpenBLAS; see
:mod:`scratchprop.kernels._blas_lib`). ReLU and softmax-with-loss have
``prange`` kernels, used above the sizes in :mod:`scratchprop.kernels.config`.
MKL runs on GNU OpenMP, the same thread pool as Numba's ``omp`` layer;
OpenBLAS has a pool of its own, so with it the ``prange`` kernels are not
used while its workers still spin after one of our threaded products
(:mod:`scratchprop._numba_pools` has that rule).
Small ``Affine`` layers (``AFFINE_ONE_THREAD_BELOW*``) run each product on
one thread instead: the forward on the calling thread, the backward's
``dx`` and ``dW`` at once on two (see :mod:`scratchprop.kernels.affine`).
:func:`set_num_threads` sizes Numba's pool and MKL's; :func:`get_num_threads`
is Numba's. Every result is bit-identical for any thread count.
"""
import numpy as np
from numba import get_num_threads

from . import _validate as check
from . import numpy as _ref
from .kernels import config as _config

_config.prefer_threading_layer()

from .kernels import affine as _K_affine  # noqa: E402  (after the threading-layer choice)
from .kernels import relu as _K_relu  # noqa: E402
from .kernels import softmax_loss as _K_sl  # noqa: E402
from .kernels import _blas_lib  # noqa: E402
from . import _numba_pools as _pools  # noqa: E402
from ._numba_pools import set_num_threads  # noqa: E402

__all__ = ["Affine", "Relu", "SoftmaxWithLoss", "softmax", "cross_entropy_error",
           "numerical_gradient", "set_num_threads", "get_num_threads",
           "net_predict", "net_gradient", "net_train_step", "net_numerical_gradient"]

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)
#: Elementwise layers (``Relu``) below this many elements run the reference's
#: NumPy code: measured faster than a kernel call up to ~300-500 elements.
NUMPY_BELOW = 512


def _c(a, dt):
    """``a`` as a C-contiguous array of ``dt``; no copy when it already is one."""
    if a.dtype == dt and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=dt)


def _plain(a, dt):
    return a.dtype == dt and a.flags.c_contiguous


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
        self._work = None  # dW scratch for BLAS (see kernels.affine.backward)

    def forward(self, x):
        """``x (N, ...) -> (N, M)``; a single sample ``(D,) -> (M,)``."""
        W, b = self.W, self.b
        check.affine_params("Affine", W, b)
        x2, x = check.affine_input("Affine", x, W)
        self.original_x_shape = x.shape
        self.x = x2
        dt = W.dtype
        N, (D, M) = x2.shape[0], W.shape
        one = N * D * M < _pools.one_thread_below() and _blas_lib.THREADS_LOCAL
        threaded = N * D * M >= _config.BLAS_SERIAL_BELOW and not (one and N > 1)
        if (dt == _F64 or dt == _F32) and _plain(x2, dt) and _plain(W, dt) and _plain(b, dt):
            out = _K_affine.forward(x2, W, b, np.empty((N, M), dt), one)
            if threaded:
                _pools.used_blas()
        else:
            # NumPy: the product in result_type(x, W), then the bias may widen it
            dt = np.result_type(x2, W)
            if (dt == _F64 or dt == _F32) and np.result_type(dt, b) == dt:
                out = _K_affine.forward(_c(x2, dt), _c(W, dt), _c(b, dt), np.empty((N, M), dt), one)
                if threaded:
                    _pools.used_blas()
            else:
                out = np.dot(x2, W) + b
        return out.reshape(W.shape[1]) if x.ndim == 1 else out

    def backward(self, dout):
        """``dout (N, M) -> dx`` in the input's original shape; sets ``dW (D, M)``, ``db (M,)``."""
        check.forward_done("Affine", self.x)
        x2, W = self.x, self.W
        out_shape = (W.shape[1],) if len(self.original_x_shape) == 1 else (x2.shape[0], W.shape[1])
        dout = check.dout_like("Affine", dout, out_shape).reshape(x2.shape[0], -1)
        dt = dout.dtype
        if (dt == _F64 or dt == _F32) and (dt == W.dtype == x2.dtype
                                          or np.result_type(dout, W) == np.result_type(x2, dout) == dt):
            args = (_c(dout, dt), _c(x2, dt), _c(W, dt))
            n = dout.size * W.shape[0]
            if x2.shape[0] > 1 and _config.BLAS_SERIAL_BELOW <= n < _pools.one_thread_below() \
                    and _blas_lib.THREADS_LOCAL:
                dx, self.dW, self.db = _pools.on_our_threads(_K_affine.backward_tasks, *args,
                                                       np.empty(x2.shape, dt), np.empty(W.shape, dt))
            else:
                work = self._work
                if work is None or work.shape != W.shape or work.dtype != dt:
                    self._work = work = np.empty(W.shape, dtype=dt)
                dx, self.dW, self.db = _K_affine.backward(*args, True, work, np.empty(x2.shape, dt),
                                                          np.empty(W.shape, dt))
                if n >= _config.BLAS_SERIAL_BELOW:
                    _pools.used_blas()
        else:
            dx = np.dot(dout, W.T)
            self.dW = np.dot(x2.T, dout)
            self.db = np.sum(dout, axis=0)
        return dx.reshape(self.original_x_shape)


class Relu:
    """``out = max(x, 0)``; ``mask`` is ``x <= 0``. Never modifies its inputs.

    Arrays under :data:`NUMPY_BELOW` elements take NumPy code (a kernel call
    costs more than those few element operations): the reference's, except
    that a float forward is one ``np.maximum(x, 0)`` (1.2 us instead of 1.6
    us at 400 elements; a ``-0.0`` input may come out as ``-0.0``).
    After a fused :func:`net_predict` / :func:`net_gradient` / :func:`net_train_step`, ``mask`` is
    computed from the stored output on first access (``out <= 0``).
    """

    def __init__(self):
        self._mask = None
        self._out = None

    @property
    def mask(self):
        if self._mask is None and self._out is not None:
            self._mask = self._out <= 0
        return self._mask

    @mask.setter
    def mask(self, value):
        self._mask = value

    def forward(self, x):
        """``x (...) -> (...)``."""
        x = check.as_numeric("Relu", "x", x)
        if x.size >= NUMPY_BELOW and (x.dtype == _F64 or x.dtype == _F32):
            flat = (x if x.flags.c_contiguous else np.ascontiguousarray(x)).reshape(-1)
            out, mask = np.empty(flat.shape, flat.dtype), np.empty(flat.shape, np.bool_)
            if _pools.parallel(flat.shape[0], _config.RELU_PARALLEL_MIN):
                _K_relu.forward_parallel(flat, out, mask, _config.NCHUNKS)
            else:
                _K_relu.forward(flat, out, mask)
            self._mask = mask.reshape(x.shape)
            return out.reshape(x.shape)
        self._mask = mask = x <= 0
        if x.dtype.kind == "f":  # one ufunc instead of copy + boolean assignment (1.2 vs 1.6 us)
            return np.maximum(x, 0.0)  # NaN propagates, as in the reference; 0.0 is weak: x's dtype
        out = x.copy()
        out[mask] = 0
        return out

    def backward(self, dout):
        """``dout`` of ``x``'s shape -> ``dx``, zero where ``x <= 0``."""
        mask = self._mask
        if mask is None:
            mask = self.mask  # computed from a fused step's output, or still None
        check.forward_done("Relu", mask)
        dout = check.dout_like("Relu", dout, mask.shape)
        bool_mask = type(mask) is np.ndarray and mask.dtype is _BOOL
        if dout.size < NUMPY_BELOW or not bool_mask or not (dout.dtype == _F64 or dout.dtype == _F32):
            dx = dout.copy()
            if bool_mask:
                np.putmask(dx, mask, 0)  # dx[mask] = 0 (same shape): 0.56 instead of 0.63 us at 100
            else:
                dx[mask] = 0
            return dx
        flat = (dout if dout.flags.c_contiguous else np.ascontiguousarray(dout)).reshape(-1)
        m = (mask if mask.flags.c_contiguous else np.ascontiguousarray(mask)).reshape(-1)
        dx = np.empty(flat.shape, flat.dtype)
        if _pools.parallel(flat.shape[0], _config.RELU_PARALLEL_MIN):
            _K_relu.backward_parallel(flat, m, dx, _config.NCHUNKS)
        else:
            _K_relu.backward(flat, m, dx)
        return dx.reshape(mask.shape)


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
        dt = x2.dtype
        if dt == _F64 or dt == _F32:
            labels, T_ref, lab, T = check.kernel_targets("SoftmaxWithLoss", t, N, C, dt)
            if _K_sl.labels_out_of_range(lab, T, C):  # integer labels: their range in one kernel pass
                check.label_error("SoftmaxWithLoss", t, N, C, dt)
            self._labels, self._T, self.t = labels, T_ref, t
            kernel_in = (_c(x2, dt), lab, T)
            if _pools.parallel(N * C, _config.SOFTMAX_PARALLEL_MIN):
                y, loss = _K_sl.forward_parallel(*kernel_in, _config.NCHUNKS)
            else:
                y, loss = _K_sl.forward(*kernel_in)
            self.loss = dt.type(loss)
            self.y = y if x2 is x else y.reshape(np.shape(x))
            return self.loss
        ref = _ref.SoftmaxWithLoss()
        self.loss = ref.forward(x, t)
        self._labels, self._T, self.y, self.t = ref._labels, ref._T, ref.y, t
        return self.loss

    def backward(self, dout=1):
        check.forward_done("SoftmaxWithLoss", self.y)
        y2 = self.y.reshape(-1, self.y.shape[-1])
        N = y2.shape[0]
        dt = y2.dtype
        if (dt == _F64 or dt == _F32) and type(dout) in (int, float, bool):
            lab = check.NO_LABELS if self._labels is None else _c(self._labels, np.intp)
            T = check.NO_T[dt] if self._T is None else _c(self._T, dt)
            args = (_c(y2, dt), lab, T, dt.type(dout), dt.type(N))
            if _pools.parallel(y2.size, _config.SOFTMAX_PARALLEL_MIN):
                dx = _K_sl.backward_parallel(*args, _config.NCHUNKS)
            else:
                dx = _K_sl.backward(*args)
            return dx.reshape(self.y.shape)
        return _ref.SoftmaxWithLoss.backward(self, dout)  # same attributes; NumPy-typed dout


def softmax(x):
    """Softmax over the last axis, stable for huge logits: ``x (..., C) -> (..., C)``."""
    x = check.as_numeric("softmax", "x", x)
    if x.ndim == 0 or x.size == 0 or not (x.dtype == _F64 or x.dtype == _F32):
        return _ref.softmax(x)
    x2 = _c(x, x.dtype).reshape(-1, x.shape[-1])
    if _pools.parallel(x2.size, _config.SOFTMAX_PARALLEL_MIN):
        y = _K_sl.softmax_parallel(x2, _config.NCHUNKS)
    else:
        y = _K_sl.softmax(x2)
    return y.reshape(x.shape)


def cross_entropy_error(y, t):
    """Mean cross-entropy of probabilities ``y (N, C)`` or ``(C,)`` against ``t``.

    ``t`` is labels ``(N,)`` / ``(N, 1)`` or one-hot / probability rows
    ``(N, C)``. As in the book, ``1e-7`` is added inside the log.
    """
    y2 = check.logits("cross_entropy_error", y)
    dt = y2.dtype
    if not (dt == _F64 or dt == _F32):
        return _ref.cross_entropy_error(y, t)
    N, C = y2.shape
    _, _, lab, T = check.kernel_targets("cross_entropy_error", t, N, C, dt)
    if _K_sl.labels_out_of_range(lab, T, C):
        check.label_error("cross_entropy_error", t, N, C, dt)
    return dt.type(_K_sl.cross_entropy(_c(y2, dt), lab, T))


def numerical_gradient(f, x, h=1e-4):
    """Central-difference gradient of ``f`` at ``x``: the reference's loop, unchanged.

    ``f`` is any Python callable, so this loop cannot be compiled: it runs in
    Python, perturbing ``x`` in place and restoring it bit-exactly, and only
    the layers ``f`` calls run compiled. For a whole net use
    ``TwoLayerNet(backend="numba").numerical_gradient(x, t)``, which computes
    the same central differences thousands of times faster
    (:func:`net_numerical_gradient`).
    """
    return _ref.numerical_gradient(f, x, h)


from ._numba_net import net_gradient, net_predict, net_train_step  # noqa: E402
from .numba_numgrad import net_numerical_gradient  # noqa: E402
