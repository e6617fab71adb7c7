"""``LayerNet.gradient`` of a fully connected net on the Numba backend, in one kernel call.

``MultiLayerNet`` / ``MultiLayerNetExtend`` with ``backend="numba"`` are hidden groups (Affine,
optionally BatchNormalization, Relu, optionally Dropout), a last Affine and SoftmaxWithLoss.
Their layered ``gradient`` makes ~45 kernel calls a step, and the Python around them costs about
a quarter of the step at batch 100 (``python bench/probes.py products``, ``bench/REPEATS.md``). :func:`gradient` makes
one (``kernels/mlp.py``), with the layers' own kernels in their order, and leaves every layer as
its own calls leave it: the same attributes with the same bits, the same draws from
``np.random``. A net it does not cover (a Sigmoid, another layer, mixed dtypes, a held BLAS pool,
an odd input) takes the layered path, which also raises every error; targets are checked
first, so a bad ``t`` raises before any layer changes.
"""

import sys
from operator import is_ as _is

import numpy as np

from . import _dispatch as _d
from . import _numba_ch6 as _ch6
from . import _numba_layers as _nl
from . import threads as _threads
from .kernels import affine as _K_affine
from .kernels import mlp as _K
from .kernels import mt19937 as _K_mt
from .kernels import pair as _K_pair
from .layernet import LayerNet

__all__ = ["gradient"]

_BOOL = np.dtype(np.bool_)
_CW = _d.C_WRITEABLE
_NONE = {dt: np.empty(0, dt) for dt in (_d.F32, _d.F64)}  # "no such layer in this group"
_BN_INPUTS = ("gamma", "beta", "running_mean", "running_var")


def _plan(net):
    """``[(affine, bn or None, relu, dropout or None), ...]`` and the last Affine, or ``None`` when
    the net's layers are not such groups; cached on the net against its layers' identities."""
    layers = tuple(net.layers.values())
    key = layers + (net.last_layer, type(net))
    cached = net.__dict__.get("_fused_plan")
    if cached is not None and len(cached[0]) == len(key) and all(map(_is, cached[0], key)):
        return cached[1]
    cls = type(net)  # a subclass's own predict or loss is what its gradient must run
    plain = cls.predict is LayerNet.predict and cls.loss is LayerNet.loss
    plan = _groups(layers) if plain and type(net.last_layer) is _nl.SoftmaxWithLoss else None
    net._fused_plan = (key, plan)
    return plan


def _groups(layers):
    groups, i, n = [], 0, len(layers)
    while i < n - 1:  # exact types: a user's subclass may change what a layer computes
        affine = layers[i]
        bn = layers[i + 1] if type(layers[i + 1]) is _ch6.BatchNormalization else None
        i += 1 + (bn is not None)
        if type(affine) is not _nl.Affine or i >= n or type(layers[i]) is not _nl.Relu:
            return None
        relu = layers[i]
        drop = layers[i + 1] if i + 1 < n and type(layers[i + 1]) is _ch6.Dropout else None
        i += 1 + (drop is not None)
        groups.append((affine, bn, relu, drop))
    if not groups or i != n - 1 or type(layers[-1]) is not _nl.Affine:
        return None
    return groups, layers[-1]


def _array(a, dt, shape):
    """A C-contiguous, writeable ``dt`` array of ``shape`` (a read-only one is another Numba type)."""
    return type(a) is np.ndarray and a.shape == shape and a.flags.num & _CW == _CW and a.dtype == dt


def _ready(groups, last, x):
    """``dt`` when every parameter is a C-contiguous array of one float dtype with the shapes of
    a chain from ``x``'s features, and ``x`` is a 2-D float array the Affine layers take in
    ``dt`` as they are or converted (float32 images, float64 weights); else ``None``."""
    dt = last.W.dtype
    if not (dt == _d.F64 or dt == _d.F32) or type(x) is not np.ndarray or x.ndim != 2 or not len(x):
        return None
    if not (x.dtype == dt or (x.dtype == _d.F32 and dt == _d.F64)):
        return None
    D = x.shape[1]
    for affine, bn, _, _ in groups + [(last, None, None, None)]:
        W = affine.W
        if type(W) is not np.ndarray or W.ndim != 2 or W.shape[0] != D or not _array(W, dt, W.shape):
            return None
        D = W.shape[1]
        if not _array(affine.b, dt, (D,)):
            return None
        if bn is not None:
            if not (_array(bn.gamma, dt, (D,)) and _array(bn.beta, dt, (D,))):
                return None
            for r in (bn.running_mean, bn.running_var):
                if r is not None and not _array(r, dt, (D,)):
                    return None
    return dt


def _per_shape(net, N, dt, widths, parts, affines):
    """``mode`` (where each Affine's products run: its own rule), the address of the paired
    products' share (0: none), ``widths``, ``parts`` as the kernel takes them, its scratch
    (``kernels.mlp.scratch_size``) and its own share with OpenBLAS's worker (0: none), kept on the
    net for the next step of the same shapes."""
    key = (N, dt, widths, parts)
    got = net.__dict__.get("_fused_shapes")
    if got is None or got[0] != key:
        mode = np.array([_nl.product_mode(N, *a.W.shape, dt) for a in affines], np.int64)
        fn = _nl.share_for(mode, dt)
        work = max(_K_affine.work_size(N, *a.W.shape) for a in affines)
        scratch = np.empty(_K.scratch_size(N, widths, work), dt)
        # the worker's share beside this thread: the last dW (a paired first layer), Dropout's draws
        share = _K.share_address() if mode[0] == _nl._PAIR or any(p & 2 for p in parts) else 0
        if share:
            fn = _K_pair.share_address(dt)  # the products' share, which the kernel's share calls
        got = net._fused_shapes = (key, (mode, fn, np.array(widths), np.array(parts), scratch, share))
    return got[1]


def _kept(net, N, dt, widths, parts):
    """What the layers keep from a step, as :func:`kernels.mlp.gradient` lays it out in flat
    arrays, with the views the layers get: a set nothing else holds any more, else a new one.
    Fresh arrays of a few hundred KB a step land on pages glibc gave back, and faulting them in
    costs more than the passes that fill them (``bench/THREADS.md``, "What the allocator
    costs"); the same ones step after step stay in cache.

    Two kinds, two sets each: the forward's (outputs, masks, ``xc``, ``xn``), which only the
    layers hold, so last step's serve again once :func:`_release` has let go of them; and the
    statistics and gradients (``std``, running means and variances, ``dgamma``, ``dbeta``, every
    Affine's ``db``), which the book's loop still holds during the call (``grads = ...``) and
    whose running statistics feed this step: those of two steps ago."""
    Ms, C = widths[:-1], widths[-1]
    P = [sum(widths[:g]) for g in range(len(widths) + 1)]
    S, key = P[len(Ms)], (N, dt, widths, parts)

    def forward():
        fwd, masks = np.empty(3 * N * S, dt), np.empty(2 * N * S, _BOOL)

        def rows(flat, k):
            return tuple(
                flat[N * (k * S + P[g]) : N * (k * S + P[g + 1])].reshape(N, m) for g, m in enumerate(Ms)
            )

        return (fwd, masks) + tuple(rows(fwd, k) for k in range(3)) + tuple(rows(masks, k) for k in range(2))

    def statistics():
        stats = np.empty(6 * S + C, dt)
        views = tuple(tuple(stats[k * S + P[g] : k * S + P[g + 1]] for g in range(len(Ms))) for k in range(5))
        return (stats,) + views + (tuple(stats[5 * S + P[g] : 5 * S + P[g + 1]] for g in range(len(widths))),)

    return _take(net, "_fused_forward", key, forward, newest_first=True) + _take(
        net, "_fused_statistics", key, statistics, newest_first=False
    )


def _take(net, name, key, make, newest_first):
    """One of the (up to) two sets of arrays kept in ``net.<name>`` for ``key`` that nothing else
    holds (the newest or the oldest tried first), else a new one from ``make()``."""
    held = [h for h in net.__dict__.get(name, ()) if h[0] == key]
    for i in range(len(held) - 1, -1, -1) if newest_first else range(len(held) - (len(held) < 2)):
        if _counts(held[i][2]) == held[i][3]:
            held.append(held.pop(i))
            break
    else:
        made = make()
        arrays = tuple(a for a in made if type(a) is np.ndarray) + tuple(
            a for views in made if type(views) is tuple for a in views
        )
        held.append((key, made, arrays, _counts(arrays)))  # the counts while only this set holds them
        del held[:-2]
    setattr(net, name, held)
    return held[-1][1]


def _release(groups, last):
    """Drop the layers' references to the forward's arrays of the last step (the attributes are set
    again after the step), so that :func:`_kept` can tell whether anything else holds them."""
    for g, (affine, bn, relu, drop) in enumerate(groups):
        if g:
            affine.x = affine._xk = None
        if bn is not None:
            bn.xc = bn.xn = None
        relu._mask = relu._out = relu._pending = None
        if drop is not None:
            drop.mask = None
    last.x = last._xk = None


def _counts(arrays):
    """The reference counts of a set's flat arrays and views: above those counted when it was
    made, something else holds one (a layer, a caller, a view of a view, whose base is the flat
    array)."""
    return list(map(sys.getrefcount, arrays))


def gradient(net, x, t):
    """Run ``net``'s training forward and backward in one kernel call and set every layer's
    attributes as their own calls do; ``False`` (nothing done) when the net is not covered."""
    plan = _plan(net)
    if plan is None or _threads.blas_held():
        return False
    groups, last = plan
    dt = _ready(groups, last, x)
    if dt is None:
        return False
    Ms = [a.W.shape[1] for a, _, _, _ in groups]
    if len(Ms) > _K.GROUPS:
        return False
    N, C = x.shape[0], last.W.shape[1]
    labels, T_ref, lab, T = _d.kernel_targets("SoftmaxWithLoss", t, N, C, dt)
    state, lock = None, None
    if any(drop is not None for _, _, _, drop in groups):
        try:
            lock, state = _K_mt.global_state()
        except TypeError:  # not the book's MT19937: the layers draw through np.random.rand
            return False
    else:
        state = np.empty(0, np.uint32)

    first = groups[0][0]
    xk = _d.converted(x, dt, first._xbuf)
    if not xk.flags.writeable:
        return False
    affines = [a for a, _, _, _ in groups] + [last]
    bns = [bn for _, bn, _, _ in groups]
    widths = tuple(Ms) + (C,)
    parts = tuple((bn is not None) + 2 * (drop is not None) for _, bn, _, drop in groups)
    for bn, m in zip(bns, Ms):
        if bn is not None and bn.running_mean is None:  # as the reference's first forward
            bn.running_mean, bn.running_var = np.zeros(m, dt), np.zeros(m, dt)
    _release(groups, last)
    fwd, masks, outs, xcs, xns, rmasks, keeps, stats, stds, means, variances, dgammas, dbetas, dbs = _kept(
        net, N, dt, widths, parts
    )
    dWs = tuple(_d.spare(a._made[2], a.W.shape, dt, a.dW) for a in affines)
    none, none2 = _NONE[dt], _NONE[dt].reshape(0, 0)
    pad2 = (none2,) * (_K.GROUPS - len(groups))  # tuples of one length: one compile for any depth
    pad1 = (none,) * len(pad2)
    mode, fn, widths_k, parts_k, scratch, share = _per_shape(net, N, dt, widths, parts, affines)
    bn_inputs = [tuple(none if bn is None else getattr(bn, k) for bn in bns) + pad1 for k in _BN_INPUTS]
    args = (
        xk,
        lab,
        T,
        tuple(a.W for a in affines) + pad2,
        tuple(a.b for a in affines) + pad1,
        dWs + pad2,
        mode,
        fn,
        widths_k,
        parts_k,
        *bn_inputs,
        np.array([0.0 if bn is None else bn.momentum for bn in bns]),
        state,
        np.array([0.0 if drop is None else drop.dropout_ratio for _, _, _, drop in groups]),
        fwd,
        masks,
        stats,
        scratch,
        share,
        _threads.DRAWS_PAIR_MIN_ELEMENTS,
    )
    if lock is None:
        y, loss = _K.gradient(*args)
    else:
        with lock:  # np.random.rand's draws, from its generator's state in place
            y, loss = _K.gradient(*args)

    L = len(groups)
    inputs = (x,) + outs[:-1]
    for g, (affine, bn, relu, drop) in enumerate(groups):
        _affine_done(affine, inputs[g], xk if g == 0 else inputs[g], dWs[g], dbs[g])
        if bn is not None:
            bn.input_shape, bn.batch_size, bn._last_train = (N, Ms[g]), N, True
            bn.xc, bn.xn, bn.std = xcs[g], xns[g], stds[g]
            bn.running_mean, bn.running_var = means[g], variances[g]
            bn.dgamma, bn.dbeta = dgammas[g], dbetas[g]
        relu._out, relu._mask, relu._pending = None, rmasks[g], None
        if drop is not None:
            drop.mask, drop._last_train = keeps[g], True
    _affine_done(last, outs[L - 1], outs[L - 1], dWs[L], dbs[L])
    loss_layer = net.last_layer
    loss_layer._labels, loss_layer._T, loss_layer.t = labels, T_ref, t
    loss_layer.y, loss_layer.loss = y, dt.type(loss)
    return True


def _affine_done(layer, x, xk, dW, db):
    """``layer`` as its forward on ``x`` (taken as ``xk``) and its backward leave it."""
    layer.x, layer.original_x_shape, layer._xk = x, x.shape, (x, xk)
    if xk is not x:
        layer._xbuf = xk
    layer.dW, layer.db = dW, db
