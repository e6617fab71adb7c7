"""The Numba backend's fused :class:`~scratchprop.TwoLayerNet` hooks.

``TwoLayerNet(backend="numba")`` calls :func:`net_predict` from
``net.predict`` (so also from ``loss`` and ``accuracy``: the forward pass
alone, :mod:`scratchprop.kernels.two_layer_predict`), :func:`net_gradient`
from ``net.gradient`` and :func:`net_train_step` from ``net.train_step``.
The last two run the whole Affine -> Relu -> Affine -> SoftmaxWithLoss forward and backward
in one kernel call (:mod:`scratchprop.kernels.two_layer`): five BLAS
products, the first layer's unused input gradient skipped, bias + ReLU,
softmax + loss + ``dy`` + ``db2`` and mask + ``db1`` fused; ``train_step``
also fuses the SGD update into the weight-gradient products.

The parameters are read from ``net.params`` at call time and updated in
place. Inputs get the reference's checks (same errors, same order) before
the kernel runs; the hot path checks only a few attributes.

Layer state afterwards, as if the layers had run: ``Affine1.x``,
``Affine1.original_x_shape``, ``Affine2.x``, ``Affine2.original_x_shape``,
``Relu1.mask`` (computed on first access), ``lastLayer.y``, ``.t``,
``.loss`` (``net_predict``: the three layers' part of that, in fresh
arrays). ``net_gradient`` also sets every ``Affine*.dW`` / ``.db``.
``net_train_step`` leaves ``dW`` / ``db`` untouched: it never forms the
weight gradients. ``Affine2.x`` (the hidden activations) and
``lastLayer.y`` live in a per-net work area that the next fused call of the
same batch shape overwrites (fresh arrays every step cost page faults and
cross-core cache traffic that exceeded the products at batch ~32-2000);
copy them to keep them across steps.

The generic layer-by-layer path runs instead (same results, just unfused)
when the net is not the standard one (other layers, an overridden ``loss`` /
``predict``), when the compute dtype is not float32/float64, for an empty
batch, or a parameter that is not a float ndarray; it raises the
reference's errors. The update is done by NumPy (``params[k] -= lr *
grad[k]``, as the reference) when ``lr`` is not a Python number or a
parameter is not C-contiguous, writeable and of the compute dtype.
"""

import weakref

import numpy as np

from . import _dispatch as _d
from . import _numba_layers as _L
from . import _validate as check
from .kernels import two_layer as _K
from .kernels import two_layer_predict as _KP
from .net import TwoLayerNet

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)
_INTP = np.dtype(np.intp)
_ND = np.ndarray
_KEYS = ("W1", "b1", "W2", "b2")
_LAYER_NAMES = ("Affine1", "Relu1", "Affine2")
_LOSS, _PREDICT = TwoLayerNet.loss, TwoLayerNet.predict
_WORKSPACES = weakref.WeakKeyDictionary()  # net -> (h, s, y, dh) of its last batch shape
_MADE_DW1 = weakref.WeakKeyDictionary()  # net -> the dW1 arrays it handed out (_dispatch.spare)
_NO_DW1 = {dt: np.empty((0, 0), dt) for dt in (_F32, _F64)}  # train_step forms no dW1
_X_BUFFERS = weakref.WeakKeyDictionary()  # net -> its converted input of the last batch shape (reused)


_NUMBA_LAYERS = (_L.Affine, _L.Relu, _L.SoftmaxWithLoss)


def _standard(net, W1, b1, W2, b2, layers=_NUMBA_LAYERS):
    """True when ``net`` computes exactly Affine(W1, b1) -> Relu -> Affine(W2, b2) -> softmax loss.

    The one "is this the standard net?" test of the fused hooks, the numerical
    gradient's included: the class's ``loss``/``predict`` (and no instance
    override), the layers' names, order and classes (``layers``: the Numba
    backend's, whose state the fused hooks set), and the parameters the
    layers hold are these very arrays.
    """
    Affine, Relu, SoftmaxWithLoss = layers
    cls = type(net)
    L = net.layers
    if getattr(cls, "loss", None) is not _LOSS or getattr(cls, "predict", None) is not _PREDICT:
        return False
    d = getattr(net, "__dict__", None)
    if d is None or "loss" in d or "predict" in d:
        return False
    if not isinstance(L, dict) or tuple(L) != _LAYER_NAMES:
        return False
    A1, R, A2 = L["Affine1"], L["Relu1"], L["Affine2"]
    return (
        type(A1) is Affine
        and type(R) is Relu
        and type(A2) is Affine
        and type(net.lastLayer) is SoftmaxWithLoss
        and A1.W is W1
        and A1.b is b1
        and A2.W is W2
        and A2.b is b2
    )


def standard_params(net, layers=_NUMBA_LAYERS):
    """``(W1, b1, W2, b2)`` when ``net`` is the standard net (see :func:`_standard`), else None."""
    p = getattr(net, "params", None)
    if not isinstance(p, dict):
        return None
    W = p.get("W1"), p.get("b1"), p.get("W2"), p.get("b2")
    try:
        return W if _standard(net, *W, layers=layers) else None
    except (AttributeError, KeyError, TypeError):
        return None


def _prepare_input(net, x):
    """Kernel-ready ``(x_shape, x2, xc, dt, W1, b1, W2, b2)`` for the standard net, or None."""
    p = net.params
    W1, b1, W2, b2 = p.get("W1"), p.get("b1"), p.get("W2"), p.get("b2")
    for a in (W1, b1, W2, b2):
        if type(a) is not np.ndarray or a.dtype.kind != "f":
            return None
    if W1.ndim != 2 or W2.ndim != 2:
        return None
    D, H = W1.shape
    C = W2.shape[1]
    if b1.shape != (H,) or W2.shape[0] != H or b2.shape != (C,) or C == 0:
        return None
    if not _standard(net, W1, b1, W2, b2):
        return None
    if type(x) is np.ndarray and x.ndim == 2 and x.shape[1] == D and x.dtype.kind in "biuf":
        x2 = x
    else:
        x2, x = check.affine_input("Affine", x, W1)  # the first check the layers would fail
    if x2.shape[0] == 0:
        return None  # the layers raise the reference's empty-batch error
    if x2.dtype == W1.dtype == b1.dtype == W2.dtype == b2.dtype:
        dt = W1.dtype
    else:  # one dtype throughout only if the first product is already the widest
        dt = np.result_type(x2, W1)
        if np.result_type(dt, b1, W2, b2) != dt:
            return None
    if not (dt == _F64 or dt == _F32):
        return None
    xc = _d.converted(x2, dt, _X_BUFFERS.get(net))  # a converted input goes into the net's buffer
    if xc is not x2:
        _X_BUFFERS[net] = xc
    elif not xc.flags.writeable:
        xc = _readable_alias(xc)
    return x.shape, x2, xc, dt, W1, b1, W2, b2


def _prepare(net, x, t):
    """Kernel-ready ``(x_shape, x2, xc, lab, T, labels, T_ref, dt, W1, b1, W2, b2)``, or None."""
    inp = _prepare_input(net, x)
    if inp is None:
        return None
    x_shape, x2, xc, dt, W1, b1, W2, b2 = inp
    N, C = xc.shape[0], W2.shape[1]
    labels, T_ref, lab, T = _d.kernel_targets("SoftmaxWithLoss", t, N, C, dt)
    return x_shape, x2, xc, lab, T, labels, T_ref, dt, W1, b1, W2, b2


def _prepare_common(net, x, t, lr):
    """:func:`_prepare` for ``train_step``'s common case, in a few cheap tests, or None.

    float64 or float32 parameters, ``x (N, D)`` and ``intp`` labels ``t (N,)``
    of the compute dtype, all C-contiguous and writeable, and a float ``lr``:
    then nothing needs converting. Anything else (None) goes through
    :func:`_prepare`, which also raises the reference's errors (a third of
    the Python side of a small step).
    """
    p = net.params
    if type(p) is not dict or type(x) is not _ND or type(t) is not _ND or type(lr) is not float:
        return None
    W1, b1, W2, b2 = p.get("W1"), p.get("b1"), p.get("W2"), p.get("b2")
    if type(W1) is not _ND or type(b1) is not _ND or type(W2) is not _ND or type(b2) is not _ND:
        return None
    dt = W1.dtype
    if (
        (dt is not _F64 and dt is not _F32)
        or b1.dtype is not dt
        or W2.dtype is not dt
        or b2.dtype is not dt
        or x.dtype is not dt
        or t.dtype is not _INTP
    ):
        return None
    if W1.ndim != 2 or W2.ndim != 2 or x.ndim != 2:
        return None
    D, H = W1.shape
    N, C = x.shape[0], W2.shape[1]
    if (
        x.shape[1] != D
        or b1.shape != (H,)
        or W2.shape[0] != H
        or b2.shape != (C,)
        or t.shape != (N,)
        or N == 0
        or C == 0
    ):
        return None
    flags = W1.flags.num & b1.flags.num & W2.flags.num & b2.flags.num & x.flags.num & t.flags.num
    if flags & _d.C_WRITEABLE != _d.C_WRITEABLE or not _standard(net, W1, b1, W2, b2):
        return None
    return x.shape, x, x, t, check.NO_T[dt], t, None, dt, W1, b1, W2, b2


class _Alias:
    """Holds a read-only array and exposes its memory through the array interface, unflagged."""

    def __init__(self, a):
        self.a = a
        self.__array_interface__ = dict(a.__array_interface__, data=(a.ctypes.data, False))


def _readable_alias(a):
    """A writeable-flagged view of read-only ``a``'s memory, for the kernel, which only reads it.

    Numba types read-only arrays separately: passing one would compile a second
    fused kernel, and copying it costs more than the step at large batches.
    """
    return np.asarray(_Alias(a))


def _c(a, dt):
    """``a`` as a C-contiguous, writeable array of ``dt`` (the kernel's one signature)."""
    if a.dtype == dt and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=dt, order="C")


def _workspace(net, N, H, C, dt):
    """``h, s, y, dh`` for this net and shape, reused from the last call when they fit."""
    ws = _WORKSPACES.get(net)
    if ws is None or ws[0].shape != (N, H) or ws[1].shape != (N, C) or ws[0].dtype != dt:
        ws = (np.empty((N, H), dt), np.empty((N, C), dt), np.empty((N, C), dt), np.empty((N, H), dt))
        _WORKSPACES[net] = ws
    return ws


def _run(net, prep, t, lr, update):
    x_shape, x2, xc, lab, T, labels, T_ref, dt, W1, b1, W2, b2 = prep
    if not update:
        W1, b1, W2, b2 = _c(W1, dt), _c(b1, dt), _c(W2, dt), _c(b2, dt)
    N, H = xc.shape[0], W1.shape[1]
    h, s, y, dh = _workspace(net, N, H, W2.shape[1], dt)
    if update:
        dW1 = _NO_DW1[dt]
    else:  # the dW1 of two steps ago, unless someone still holds it
        dW1 = _d.spare(_MADE_DW1.setdefault(net, []), W1.shape, dt, net.layers["Affine1"].dW)
    mode = _L.product_mode(N, xc.shape[1], H, dt)
    status, loss, dW1, db1, dW2, db2 = _K.step(
        xc, lab, T, W1, b1, W2, b2, lr, update, h, s, y, dh, dW1, mode, _L.share_for((mode,), dt)
    )
    if status:  # a label outside [0, C)
        check.label_error("SoftmaxWithLoss", t, xc.shape[0], W2.shape[1], dt)
    loss = dt.type(loss)
    _set_forward_state(net, x2, x_shape, h)
    last = net.lastLayer
    last.loss, last.y, last.t = loss, (y.reshape(-1) if len(x_shape) == 1 else y), t
    last._labels, last._T = labels, T_ref
    if update:
        return loss
    A1, A2 = net.layers["Affine1"], net.layers["Affine2"]
    A1.dW, A1.db, A2.dW, A2.db = dW1, db1, dW2, db2
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def _set_forward_state(net, x2, x_shape, h):
    """The state the layers' forward leaves: ``x2`` the input as ``(N, D)``, ``h`` the ReLU output."""
    L = net.layers
    A1, R, A2 = L["Affine1"], L["Relu1"], L["Affine2"]
    one = len(x_shape) == 1
    A1.x, A1.original_x_shape = x2, x_shape
    R._out, R._mask = (h.reshape(-1) if one else h), None
    A2.x, A2.original_x_shape = h, ((h.shape[1],) if one else h.shape)


def net_predict(net, x):
    """``net.predict(x)``: the three layers' forward in one kernel call (:mod:`.kernels.two_layer_predict`).

    Leaves the layers' state as their forward would (``Relu1.mask`` computed
    on first access); ``h`` and the returned scores are fresh arrays. A net
    that is not the standard one runs its layers.
    """
    inp = _prepare_input(net, x)
    if inp is None:
        for layer in net.layers.values():
            x = layer.forward(x)
        return x
    x_shape, x2, xc, dt, W1, b1, W2, b2 = inp
    W1, b1, W2, b2 = _c(W1, dt), _c(b1, dt), _c(W2, dt), _c(b2, dt)
    N, H, C = xc.shape[0], W1.shape[1], W2.shape[1]
    h, s = np.empty((N, H), dt), np.empty((N, C), dt)
    mode = _L.product_mode(N, xc.shape[1], H, dt)
    part = np.empty((N, H) if mode == _L._PAIR else (0, 0), dt)  # a split product's second sum
    _KP.predict(xc, W1, b1, W2, b2, h, s, mode, _L.share_for((mode,), dt), part)
    _set_forward_state(net, x2, x_shape, h)
    return s.reshape(C) if len(x_shape) == 1 else s


def _generic_gradient(net, x, t):
    """The net's own layer-by-layer backprop (the book's ``gradient``)."""
    net.loss(x, t)
    dout = net.lastLayer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    return {
        "W1": net.layers["Affine1"].dW,
        "b1": net.layers["Affine1"].db,
        "W2": net.layers["Affine2"].dW,
        "b2": net.layers["Affine2"].db,
    }


def net_gradient(net, x, t):
    """Backprop gradient of ``net.loss(x, t)``: a dict ``W1, b1, W2, b2``, in one fused call."""
    prep = _prepare(net, x, t)
    if prep is None:
        return _generic_gradient(net, x, t)
    return _run(net, prep, t, 0.0, False)


def _fusable_rate(lr, dt):
    """Whether ``lr`` scales a gradient of ``dt`` as the kernel does (``dt.type(lr)``).

    A Python number is a weak scalar in NumPy; a NumPy float no wider than
    ``dt`` keeps ``dt``. A wider one (np.float64 with float32 parameters) makes
    NumPy round ``lr * grad`` in float64 first: the generic path does that.
    """
    if type(lr) in (float, int):
        return True
    return isinstance(lr, np.floating) and lr.dtype.itemsize <= dt.itemsize


def net_train_step(net, x, t, lr):
    """One SGD step ``params[k] -= lr * grad[k]`` in place; returns the loss before the step."""
    prep = _prepare_common(net, x, t, lr)
    if prep is not None:
        return _run(net, prep, t, lr, True)
    prep = _prepare(net, x, t)
    if prep is not None and _fusable_rate(lr, prep[7]):
        dt = prep[7]
        if all(a.dtype == dt and a.flags.c_contiguous and a.flags.writeable for a in prep[8:]):
            return _run(net, prep, t, float(lr), True)
    grads = _generic_gradient(net, x, t) if prep is None else _run(net, prep, t, 0.0, False)
    for k in _KEYS:
        net.params[k] -= lr * grads[k]
    return net.lastLayer.loss
