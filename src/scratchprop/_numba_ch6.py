"""The Numba backend's chapter-6 layers: Sigmoid, Dropout, BatchNormalization.

Each subclasses its reference class (:mod:`scratchprop._numpy_ch6`), so the
constructor, the checks, the attributes and every edge case are the
reference's; only the arithmetic moves into kernels, through
:mod:`scratchprop._dispatch`. Arrays too small for a kernel take the
reference's ufuncs with fewer checks and allocations (the same bits), so no
size is slower than the reference; other dtypes, mixed dtypes and every error
run the reference's own code.

Dropout draws its mask exactly as the book does, ``np.random.rand(*x.shape)
> dropout_ratio`` from the global generator, so ``np.random.seed`` gives the
reference's (and the book's) masks: a kernel runs NumPy's MT19937 on the
generator's own state (in place, under its lock), fused with the comparison
and the product, 4-5x faster than ``np.random.rand`` alone
(``kernels/mt19937.py``; the state advances exactly as ``rand`` would).
"""

import numpy as np

from . import _dispatch as _d
from . import _numpy_ch6 as _ref
from ._numba_layers import Relu as _Relu
from .kernels import batchnorm as _K_bn
from .kernels import dropout as _K_do
from .kernels import mt19937 as _K_mt
from .kernels import sigmoid as _K_sig  # the backward; see Sigmoid.forward

__all__ = ["Sigmoid", "Dropout", "BatchNormalization"]

_BOOL = np.dtype(np.bool_)
_EPS = 10e-7  # the book's eps, as the reference writes it
_NO_MASK = np.empty(0, _BOOL)  # a BatchNormalization kernel's "no Relu / Dropout after it"


class Sigmoid(_ref.Sigmoid):
    """``out = 1 / (1 + exp(-x))``; backward ``dout * (1 - out) * out``. Same bits as the reference;
    at every size a float array takes fewer passes and allocations than the reference's code."""

    def forward(self, x):
        if type(x) is not np.ndarray or not x.ndim or _d.own_dtype(x) is None:
            return super().forward(x)  # also every error (and 0-d: NumPy gives a scalar)
        # NumPy's exp is vectorised and Numba's is not (no SVML here), so the forward is the
        # reference's four ufuncs, in place in one new array instead of four (the same bits)
        out = np.negative(x)
        with np.errstate(over="ignore"):
            np.exp(out, out=out)
        out += 1
        self.out = np.divide(1, out, out=out)
        return out

    def backward(self, dout):
        out = self.out
        if (
            type(dout) is not np.ndarray
            or out is None
            or dout.shape != out.shape
            or dout.dtype != out.dtype
            or _d.own_dtype(out) is None
        ):
            return super().backward(dout)  # also every error
        if dout.size >= _d.KERNEL_MIN_ELEMENTS:
            return _d.elementwise(_K_sig.backward, out.dtype, dout, out, min_elements=0)[0]
        dx = np.subtract(1.0, out)  # the reference's three ufuncs, in one new array
        np.multiply(dout, dx, out=dx)
        dx *= out
        return dx


class Dropout(_ref.Dropout):
    """Dropout as the book has it, not inverted; the book's masks under ``np.random.seed``.
    Test mode is the reference's one ufunc (a kernel does not beat it)."""

    def forward(self, x, train_flg=True):
        if not (train_flg and type(x) is np.ndarray and x.ndim and x.dtype.kind == "f"):
            return super().forward(x, train_flg)  # also every error
        self._last_train = True
        # the kernel also saves rand's ~4 ns a draw: it pays from a quarter of the usual size
        # (tested inline, not through worth_a_kernel: at 100 elements each call shows)
        dt = x.dtype
        if x.size * 4 < _d.KERNEL_MIN_ELEMENTS or (dt != _d.F64 and dt != _d.F32):
            self.mask = mask = np.random.rand(*x.shape) > self.dropout_ratio  # the reference's code
            return x * mask
        try:
            lock, state = _K_mt.global_state()
        except TypeError:  # the global generator is not the book's MT19937: draw through it
            r = np.random.rand(*x.shape)
            done = _d.elementwise(
                _K_do.forward_train, dt, x, extra=(r, self.dropout_ratio), outs=(None, _BOOL), min_elements=0
            )
        else:
            # np.random.rand's very draws, taken from its generator's state in place, fused
            # with the comparison and the product (no array of draws)
            with lock:
                done = _d.elementwise(
                    _K_mt.dropout_mask,
                    dt,
                    x,
                    extra=(self.dropout_ratio,),
                    outs=(None, _BOOL),
                    state=state,
                    min_elements=0,
                )
        out, self.mask = done
        return out

    def backward(self, dout):
        mask = self.mask
        if not (
            type(dout) is np.ndarray
            and self._last_train
            and mask is not None
            and dout.shape == mask.shape
            and dout.dtype.kind == "f"
        ):
            return super().backward(dout)  # also every error
        # NumPy's product is one pass too: the kernel saves ~0.25-0.5 ns an element (float32-64),
        # so it pays from four times the usual size (tested inline: at 100 elements each call shows)
        if dout.size >= 4 * _d.KERNEL_MIN_ELEMENTS and mask.dtype == _BOOL:
            done = _d.elementwise(_K_do.backward, _d.own_dtype(dout), dout, extra=(mask,), min_elements=0)
            if done is not None:
                return done[0]
        return dout * mask  # the reference's product


class BatchNormalization(_ref.BatchNormalization):
    """Batch normalization as the book has it; mean, variance and normalisation in three fused
    passes, the backward's reductions in three more.

    In a net, the Relu (and Dropout) after it can run inside those passes
    (:meth:`forward_fused` / :meth:`backward_fused`, through ``LayerNet``): in training, from
    :data:`scratchprop._dispatch.KERNEL_MIN_ELEMENTS` values, where the layers' own kernels
    run. The layers are left as their own forwards leave them (the Relu's and the Dropout's
    ``mask``, the same draws from ``np.random``) and the results are their bits.
    """

    _fuse = ()  # the layers forward_fused asks _forward to take in; None once it has

    def fuses_with(self, following):
        """How many of ``following`` (a net's next layers) :meth:`forward_fused` takes: 2 for this
        backend's Relu then Dropout, 1 for the Relu alone, else 0."""
        if not following or type(following[0]) is not _Relu:
            return 0
        return 2 if len(following) > 1 and type(following[1]) is Dropout else 1

    def forward_fused(self, x, layers, train_flg=True):
        """The forwards of this layer and ``layers`` (see :meth:`fuses_with`), in turn."""
        self._fuse = layers if train_flg else ()
        try:
            out = self.forward(x, train_flg)
        finally:
            fused, self._fuse = self._fuse is None, ()
        if not fused:  # this call took the layers' own code
            for layer in layers:
                out = layer.forward(out, train_flg) if type(layer) is Dropout else layer.forward(out)
        return out

    def backward_fused(self, dout, layers, need_dx=True):
        """The backwards of ``layers`` and this layer, in turn; one kernel pass where the layers'
        state is what :meth:`forward_fused` leaves (read as it is now: a mask set since counts)."""
        relu, drop = layers[0], (layers[1] if len(layers) > 1 else None)
        rmask = relu.mask
        keep = drop.mask if drop is not None else None
        dt = self.xc.dtype if self._last_train and self.xc is not None else None
        if (
            type(dout) is np.ndarray
            and dt is not None
            and dout.dtype == dt
            and self.gamma.dtype == dt
            and dout.shape == self.input_shape
            and _is_mask(rmask, dout.shape)
            and (drop is None or (drop._last_train and _is_mask(keep, dout.shape)))
        ):
            k = _NO_MASK if drop is None else keep.reshape(-1)
            d = _K_bn.act_backward(
                _d.as_c(dout, dt).reshape(-1), k, rmask.reshape(-1), np.empty(dout.size, dt)
            )
            return self._backward(d.reshape(self.xc.shape)).reshape(self.input_shape)
        for layer in reversed(layers):  # also every error
            dout = layer.backward(dout)
        return self.backward(dout)

    def _forward(self, x, train_flg):
        # the reference takes the statistics in x's dtype: the kernels need gamma and beta in it too
        dt = _d.own_dtype(x)
        rm, rv = self.running_mean, self.running_var
        if (
            dt is None
            or self.gamma.dtype != dt
            or self.beta.dtype != dt
            or not _fits(rm, dt)
            or not _fits(rv, dt)
        ):
            return super()._forward(x, train_flg)
        N, D = x.shape
        xk, gamma, beta = _d.as_c(x, dt), _d.as_c(self.gamma, dt), _d.as_c(self.beta, dt)
        if not train_flg:
            out = np.empty((N, D), np.result_type(dt, rm, rv))
            return _K_bn.forward_test(
                xk, gamma, beta, _d.as_c(rm, rm.dtype), _d.as_c(rv, rv.dtype), _EPS, out
            )
        out, xc, xn = np.empty((N, D), dt), np.empty((N, D), dt), np.empty((N, D), dt)
        std, mu, var = np.empty(D, dt), np.empty(D, dt), np.empty(D, dt)
        masks = self._act_masks(N * D) if self._fuse and N * D >= _d.KERNEL_MIN_ELEMENTS else None
        _K_bn.forward_train(
            xk, gamma, beta, _EPS, out, xc, xn, std, mu, var, *(masks or (_NO_MASK, _NO_MASK))
        )
        self.batch_size, self.xc, self.xn, self.std = N, xc, xn, std
        m = self.momentum  # rebound, as in the reference
        self.running_mean = _K_bn.running_update(rm, mu, m, np.empty(D, np.result_type(rm, mu)))
        self.running_var = _K_bn.running_update(rv, var, m, np.empty(D, np.result_type(rv, var)))
        return out

    def _act_masks(self, n):
        """``(keep, rmask)`` for :func:`forward_train` to run the Relu and Dropout that
        :meth:`forward_fused` passed in its last pass, the layers left as their forwards leave
        them; ``None`` when the global generator is not the book's MT19937 (their own code draws)."""
        relu, drop = self._fuse[0], (self._fuse[1] if len(self._fuse) > 1 else None)
        keep = _NO_MASK
        if drop is not None:
            try:
                lock, state = _K_mt.global_state()
            except TypeError:
                return None
            keep, none = np.empty(n, _BOOL), np.empty(0, self.gamma.dtype)
            with lock:  # np.random.rand(*shape) > ratio: the Dropout's very draws
                _K_mt.dropout_mask(state, none, drop.dropout_ratio, none, keep)
            drop.mask, drop._last_train = keep.reshape(self.input_shape), True
        rmask = np.empty(n, _BOOL)  # filled by the kernel
        relu._out, relu._mask, relu._pending = None, rmask.reshape(self.input_shape), None
        self._fuse = None  # done: forward_fused does not run the layers again
        return keep, rmask

    def _backward(self, dout):
        dt = self.xc.dtype
        if dout.dtype != dt or self.gamma.dtype != dt:
            return super()._backward(dout)
        N, D = self.xc.shape
        dx, dgamma, dbeta = np.empty((N, D), dt), np.empty(D, dt), np.empty(D, dt)
        _K_bn.backward(
            _d.as_c(dout, dt), _d.as_c(self.gamma, dt), self.xc, self.xn, self.std, dx, dgamma, dbeta
        )
        self.dgamma, self.dbeta = dgamma, dbeta
        return dx


def _is_mask(m, shape):
    return type(m) is np.ndarray and m.dtype == _BOOL and m.shape == shape


def _fits(running, dt):
    # the kernels take running statistics in the batch's dtype, or float64 beside float32
    return isinstance(running, np.ndarray) and running.ndim == 1 and running.dtype in (dt, _d.F64)
