"""``LayerNet.gradient`` of a fully connected net on the Numba backend, in one kernel call.

``MultiLayerNet`` / ``MultiLayerNetExtend`` with ``backend="numba"`` are hidden groups (Affine,
optionally BatchNormalization, Relu, optionally Dropout), a last Affine and SoftmaxWithLoss.
Their layered ``gradient`` makes ~45 kernel calls a step, and the Python around them costs about
a third of the step at batch 100 (``python bench/probes.py products``). :func:`gradient` makes
one (``kernels/mlp.py``), with the layers' own kernels in their order, and leaves every layer as
its own calls leave it: the same attributes with the same bits, the same draws from
``np.random``. A net it does not cover (a Sigmoid, another layer, mixed dtypes, a held BLAS pool,
an odd input) takes the layered path, which also raises every error; targets are checked
first, so a bad ``t`` raises before any layer changes.
"""

import sys

import numpy as np

from . import _dispatch as _d
from . import _numba_ch6 as _ch6
from . import _numba_layers as _nl
from . import threads as _threads
from .kernels import affine as _K_affine
from .kernels import mlp as _K
from .kernels import mt19937 as _K_mt
from .layernet import LayerNet

__all__ = ["gradient"]

_BOOL = np.dtype(np.bool_)
_CW = _d.C_WRITEABLE
_NONE = {dt: np.empty(0, dt) for dt in (_d.F32, _d.F64)}  # "no such layer in this group"
_NO_MASK = np.empty(0, _BOOL)


def _plan(net):
    """``[(affine, bn or None, relu, dropout or None), ...]`` and the last Affine, or ``None`` when
    the net's layers are not such groups; cached on the net against its layers' identities."""
    layers = tuple(net.layers.values())
    key = layers + (net.last_layer, type(net))
    cached = net.__dict__.get("_fused_plan")
    if cached is not None and len(cached[0]) == len(key) and all(a is b for a, b in zip(cached[0], key)):
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
    return type(a) is np.ndarray and a.dtype == dt and a.shape == shape and a.flags.num & _CW == _CW


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


def _scratch(net, N, dt, groups, last):
    """Arrays only the kernel sees, kept on the net for the next step of the same shapes."""
    key = (N, dt, tuple(a.W.shape for a, _, _, _ in groups) + (last.W.shape,))
    got = net.__dict__.get("_fused_scratch")
    if got is not None and got[0] == key:
        return got[1]
    Ms = [a.W.shape[1] for a, _, _, _ in groups]
    widest = max(Ms)
    work = max(_K_affine.work_size(N, *a.W.shape) for a, _, _, _ in groups + [(last, 0, 0, 0)])
    scratch = (
        tuple(np.empty((N, M), dt) for M in Ms),  # zs
        tuple(np.empty(M, dt) for M in Ms),  # batch means
        tuple(np.empty(M, dt) for M in Ms),  # batch variances
    )
    flat = [np.empty(N * widest, dt) for _ in range(3)]  # dA, dZ, dB: views (N, M) per layer
    net._fused_scratch = (key, (scratch, flat, np.empty(work, dt)))
    return net._fused_scratch[1]


def _kept(net, N, dt, groups, C):
    """The arrays the layers keep from a step, in :func:`kernels.mlp.gradient`'s order: a set
    nothing else holds any more, else new ones. Fresh arrays of a few hundred KB a step land on
    pages glibc gave back, and faulting them in costs more than the passes that fill them
    (``bench/THREADS.md``, "What the allocator costs"); the same ones step after step stay in cache.

    Two kinds, two sets each: the forward's (outputs, masks, ``xc``, ``xn``), which only the
    layers hold, so last step's serve again once :func:`_release` has let go of them; and the
    statistics and gradients (``std``, running means and variances, ``dgamma``, ``dbeta``, every
    Affine's ``db``), which the book's loop still holds during the call (``grads = ...``) and
    the running statistics feed this step: those of two steps ago."""
    Ms = [a.W.shape[1] for a, _, _, _ in groups]
    bns = [bn is not None for _, bn, _, _ in groups]
    drops = [drop is not None for _, _, _, drop in groups]
    key = (N, dt, tuple(Ms), tuple(bns), tuple(drops), C)
    none, none2 = _NONE[dt], _NONE[dt].reshape(0, 0)

    def forward():
        return (
            tuple(np.empty((N, m), dt) for m in Ms),  # outs
            tuple(np.empty(N * m, _BOOL) for m in Ms),  # rmasks
            tuple(np.empty(N * m, _BOOL) if d else _NO_MASK for m, d in zip(Ms, drops)),  # keeps
            tuple(np.empty((N, m), dt) if b else none2 for m, b in zip(Ms, bns)),  # xcs
            tuple(np.empty((N, m), dt) if b else none2 for m, b in zip(Ms, bns)),  # xns
        )

    def statistics():
        made = tuple(tuple(np.empty(m, dt) if b else none for m, b in zip(Ms, bns)) for _ in range(5))
        return made + (tuple(np.empty(m, dt) for m in Ms + [C]),)

    return _take(net, "_fused_forward", key, forward, newest_first=True) + _take(
        net, "_fused_statistics", key, statistics, newest_first=False
    )


def _take(net, name, key, make, newest_first):
    """One of the (up to) two sets of arrays kept in ``net.<name>`` for ``key`` that nothing else
    holds (the newest or the oldest tried first), else a new one from ``make()``."""
    held = [h for h in net.__dict__.get(name, ()) if h[0] == key]
    for i in range(len(held) - 1, -1, -1) if newest_first else range(len(held) - (len(held) < 2)):
        if _unheld(held[i][1]):
            held.append(held.pop(i))
            break
    else:
        held.append((key, make()))
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


def _counts(sets):
    return [sys.getrefcount(a) for arrays in sets if arrays is not None for a in arrays if a.size]


_FREE = _counts(((np.empty(1),),))[0]  # an array only its tuple holds, counted the same way


def _unheld(sets):
    return all(c == _FREE for c in _counts(sets))


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
    here = np.array([_nl.products_here(N, *a.W.shape, dt) for a in affines])
    none = _NONE[dt]
    (zs, mus, variances), flat, work = _scratch(net, N, dt, groups, last)
    dA, dZ, dB = flat

    L = len(groups)
    bns = [bn for _, bn, _, _ in groups]
    for bn, m in zip(bns, Ms):
        if bn is not None and bn.running_mean is None:  # as the reference's first forward
            bn.running_mean, bn.running_var = np.zeros(m, dt), np.zeros(m, dt)
    _release(groups, last)
    kept = _kept(net, N, dt, groups, C)
    outs, rmasks, keeps, xcs, xns, stds, new_means, new_vars, dgammas, dbetas, dbs = kept
    dWs = tuple(_d.spare(a._made[2], a.W.shape, dt, a.dW) for a in affines)
    args = (
        xk,
        lab,
        T,
        tuple(a.W for a in affines),
        tuple(a.b for a in affines),
        here,
        tuple(none if bn is None else bn.gamma for bn in bns),
        tuple(none if bn is None else bn.beta for bn in bns),
        tuple(none if bn is None else bn.running_mean for bn in bns),
        tuple(none if bn is None else bn.running_var for bn in bns),
        np.array([0.0 if bn is None else bn.momentum for bn in bns]),
        state,
        np.array([0.0 if drop is None else drop.dropout_ratio for _, _, _, drop in groups]),
        keeps,
        rmasks,
        outs,
        xcs,
        xns,
        stds,
        new_means,
        new_vars,
        dWs,
        dbs,
        dgammas,
        dbetas,
        zs,
        mus,
        variances,
        dA,
        dZ,
        dB,
        work,
    )
    if lock is None:
        y, loss = _K.gradient(*args)
    else:
        with lock:  # np.random.rand's draws, from its generator's state in place
            y, loss = _K.gradient(*args)

    inputs = (x,) + outs[:-1]
    for g, (affine, bn, relu, drop) in enumerate(groups):
        _affine_done(affine, inputs[g], xk if g == 0 else inputs[g], dWs[g], dbs[g])
        if bn is not None:
            bn.input_shape, bn.batch_size, bn._last_train = (N, Ms[g]), N, True
            bn.xc, bn.xn, bn.std = xcs[g], xns[g], stds[g]
            bn.running_mean, bn.running_var = new_means[g], new_vars[g]
            bn.dgamma, bn.dbeta = dgammas[g], dbetas[g]
        relu._out, relu._mask, relu._pending = None, rmasks[g].reshape(N, Ms[g]), None
        if drop is not None:
            drop.mask, drop._last_train = keeps[g].reshape(N, Ms[g]), True
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
