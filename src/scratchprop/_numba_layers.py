"""The Numba backend's layers (re-exported by :mod:`scratchprop.numba`, which documents them).

Kernels (``scratchprop.kernels``) take C-contiguous float32/float64 arrays;
the wrappers here promote like NumPy (``np.result_type``: float32 images
with float64 weights compute in float64, uint8 in the weights' dtype) and
convert only when the dtype or layout requires it, into buffers the layer
reuses. Layers keep references to ``W``/``b`` and read them at every call,
so in-place SGD updates and in-place numerical perturbation are seen exactly
as with NumPy. Dtypes the kernels do not cover (float16, integer ``dout``,
NumPy-scalar ``dout``) run the reference's NumPy code. Threads: see
:mod:`scratchprop.threads` (products in NumPy's BLAS pool, the rest here).
"""

import contextlib

import numpy as np

from . import _dispatch as _d
from . import _validate as check
from . import numpy as _ref
from . import threads as _threads  # the threading model, before any kernel
from .kernels import affine as _K_affine
from .kernels import gemm as _K_gemm
from .kernels import pair as _K_pair
from .kernels import relu as _K_relu
from .kernels import softmax_loss as _K_sl

__all__ = ["Affine", "Relu", "SoftmaxWithLoss", "softmax", "cross_entropy_error", "numerical_gradient"]

_F32, _F64 = _d.F32, _d.F64
_INTP = np.dtype(np.intp)
_ND = np.ndarray
_C = 1  # NPY_ARRAY_C_CONTIGUOUS, a bit of ndarray.flags.num
_CW = _d.C_WRITEABLE
_BOOL = np.dtype(np.bool_)
_c = _d.as_c


class Affine:
    """``out = x @ W + b``: ``x (N, D)`` (or ``(N, ...)``, or ``(D,)``), ``W (D, M)``, ``b (M,)``.

    Keeps references to ``W`` and ``b`` (never copies them), so in-place
    updates of the caller's arrays are seen by the next call. An input of
    another dtype (float32 images with float64 weights) is converted once per
    ``forward`` into a buffer the layer reuses, and ``backward`` uses that
    copy of ``x`` (the reference reads ``x`` again: the two differ only if
    ``x`` is modified in place between the two calls).
    """

    def __init__(self, W, b):
        check.affine_params("Affine", W, b)
        self.W = W
        self.b = b
        self.x = None
        self.original_x_shape = None
        self.dW = None
        self.db = None
        self._xk = None  # (x as given, x as the kernels took it)
        self._xbuf = None  # reused for converted inputs
        self._made = ([], [], [])  # out, dx, dW arrays made, reused once nothing else holds them
        self._work = None  # the backward's work array for products on the calling thread

    def forward(self, x):
        """``x (N, ...) -> (N, M)``; a single sample ``(D,) -> (M,)``."""
        W, b = self.W, self.b
        if type(x) is _ND and type(W) is _ND and type(b) is _ND:
            dt = W.dtype
            if x.dtype is dt and b.dtype is dt and (dt is _F64 or dt is _F32) and x.ndim == W.ndim == 2:
                (N, D), M = x.shape, W.shape[1]
                if N and D == W.shape[0] and b.shape == (M,) and x.flags.num & W.flags.num & b.flags.num & _C:
                    # the common case (what the general path below does for it, with fewer tests)
                    self.original_x_shape, self.x, self._xk = x.shape, x, (x, x)
                    out = _d.spare(self._made[0], (N, M), dt)
                    self._forward(x, W, b, out)
                    return out
        check.affine_params("Affine", W, b)
        x2, x = check.affine_input("Affine", x, W)
        self.original_x_shape = x.shape
        self.x = x2
        self._xk = None
        N, M = x2.shape[0], W.shape[1]
        dt = _forward_dtype(x2, W, b)
        if dt is None:
            out = np.dot(x2, W) + b
        else:
            xk = _d.converted(x2, dt, self._xbuf)
            if xk is not x2:
                self._xbuf = xk
            self._xk = (x2, xk)
            out = _d.spare(self._made[0], (N, M), dt)
            with _blas_for(x.ndim):
                self._forward(xk, _c(W, dt), _c(b, dt), out)
        return out.reshape(M) if x.ndim == 1 else out

    def _forward(self, xk, W, b, out):
        N, M = out.shape
        D = xk.shape[1]
        if _on_our_threads(N * D * M):
            C = min(N, _threads.get_num_threads())  # one per thread: no spinning pool in a hold
            _threads.run_chunks(_K_affine.forward_rows, C, (C, xk, W, b, out), 1, 0)
            return
        mode = product_mode(N, D, M, out.dtype)
        if mode == _HERE:
            _K_affine.forward_here(xk, W, b, out)
        elif mode == _PAIR or mode == _PAIR_FORWARD:
            part = self._work = _d.grown(self._work, N * M, out.dtype)  # a split product's second sum
            fn = share_for((mode,), out.dtype)
            _K_affine.forward_pair(xk, W, b, out, mode, fn, part[: N * M].reshape(N, M))
        else:
            _K_affine.forward(xk, W, b, out)

    def backward(self, dout):
        """``dout (N, M) -> dx`` in the input's original shape; sets ``dW (D, M)``, ``db (M,)``."""
        dx = self._backward_common(dout, True)
        if dx is not None:
            return dx
        return self._backward(dout, True).reshape(self.original_x_shape)

    def backward_params(self, dout):
        """Set ``dW`` and ``db`` as :meth:`backward` does, without ``dx``: what a net calls on its
        first layer, whose input gradient nothing reads (one product of three saved)."""
        if self._backward_common(dout, False) is None:
            self._backward(dout, False)

    def _backward_common(self, dout, need_dx):
        """The common case of :meth:`_backward` (a 2-D forward, ``dout``, ``x`` and ``W`` C arrays
        of one float dtype) with fewer tests; ``None`` when it is not that case."""
        x2, W = self.x, self.W
        if type(dout) is not _ND or type(x2) is not _ND or type(W) is not _ND:
            return None
        dt = W.dtype
        if dout.dtype is not dt or x2.dtype is not dt or not (dt is _F64 or dt is _F32):
            return None
        (N, D), M = x2.shape, W.shape[1]
        if (
            len(self.original_x_shape) != 2
            or dout.shape != (N, M)
            or W.shape[0] != D
            or not dout.flags.num & x2.flags.num & W.flags.num & _C
        ):
            return None
        return self._backward_kernels(dout, x2, W, need_dx, dt)

    def _backward(self, dout, need_dx):
        check.forward_done("Affine", self.x)
        with _blas_for(len(self.original_x_shape)):
            return self._backward_products(dout, need_dx)

    def _backward_products(self, dout, need_dx):
        x2, W = self.x, self.W
        out_shape = (W.shape[1],) if len(self.original_x_shape) == 1 else (x2.shape[0], W.shape[1])
        dout = check.dout_like("Affine", dout, out_shape).reshape(x2.shape[0], W.shape[1])
        dt = dout.dtype
        if (dt == _F64 or dt == _F32) and (
            dt == W.dtype == x2.dtype or np.result_type(dout, W) == np.result_type(x2, dout) == dt
        ):
            xk = (
                self._xk[1]
                if self._xk is not None and self._xk[0] is x2 and self._xk[1].dtype == dt
                else _c(x2, dt)
            )
            return self._backward_kernels(_c(dout, dt), xk, _c(W, dt), need_dx, dt)
        self.dW = np.dot(x2.T, dout)
        self.db = np.sum(dout, axis=0)
        return np.dot(dout, W.T) if need_dx else None

    def _backward_kernels(self, dout, xk, W, need_dx, dt):
        """``dx`` (``(0, D)`` without ``need_dx``), with ``dW`` and ``db`` set: the kernels'
        backward on ``dout (N, M)``, ``xk (N, D)``, ``W (D, M)``, C arrays of ``dt``."""
        N, (D, M) = xk.shape[0], W.shape
        dx = _d.spare(self._made[1], (N, D), dt) if need_dx else np.empty((0, D), dt)
        dW = _d.spare(self._made[2], (D, M), dt, self.dW)
        if _on_our_threads(N * D * M):
            C, db = min(N, _threads.get_num_threads()), np.zeros(M, dt)
            args = (C, dout, xk, W, need_dx, dx, dW, db)
            _threads.run_chunks(_K_affine.backward_rows, C, args, 1, 0)
            self.dW, self.db = args[6], db
            return dx
        mode = product_mode(N, D, M, dt)
        if mode == _HERE:
            work = self._work = _d.grown(self._work, _K_affine.work_size(N, D, M), dt)
            dx, self.dW, self.db = _K_affine.backward_here(dout, xk, W, need_dx, dx, dW, work)
        elif mode == _PAIR:
            fn = share_for((mode,), dt)
            dx, self.dW, self.db = _K_affine.backward_pair(dout, xk, W, need_dx, dx, dW, fn)
        else:
            dx, self.dW, self.db = _K_affine.backward(dout, xk, W, need_dx, dx, dW)
        return dx


def _forward_dtype(x2, W, b):
    """The kernels' dtype for ``x2 @ W + b`` (NumPy's: the product in ``result_type(x, W)``, which
    the bias may widen), or ``None`` when the kernels do not cover it."""
    dt = W.dtype
    if (dt is _F64 or dt is _F32) and x2.dtype is dt and b.dtype is dt:
        return dt  # the common case, without NumPy's promotion rules (~0.5 us a call)
    dt = np.result_type(x2, W)
    return dt if (dt == _F64 or dt == _F32) and np.result_type(dt, b) == dt else None


_NO_HOLD = contextlib.nullcontext()


def _blas_for(ndim):
    """The BLAS pool for an Affine call on an ``ndim``-D input: held at one thread for the call
    (rule 4 of :mod:`scratchprop.threads`) when fed images (``ndim >= 4``: a convnet's dense layer
    in the user's own class) outside a net's whole-step hold, so its products leave no OpenBLAS
    worker spinning beside the next convolution's threads; else as it is."""
    if ndim >= 4 and not _threads.blas_held():
        return _threads.one_thread_blas()
    return _NO_HOLD


def _on_our_threads(macs):
    """Whether a product of ``macs`` multiply-adds runs across our threads: inside a hold of NumPy's
    BLAS (a convnet's step, or an Affine fed images), when it is long enough."""
    return _threads.blas_held() and macs >= _threads.DENSE_MIN_MACS


def products_here(N, D, M, dt):
    """Whether the products of a ``(N, D) @ (D, M)`` layer run on the calling thread (rule 1 of
    :mod:`scratchprop.threads`; ``kernels/gemm.py``, which needs AVX2 and FMA). A batch of fewer
    rows than the kernel's block keeps BLAS (``gemv`` for one): a block of one row is bound by its
    multiply-adds' latency, not their rate. Also the fused ``TwoLayerNet``'s choice (its first
    layer's sizes)."""
    return (
        N >= _K_gemm.ROWS
        and _K_gemm.FAST
        and not _threads.blas_held()  # a convnet's step: one BLAS thread already, nothing to move
        and not _threads.blas_pays(N * D * M, dt.itemsize)
    )


_BLAS, _HERE, _PAIR, _PAIR_FORWARD = _K_pair.BLAS, _K_pair.HERE, _K_pair.PAIR, _K_pair.PAIR_FORWARD


def product_mode(N, D, M, dt):
    """Where the products of a ``(N, D) @ (D, M)`` layer of ``dt`` run (rule 1 of
    :mod:`scratchprop.threads`): on this thread (``HERE``: :func:`products_here`); else, when
    NumPy's pool can take a share of our kernel (``kernels/pair.py``: two blocks of rows or more,
    no hold), on this thread and the pool's worker, ``dW`` too while ``x`` fits
    :data:`~scratchprop.threads.PAIR_MAX_BYTES` (``PAIR``), else in NumPy's BLAS
    (``PAIR_FORWARD``); else all in NumPy's BLAS (``BLAS``)."""
    if products_here(N, D, M, dt):
        return _HERE
    if _K_pair.AVAILABLE and N >= 2 * _K_gemm.ROWS and not _threads.blas_held():
        return _PAIR if N * D * dt.itemsize <= _threads.PAIR_MAX_BYTES else _PAIR_FORWARD
    return _BLAS


def share_for(modes, dt):
    """The paired products' share (``kernels/pair.py``: a kernel's ``fn``) when any of ``modes``
    pairs, else 0."""
    return _K_pair.share_address(dt) if any(m == _PAIR or m == _PAIR_FORWARD for m in modes) else 0


class Relu:
    """``out = max(x, 0)``; ``mask`` is ``x <= 0``. Never modifies its inputs.

    Arrays under half :data:`scratchprop._dispatch.KERNEL_MIN_ELEMENTS` elements take NumPy
    code (a kernel call costs more than those few element operations; Relu's kernel, which
    saves two passes of NumPy's, pays from about half the threshold: ``bench/THREADS.md``):
    the reference's, except that a float forward is one ``np.maximum(x, 0)`` (a ``-0.0`` input
    may come out as ``-0.0``). After a fused :func:`net_predict` / :func:`net_gradient` /
    :func:`net_train_step`, ``mask`` is computed from the stored output on first access
    (``out <= 0``).
    """

    _pending = None  # a Conv + Relu + Pooling forward's: makes the output when first read

    def __init__(self):
        self._mask = None
        self._out = None

    @property
    def mask(self):
        if self._mask is None and self._out is None and self._pending is not None:
            self._out = self._pending()
        if self._mask is None and self._out is not None:
            self._mask = self._out <= 0
        return self._mask

    @mask.setter
    def mask(self, value):
        self._mask = value

    def forward(self, x):
        """``x (...) -> (...)``."""
        if type(x) is _ND and 2 * x.size >= _d.KERNEL_MIN_ELEMENTS:
            dt = x.dtype
            if (dt is _F64 or dt is _F32) and x.flags.num & _CW == _CW:  # the common case, directly
                out, self._mask = np.empty(x.shape, dt), np.empty(x.shape, _BOOL)
                _K_relu.forward(x.reshape(-1), out.reshape(-1), self._mask.reshape(-1))
                return out
        x = check.as_numeric("Relu", "x", x)
        if 2 * x.size >= _d.KERNEL_MIN_ELEMENTS:
            done = _d.elementwise(_K_relu.forward, _d.own_dtype(x), x, outs=(None, _BOOL), min_elements=0)
            if done is not None:
                out, self._mask = done
                return out
        self._mask = mask = x <= 0
        if x.dtype.kind == "f":  # one ufunc instead of copy + boolean assignment (faster when small)
            # NaN propagates, as in the reference; a 0-d or byte-swapped x gets an array like it
            # (the reference's copy keeps both), others the plain ufunc
            if x.ndim and x.dtype.isnative:
                return np.maximum(x, 0.0)
            return np.maximum(x, 0.0, out=np.empty_like(x))
        out = x.copy()
        out[mask] = 0
        return out

    def backward(self, dout):
        """``dout`` of ``x``'s shape -> ``dx``, zero where ``x <= 0``."""
        mask = self._mask
        if mask is None:
            mask = self.mask  # computed from a fused step's output, or still None
        check.forward_done("Relu", mask)
        bool_mask = type(mask) is _ND and mask.dtype is _BOOL
        if bool_mask and type(dout) is _ND and 2 * dout.size >= _d.KERNEL_MIN_ELEMENTS:
            dt = dout.dtype
            if (
                (dt is _F64 or dt is _F32)
                and dout.shape == mask.shape
                and dout.flags.num & mask.flags.num & _CW == _CW
            ):
                dx = np.empty(dout.shape, dt)  # the common case, directly
                _K_relu.backward(dout.reshape(-1), mask.reshape(-1), dx.reshape(-1))
                return dx
        dout = check.dout_like("Relu", dout, mask.shape)
        if bool_mask and 2 * dout.size >= _d.KERNEL_MIN_ELEMENTS:
            done = _d.elementwise(_K_relu.backward, _d.own_dtype(dout), dout, extra=(mask,), min_elements=0)
            if done is not None:
                return done[0]
        dx = dout.copy()
        if bool_mask:
            np.putmask(dx, mask, 0)  # dx[mask] = 0 for a same-shape mask, a little faster
        else:
            dx[mask] = 0
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
        if type(x) is _ND and type(t) is _ND and x.ndim == 2 and x.flags.num & _C:
            # the common case (x a C float array, t its labels (N,) or rows (N, C)) in one kernel call
            dt, (N, C) = x.dtype, x.shape
            if (dt is _F64 or dt is _F32) and N and C:
                if t.dtype is _INTP and t.shape == (N,) and t.flags.num & _CW == _CW:
                    labels, T_ref, lab, T = t, None, t, check.NO_T[dt]
                elif t.dtype is dt and t.shape == (N, C) and t.flags.num & _CW == _CW:
                    labels, T_ref, lab, T = None, t, check.NO_LABELS, t
                else:
                    lab = None
                if lab is not None:
                    y, loss, suspect = _K_sl.checked_forward(x, lab, T, _d.SUSPECT_SUM[dt])
                    if not suspect:  # else the general path: NumPy's check decides, and raises
                        self._labels, self._T, self.t, self.y = labels, T_ref, t, y
                        self.loss = dt.type(loss)
                        return self.loss
        x2 = check.logits("SoftmaxWithLoss", x)
        x2 = x2 if x2.dtype.kind == "f" else x2.astype(np.float64)
        N, C = x2.shape
        dt = x2.dtype
        if dt == _F64 or dt == _F32:
            labels, T_ref, lab, T = _d.kernel_targets("SoftmaxWithLoss", t, N, C, dt)
            self._labels, self._T, self.t = labels, T_ref, t
            y, loss = _K_sl.forward(_c(x2, dt), lab, T)
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
            dx = _K_sl.backward(_c(y2, dt), lab, T, dt.type(dout), dt.type(N))
            return dx.reshape(self.y.shape)
        return _ref.SoftmaxWithLoss.backward(self, dout)  # same attributes; NumPy-typed dout


def softmax(x):
    """Softmax over the last axis, stable for huge logits: ``x (..., C) -> (..., C)``."""
    x = check.as_numeric("softmax", "x", x)
    if x.ndim == 0 or x.size == 0 or not (x.dtype == _F64 or x.dtype == _F32):
        return _ref.softmax(x)
    y = _K_sl.softmax(_c(x, x.dtype).reshape(-1, x.shape[-1]))
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
    _, _, lab, T = _d.kernel_targets("cross_entropy_error", t, N, C, dt)
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
