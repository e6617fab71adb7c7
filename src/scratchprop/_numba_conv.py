"""The Numba backend's Convolution (the book's chapter 7; Pooling is :mod:`._numba_pool`).

It subclasses its reference class (:mod:`scratchprop._numpy_conv`): the
constructor, the checks, the attributes and every edge case are the
reference's. The convolution runs parallel across the batch
(``kernels/conv_batch.py``, :func:`scratchprop.threads.run_chunks`): each
thread unfolds a few of its images at a time into its own buffer, multiplies
them on one BLAS thread while the block is still in its cache, and lays the
result out in NCHW (rule 4 of :mod:`scratchprop.threads` says why). Where it
pays (stride 1, filters in fours, maps wide enough: :func:`_direct`), the
forward, ``dx`` and ``dW`` skip the unfolded matrix instead: each image is
padded once and convolved directly (``kernels/conv_direct.py``). A net
(:class:`scratchprop.layernet.LayerNet`) runs a Convolution and the Relu after
it, or the Relu and a Pooling after it, as one layer (:meth:`Convolution.fuses_with`).

What differs from the reference, none of it in the values: the outputs are
C-contiguous (the reference returns a transposed view); float32 images with
float64 filters are unfolded straight into float64 (the reference unfolds in
float32 and NumPy converts the whole matrix for the product); ``col`` is made
when first read, in the image's dtype, as the reference's. The products sum
in another order than the reference's (long ones in pieces, :func:`_pieces`),
``db`` adds each image's channel in eight running sums, and ``dW`` and ``db``
are summed per chunk of images, then chunk after chunk, so the last bits of ``out``,
``dW``, ``db`` and ``dx`` may differ (:mod:`scratchprop.tolerances`); they
are the same for a given thread count (``numba.get_num_threads()``).
"""

import contextlib
import functools
import threading

import numpy as np

from . import _dispatch as _d
from . import _numpy_conv as _ref
from . import _validate as check
from . import threads as _threads
from ._numba_layers import Relu as _Relu
from ._numba_pool import Pooling
from .kernels import _blas
from .kernels import conv as _K
from .kernels import conv_batch as _KB
from .kernels import conv_direct as _KD

__all__ = ["Convolution", "Pooling"]


#: Bytes of unfolded images per block of a thread: the block is written by the unfold and read by
#: the product right after, so it must still be in that core's cache (a few MiB: L2 plus a share of
#: L3). The whole batch's (tens of MiB for DeepConvNet) went to memory and back, 1.4-3x slower
#: (``bench/CONV.md``).
CHUNK_BYTES = 2 << 20


#: Fewest columns worth a product of their own (``bench/conv_probe.py pieces``): a narrower piece
#: costs more in calls than the packing it saves.
MIN_PIECE = 64

#: The kernels' ``pool`` and ``arg`` for a convolution without a fused pooling.
_NO_POOL, _NO_ARG = (0, 0, 0), np.empty(0, np.uint8)
_NO_OFF = np.empty(0, np.intp)
_U8 = np.dtype(np.uint8)

#: Share of the positions a direct convolution computes (every one of the padded rows, rounded up
#: to its block) that must be real outputs for it to run instead of unfold + product: from 0.8
#: (DeepConvNet's 8x8 maps with AVX-512) it was faster, at 0.68 (7x7 maps, 8-lane blocks) slower
#: for ``dx`` (``bench/CONV.md``, ``bench/direct_conv_probe.py``).
DIRECT_MIN_FILL = 0.75


def _direct(dt, F, FH, FW, Ho, Wo, Cin):
    """``(off, xp_size, full_size)`` for a direct convolution (``kernels/conv_direct.py``, stride 1)
    giving ``F`` maps of ``Ho x Wo`` from ``Cin`` padded ones with ``FH x FW`` filters, or None
    when it does not apply (``F`` not a multiple of its block) or would not pay
    (:data:`DIRECT_MIN_FILL`, or a machine without AVX2 and FMA: ``_KD.FAST``)."""
    if F % _KD.ROWS or not _KD.FAST:
        return None
    Hp, Wp = Ho + FH - 1, Wo + FW - 1
    npos = _KD.positions(F, Ho * Wp, dt.itemsize)
    if Ho * Wo < DIRECT_MIN_FILL * npos:
        return None
    return _offsets(Cin, Hp, Wp, FH, FW), Cin * Hp * Wp + npos + FW, F * npos


@functools.lru_cache(maxsize=64)
def _offsets(C, Hp, Wp, FH, FW):
    """Each filter value's ``(c, kh, kw)`` offset in a padded image (kept: a step asks 17 times;
    the kernels only read it)."""
    off = ((np.arange(C)[:, None, None] * Hp + np.arange(FH)[:, None]) * Wp + np.arange(FW)).reshape(-1)
    return off.astype(np.intp)


def _pieces(FN, K):
    """Columns per piece of the products over ``(FN, K)`` filters, 0 for whole: as many as keep a
    piece within OpenBLAS's small-matrix path (``_blas.SMALL_GEMM_MACS``). ``(forward and dx, dW)``:
    dW's product (A transposed, to that path) is taken there only with at most 1200 outputs
    (``sgemm_small_kernel_permit_skylakex.c``)."""
    piece = _blas.SMALL_GEMM_MACS // (FN * K)
    if piece < MIN_PIECE:
        return 0, 0
    return piece, piece if FN * K <= 1200 else 0


def _plan(N, per_image_bytes):
    """``(C, T, B)``: the batch in the ``C`` chunks :func:`threads.chunks` asks for, taken by ``T``
    threads, each worked through in blocks of at most ``B`` images (at most :data:`CHUNK_BYTES`
    unfolded). The bits depend on ``T`` and the sizes only: every layer of a :func:`chain` has
    the same chunks, and a layer gives the same bits in a chain or on its own."""
    C, T = _threads.chunks(N)
    return C, T, max(1, min(-(-N // C), CHUNK_BYTES // max(1, per_image_bytes)))


def _bufs(layer, sizes, T, dt):
    """Per ``name: n`` of ``sizes``, ``T`` rows of ``n`` elements (one per thread), from :func:`_scratch`."""
    return tuple(_scratch(layer, name, T * n, dt)[: T * n].reshape(T, n) for name, n in sizes.items())


def _in_chunks(kernel, C, args, n_elements, then=None):
    """``kernel(c, w, C, *args)`` for the ``C`` chunks, with NumPy's BLAS held at one thread (rule 4
    of :mod:`scratchprop.threads`): at once when the work pays, else in turn, as also when the
    kernels' BLAS is not NumPy's (its pool cannot be held); then ``then()``. In a :func:`chain`,
    queued instead."""
    queue = _chained()
    if queue and queue[0][1][0] != C:  # another batch's chunks: what is queued runs first
        _run_queue()
        queue = _chained()
    if queue is not None:
        queue.append((kernel, (C, *args), n_elements, then))
        return
    with _threads.one_thread_blas() as held:
        _threads.run_chunks(kernel, C, (C, *args), n_elements if held else 0, _threads.CONV_MIN_ELEMENTS)
    if then is not None:
        then()


_CHAIN = threading.local()  # .queue: the kernels a chain() on this thread has queued, else None


def _chained():
    return getattr(_CHAIN, "queue", None)


@contextlib.contextmanager
def chain():
    """``with chain():`` the convolutions called inside (a net's consecutive Conv layers) queue
    their chunk kernels, and at the end one region runs them: each thread takes a chunk of images
    through every layer in turn. Images are independent and every layer of the chain cuts the
    batch into the same chunks, so a layer's chunk needs only the same chunk of the layer before;
    a region's start and its threads' uneven ends are paid once instead of once a layer
    (``bench/CONV.md``). Inside, a Convolution's output is filled only at the end: a path that
    reads values runs :func:`_unchained`."""
    if _chained() is not None:  # nested: the outer chain runs them
        yield
        return
    _CHAIN.queue = []
    try:
        yield
        _run_queue()
    finally:
        _CHAIN.queue = None


def _run_queue():
    queue, _CHAIN.queue = _CHAIN.queue, []
    if not queue:
        return

    def through(c, w):
        for kernel, args, _, _ in queue:
            kernel(c, w, *args)

    with _threads.one_thread_blas() as held:
        n = sum(job[2] for job in queue) if held else 0
        _threads.run_chunks(through, queue[0][1][0], (), n, _threads.CONV_MIN_ELEMENTS)
    for *_, then in queue:
        if then is not None:
            then()


@contextlib.contextmanager
def _unchained():
    """Inside a :func:`chain`: what it queued runs now, and kernels run at once until the block
    ends (for a path that reads the values of an output queued before it)."""
    if _chained() is None:
        yield
        return
    _run_queue()
    _CHAIN.queue = None
    try:
        yield
    finally:
        _CHAIN.queue = []


def _scratch(layer, name, n, dt):
    """A flat work array of ``n`` elements, reused from call to call while big enough: a fresh
    array of megabytes per call costs its page faults again (more than the pass that fills it)."""
    ws = layer.__dict__.setdefault("_scratch", {})
    a = ws.get(name)
    if a is None or a.size < n or a.dtype != dt:
        a = ws[name] = np.empty(n, dt)
    return a


def _made(layer, name):
    """The layer's ``name`` arrays for :func:`._dispatch.spare` (outputs it reuses once nobody
    holds them: fresh megabytes each step cost their page faults again)."""
    return layer.__dict__.setdefault("_made", {}).setdefault(name, [])


def _images(x, dt):
    """``x`` C-contiguous for a kernel that reads float32 or float64 (``dt`` otherwise)."""
    if x.dtype == _d.F64 or x.dtype == _d.F32:
        return _d.as_c(x, x.dtype)
    return _d.as_c(x, dt)


class Convolution(_ref.Convolution):
    """``W.reshape(FN, -1) @ im2col(x).T + b`` as NCHW; ``backward`` sets ``dW``, ``db``.

    A few images at a time per thread (:func:`_plan`): unfold, product, bias and layout; backward unfolds
    the block again rather than keep the whole batch's ``col`` (memory traffic costs more than
    the unfold), so it reads ``x`` again: an input changed in place between forward and backward
    changes ``dW`` here, not in the reference (which kept ``col``). ``backward_params`` sets ``dW`` and ``db`` without ``dx`` (a net's first layer: no
    fold, one product saved)."""

    _xk = None  # x as the kernels read it, when they ran
    _col = None  # the reference's col, when its code ran
    _relu = _relu_out = None  # the Relu of the last forward_relu and its output, when fused
    _pool = _pool_out = None  # the Pooling of the last forward_relu_pool; (its out, arg, ReLU output)

    @property
    def col(self):
        """``im2col(x)`` in ``x``'s float dtype, as the reference's (made on first access)."""
        if self._xk is None:
            return self._col
        if self._col is None:
            FN, C, FH, FW = self.W.shape
            N, _, H, W_ = self.x.shape
            OH = _ref.conv_output_size(H, FH, self.stride, self.pad)
            OW = _ref.conv_output_size(W_, FW, self.stride, self.pad)
            colT = np.empty((C * FH * FW, N * OH * OW), _ref._float_dtype(self.x))
            _K.unfold(_images(self.x, colT.dtype), FH, FW, self.stride, self.pad, colT)
            self._col = colT.T
        return self._col

    @col.setter
    def col(self, value):
        self._col, self._xk = value, None

    def _shapes(self, x):
        FN, C, FH, FW = self.W.shape
        N, _, H, W_ = x.shape
        OH = _ref.conv_output_size(H, FH, self.stride, self.pad)
        OW = _ref.conv_output_size(W_, FW, self.stride, self.pad)
        return FN, C * FH * FW, FH, FW, OH * OW

    chain = staticmethod(chain)  # a net runs its consecutive Convolutions in one (LayerNet)

    def forward(self, x):
        return self._forward(x, None)

    def fuses_with(self, following):
        """How many of the layers in ``following`` (a net's next ones) :meth:`forward_fused` takes:
        2 for this backend's Relu then a :class:`Pooling` whose windows neither overlap nor pad
        (:meth:`forward_relu_pool`), 1 for the Relu alone (:meth:`forward_relu`), else 0."""
        if not following or type(following[0]) is not _Relu:
            return 0
        return 2 if len(following) > 1 and _poolable(following[1]) else 1

    def forward_fused(self, x, layers, train_flg=False):
        """:meth:`forward_relu` or :meth:`forward_relu_pool` over ``layers`` (see :meth:`fuses_with`;
        none of them takes ``train_flg``)."""
        return self.forward_relu(x, *layers) if len(layers) == 1 else self.forward_relu_pool(x, *layers)

    def backward_fused(self, dout, layers, need_dx=True):
        """The backward of :meth:`forward_fused` over the same ``layers``."""
        if len(layers) == 1:
            return self.backward_relu(dout, *layers, need_dx=need_dx)
        return self.backward_relu_pool(dout, *layers, need_dx=need_dx)

    def forward_relu(self, x, relu):
        """``relu.forward(self.forward(x))`` in one pass over the output (a net's Conv + Relu).

        ``relu`` (this backend's :class:`Relu`) is left as its own forward leaves it: its ``mask`` is
        made from the output when read. Then :meth:`backward_relu` takes the pair's backward."""
        out = self._forward(x, relu)
        if self._relu is None:  # the reference's code ran: the Relu's own forward
            return relu.forward(out)
        relu._out, relu._mask, relu._pending = out, None, None
        return out

    def forward_relu_pool(self, x, relu, pool):
        """``pool.forward(relu.forward(self.forward(x)))``, pooled from each thread's block of the
        convolution's product: its whole output is never written (a net's Conv + Relu + Pooling).

        The three layers are left as their own forwards leave them, but the ReLU's output (the
        Relu's ``mask``, the Pooling's ``x``) is made when first read, from the filters as they were
        (a copy) and ``x`` as it is then. :meth:`backward_relu_pool` takes the three backwards."""
        self._relu = self._relu_out = self._pool = None
        x, OH, OW = self._check_forward(x)
        N, FN = x.shape[0], self.W.shape[0]
        PH, PW, ps = pool.pool_h, pool.pool_w, pool.stride
        POH, POW = _ref._out_hw("Pooling", (N, FN, OH, OW), PH, PW, ps, pool.pad)
        dt = _d.kernel_dtype(_ref._float_dtype(x), self.W, self.b)
        if dt is None or not _poolable(pool):
            with _unchained():
                return pool.forward(self.forward_relu(x, relu))
        out = _d.spare(_made(self, "pooled"), (N, FN, POH, POW), dt)
        arg = _d.spare(_made(self, "arg"), (out.size,), _U8)
        xk, Wm, bk = self._run_forward(x, dt, (out, True, (PH, PW, ps), arg))
        geometry = (*self.W.shape[2:], self.stride, self.pad)
        relu_out = _Deferred(self._relu_output, (xk, Wm.copy(), bk.copy(), (N, FN, OH, OW), geometry))
        relu._out, relu._mask, relu._pending = None, None, relu_out
        pool._x, pool._pending, pool._arg, pool._arg_max = None, relu_out, arg, None
        self._relu, self._pool, self._pool_out = relu, pool, (out, arg, relu_out)
        return out

    def _relu_output(self, xk, Wm, bk, shape, geometry):
        """The Conv + ReLU output of a :meth:`forward_relu_pool` (when read): the same bits.
        ``geometry``: the forward's ``(FH, FW, stride, pad)``."""
        out = np.empty(shape, Wm.dtype)
        self._convolve(xk, Wm, bk, geometry, (out, True, _NO_POOL, _NO_ARG), shape[2] * shape[3])
        return out

    def _forward(self, x, relu):
        self._relu = self._relu_out = self._pool = None
        x, OH, OW = self._check_forward(x)
        dt = _d.kernel_dtype(_ref._float_dtype(x), self.W, self.b)
        if dt is None:
            with _unchained():
                return super().forward(x)
        out = _d.spare(_made(self, "out"), (x.shape[0], self.W.shape[0], OH, OW), dt)
        self._run_forward(x, dt, (out, relu is not None, _NO_POOL, _NO_ARG))
        if relu is not None:
            self._relu, self._relu_out = relu, out
        return out

    def _run_forward(self, x, dt, outs):
        """The forward kernel over the batch's chunks, ``outs`` its arguments between the
        convolution's and the buffers'; records the layer's state. ``(xk, Wm, bk)``: the arrays the kernels read."""
        W, b = self.W, self.b
        FN, K, FH, FW, P = self._shapes(x)
        xk, Wm, bk = _images(x, dt), _d.as_c(W, dt).reshape(FN, K), _d.as_c(b, dt)
        self._convolve(xk, Wm, bk, (FH, FW, self.stride, self.pad), outs, P)
        self.x, self.col_W = x, W.reshape(FN, K).T
        self._xk, self._col = xk, None
        return xk, Wm, bk

    def _convolve(self, xk, Wm, bk, geometry, outs, P):
        """The forward kernel over the batch's chunks: filters ``Wm (FN, K)`` and ``bk`` with ``geometry``
        ``(FH, FW, stride, pad)`` on ``xk``, ``P`` output positions an image; ``outs``: the
        kernel's arguments between those and the buffers."""
        FN, K = Wm.shape
        N, Cin, H, W_ = xk.shape
        FH, FW, stride, pad = geometry
        C, T, B = _plan(N, K * P * Wm.itemsize)
        plan = (
            _direct(Wm.dtype, FN, FH, FW, H + 2 * pad - FH + 1, W_ + 2 * pad - FW + 1, Cin)
            if stride == 1
            else None
        )
        if plan is None:
            cbuf, rbuf = _bufs(self, {"col": K * B * P, "rows": FN * B * P}, T, Wm.dtype)
            direct = (_NO_OFF, cbuf[:, :0], cbuf[:, :0])
        else:
            sizes = {"col": 0, "rows": FN * B * P, "xp": plan[1], "full": plan[2]}
            cbuf, rbuf, xpb, fullb = _bufs(self, sizes, T, Wm.dtype)
            direct = (plan[0], xpb, fullb)
        args = (xk, Wm, bk, *geometry, *outs, cbuf, rbuf, B, _pieces(FN, K)[0], direct)
        _in_chunks(_KB.forward_chunk, C, args, N * K * P)

    def backward(self, dout):
        return self._backward(dout, True, None)

    def backward_params(self, dout):
        """Set ``dW`` and ``db`` as :meth:`backward` does, without ``dx``."""
        self._backward(dout, False, None)

    def backward_relu(self, dout, relu, need_dx=True):
        """``self.backward(relu.backward(dout))`` in one pass (after :meth:`forward_relu`); ``dx``, or
        ``None`` without ``need_dx``. Takes the two backwards in turn when the pair's state is not
        :meth:`forward_relu`'s (another forward ran, or the Relu's ``mask`` was read or set)."""
        fused = (
            self._pool is None and relu is self._relu and relu._out is self._relu_out and relu._mask is None
        )
        if not fused:
            with _unchained():
                dout = relu.backward(dout)
            relu = None
        else:
            dout = check.dout_like("Relu", dout, self._relu_out.shape)
        return self._backward(dout, need_dx, relu)

    def backward_relu_pool(self, dout, relu, pool, need_dx=True):
        """The three backwards of :meth:`forward_relu_pool` in one pass per block; ``dx``, or ``None``
        without ``need_dx``. Takes them in turn when the layers' state is not that forward's
        (another forward ran, or the Relu's ``mask``, the Pooling's ``x`` or ``arg_max`` was read
        or set)."""
        pooled, arg, later = self._pool_out if self._pool is not None else (None, None, None)
        fused = (
            relu is self._relu
            and pool is self._pool
            and relu._pending is later
            and relu._out is None
            and relu._mask is None
            and pool._pending is later
            and pool._x is None
            and pool._arg is arg
            and pool._arg_max is None
        )
        if fused:
            dout = check.dout_like("Pooling", dout, pooled.shape)
            fused = dout.dtype == pooled.dtype
        if not fused:
            with _unchained():
                dout = relu.backward(pool.backward(dout))
                return self.backward(dout) if need_dx else self.backward_params(dout)
        grads = (_d.as_c(dout, dout.dtype), pooled, True, (pool.pool_h, pool.pool_w, pool.stride), arg)
        return self._run_backward(grads, need_dx, pooled.dtype)

    def _backward(self, dout, need_dx, relu):
        dout = self._check_backward(dout)
        xk = self._xk
        dt = None if xk is None else _d.kernel_dtype(_ref._float_dtype(self.x), self.W, self.b)
        if dt is None or dout.dtype != dt:
            with _unchained():
                if relu is not None:
                    dout = relu.backward(dout)
                return super().backward(dout)  # the reference's code ran, or another dtype: its promotions
        dout = _d.as_c(dout, dt)
        after = dout if relu is None else self._relu_out  # the ReLU's output, when fused
        return self._run_backward((dout, after, relu is not None, _NO_POOL, _NO_ARG), need_dx, dt)

    def _run_backward(self, grads, need_dx, dt):
        """The backward kernel over the batch's chunks, ``grads`` its arguments between ``x`` and the filters';
        sets ``dW``, ``db``; ``dx`` or ``None``."""
        xk = self._xk
        FN, K, FH, FW, P = self._shapes(xk)
        N = xk.shape[0]
        Wm = _d.as_c(self.W, dt).reshape(FN, K)
        C, T, B = _plan(N, K * P * dt.itemsize)
        Cin, H, W_ = xk.shape[1:]
        OH, OW = H + 2 * self.pad - FH + 1, W_ + 2 * self.pad - FW + 1
        dxp = dwp = None
        if self.stride == 1:  # dx: the gradient, padded by FH - 1 - pad, against the filters flipped
            if need_dx and FH == FW and self.pad <= FH - 1:
                dxp = _direct(dt, Cin, FH, FW, H, W_, FN)
            if K % _KD.TAPS == 0 and FN % _KD.lanes(dt.itemsize) == 0:
                dwp = _direct(dt, FN, FH, FW, OH, OW, Cin)
        sizes = {
            "col": K * B * P if dwp is None else 0,
            "rows": FN * B * P,
            "dcol": K * B * P if need_dx and dxp is None else 0,
        }
        bufs = _bufs(self, sizes, T, dt)
        none = bufs[2][:, :0]
        direct = [Wm[:0], _NO_OFF, none, none, _NO_OFF, none, none]
        if dxp is not None:
            Wt = np.ascontiguousarray(self.W.astype(dt, copy=False)[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
            direct[:4] = (Wt.reshape(Cin, -1), dxp[0], *_bufs(self, {"dxp": dxp[1], "dfull": dxp[2]}, T, dt))
        if dwp is not None:
            direct[4:] = (dwp[0], *_bufs(self, {"xp": dwp[1], "DT": dwp[2]}, T, dt))
        direct = tuple(direct)
        dWT, db = _bufs(self, {"dWT": K * FN, "db": FN}, C, dt)  # one row per chunk
        dWT = dWT.reshape(C, K, FN)
        dx = (
            _d.spare(_made(self, "dx"), self.x.shape, dt) if need_dx else np.empty((0, *self.x.shape[1:]), dt)
        )
        args = (
            xk,
            *grads,
            Wm,
            FH,
            FW,
            self.stride,
            self.pad,
            dx,
            need_dx,
            bufs,
            dWT,
            db,
            B,
            _pieces(FN, K),
            direct,
        )

        def sums():  # the chunks' sums added in order: the same bits every run
            for c in range(1, C):
                dWT[0] += dWT[c]
                db[0] += db[c]
            self.db, self.dW = db[0].copy(), dWT[0].T.copy().reshape(self.W.shape)  # out of the scratch

        _in_chunks(_KB.backward_chunk, C, args, N * K * P, sums)
        return dx if need_dx else None


def _poolable(pool):
    """Whether :meth:`Convolution.forward_relu_pool` takes ``pool``: this backend's Pooling, its
    windows apart (no overlap: each value has one window) with no padding, indices in a byte."""
    return (
        type(pool) is Pooling
        and pool.pad == 0
        and pool.stride >= pool.pool_h
        and pool.stride >= pool.pool_w
        and pool.pool_h * pool.pool_w <= 256
    )


class _Deferred:
    """A value made by ``fn(*args)`` when first asked for (``self()``), then kept."""

    def __init__(self, fn, args):
        self.fn, self.args, self.value = fn, args, None

    def __call__(self):
        if self.value is None:
            with _unchained():
                self.value = self.fn(*self.args)
        return self.value
