"""A fully connected net's training gradient in one call: the layers' own kernels, in their order.

The net (``LayerNet`` on the Numba backend: ``MultiLayerNet``, ``MultiLayerNetExtend``) is ``L``
hidden groups, each an Affine, optionally a BatchNormalization, a Relu and optionally a Dropout,
then a last Affine and SoftmaxWithLoss. :func:`gradient` runs the forward and the backward of all
of them, calling the very kernels the layers' own calls run (:mod:`.affine`, :mod:`.batchnorm`,
:mod:`.mt19937`, :mod:`.softmax_loss`) in the same order on the same values, so every result is
their bits; what it saves is the Python and the dispatch around ~45 kernel calls a step.

Per-layer arrays come as tuples indexed by the group (a tuple's length is part of the type: one
compile per depth and dtype). A group without BatchNormalization has size-0 ``gamma``; one
without Dropout a size-0 ``keep``. ``here[l]``: Affine ``l``'s products on the calling thread
(:mod:`.gemm`) rather than in BLAS, the layers' own choice, made by the caller.
"""

import numpy as np
from numba import njit

from . import affine as _A
from . import batchnorm as _B
from .config import SERIAL, guard_cache
from .mt19937 import dropout_mask
from .softmax_loss import backward as _loss_backward
from .softmax_loss import forward as _loss_forward

__all__ = ["gradient"]

_EPS = 10e-7  # the book's eps, as BatchNormalization writes it


@njit(**SERIAL)
def _affine_forward(here, x, W, b, out):
    if here:
        _A.forward_here(x, W, b, out)
    else:
        _A.forward(x, W, b, out)


@njit(**SERIAL)
def _affine_backward(here, dout, x, W, need_dx, dx, dW, db, work):
    if here:
        _, _, got = _A.backward_here(dout, x, W, need_dx, dx, dW, work)
    else:
        _, _, got = _A.backward(dout, x, W, need_dx, dx, dW)
    db[:] = got


@njit(**SERIAL)
def gradient(
    x, labels, T, Ws, bs, here, gammas, betas, running_means, running_vars, momentum, state, ratio,  # inputs
    keeps, rmasks, outs, xcs, xns, stds, new_means, new_vars, dWs, dbs, dgammas, dbetas,  # kept
    zs, mus, variances, dA, dZ, dB, work,  # scratch
):  # fmt: skip
    """One step's forward (training mode) and backward; returns ``(y, loss)`` of SoftmaxWithLoss.

    Inputs: ``x (N, D)``; ``labels``/``T`` as :func:`.softmax_loss.forward` takes them; ``Ws``,
    ``bs`` (``L + 1``); ``gammas``, ``betas``, ``running_means``, ``running_vars``, ``momentum``
    (``L``); ``state``, NumPy's MT19937 state, and ``ratio`` (``L``) for the Dropout masks (drawn
    as ``np.random.rand(N, M) > ratio``, group by group, in the forward). Outputs the layers
    keep: ``keeps``, ``rmasks`` (``N * M`` bools), ``outs`` (each group's output), ``xcs``,
    ``xns``, ``stds``, ``new_means``, ``new_vars``, ``dWs``, ``dbs``, ``dgammas``, ``dbetas``.
    Scratch: ``zs``, ``mus``, ``variances`` per group; ``dA``, ``dZ``, ``dB`` flat, ``N * M`` for
    the widest group; ``work``, :func:`.affine.work_size` for every layer.
    """
    L = len(gammas)
    none = np.empty(0, x.dtype)
    for g in range(L):
        a = x if g == 0 else outs[g - 1]
        out = outs[g]
        if gammas[g].shape[0]:
            _affine_forward(here[g], a, Ws[g], bs[g], zs[g])
            if keeps[g].shape[0]:  # drawn first, as BatchNormalization's fused forward does
                dropout_mask(state, none, ratio[g], none, keeps[g])
            _B.forward_train(
                zs[g], gammas[g], betas[g], _EPS, out, xcs[g], xns[g], stds[g], mus[g], variances[g],
                keeps[g], rmasks[g],
            )  # fmt: skip
            _B.running_update(running_means[g], mus[g], momentum[g], new_means[g])
            _B.running_update(running_vars[g], variances[g], momentum[g], new_vars[g])
        else:
            _affine_forward(here[g], a, Ws[g], bs[g], out)
            if keeps[g].shape[0]:
                dropout_mask(state, none, ratio[g], none, keeps[g])
            M = out.shape[1]
            for i in range(out.shape[0]):  # the Relu's and the Dropout's kernels, row by row
                keep = keeps[g][i * M : (i + 1) * M] if keeps[g].shape[0] else keeps[g]
                _B._relu_dropout_row(out[i], rmasks[g][i * M : (i + 1) * M], keep)
    scores = np.empty((x.shape[0], Ws[L].shape[1]), x.dtype)
    _affine_forward(here[L], outs[L - 1], Ws[L], bs[L], scores)
    y, loss = _loss_forward(scores, labels, T)
    t = y.dtype.type
    d = _loss_backward(y, labels, T, t(1), t(x.shape[0]))
    N = x.shape[0]
    for g in range(L, -1, -1):  # d: the gradient at Affine g's output
        a = x if g == 0 else outs[g - 1]
        D = a.shape[1]
        need_dx = g > 0  # not a literal: one compiled backward for both (the layers' own)
        dx = dA[: N * D * need_dx].reshape(N * need_dx, D)  # (0, D): the first layer's, unused
        _affine_backward(here[g], d, a, Ws[g], need_dx, dx, dWs[g], dbs[g], work)
        if g == 0:
            break
        dz = dZ[: N * D].reshape(N, D)
        _B.act_backward(dA[: N * D], keeps[g - 1], rmasks[g - 1], dZ[: N * D])
        d = dz
        if gammas[g - 1].shape[0]:
            d = dB[: N * D].reshape(N, D)
            _B.backward(
                dz, gammas[g - 1], xcs[g - 1], xns[g - 1], stds[g - 1], d, dgammas[g - 1], dbetas[g - 1]
            )
    return y, loss


guard_cache(globals())
