"""The Numba backend's fast numerical gradient of a :class:`~scratchprop.TwoLayerNet`.

:func:`net_numerical_gradient` is the hook ``TwoLayerNet.numerical_gradient``
looks for on its backend. It computes the same central differences as the
NumPy reference -- every parameter perturbed by ``+h`` and ``-h`` (the same
rounded perturbed value the reference stores), the loss of the whole batch
re-evaluated, ``(f(+h) - f(-h)) / (2 * h)`` -- but evaluates each perturbed
loss incrementally from cached activations in ``scratchprop.kernels.numgrad``
instead of running a full forward pass 2 * 79,510 times.

The generic ``numerical_gradient(f, x, h)`` for an arbitrary Python callable
``f`` cannot be compiled (``f`` is arbitrary Python that reads ``x``); the
Numba backend uses the reference's loop for it, and so does this hook for a
net it cannot take apart (see below).

Agreement with the reference
----------------------------
* float64: within ``1e-9`` absolute (in practice ~1e-11: both evaluate each
  loss to a few roundings, ~1e-15, and the difference is divided by ``2h``).
* float32 (and float16): the reference computes every loss in float32, so its
  numerical gradient is a multiple of ``ulp(loss) / (2h)`` (``1.2e-3`` for a
  loss in ``[2, 4)``). This hook evaluates the losses in float64 and rounds
  each to the net's compute dtype before the same float32 difference and
  division, so it gives numbers of the same kind; each of its losses and the
  reference's differ by a rounding or two (the reference's float32 sums
  round at every step), so the two gradients agree within
  :func:`float32_tolerance` ``= 8 * eps * max(1, |loss|) / (2|h|)``, i.e.
  eight steps of the float32 loss grid divided by ``2h`` (a margin over the
  largest seen, ``tests/test_numgrad.py``). Where the scores are float64 (float32
  parameters with float64 inputs) the losses are float64 and the gradients
  agree to ``1e-9`` before the final rounding to float32.

Fallbacks
---------
The reference loop (``numerical_gradient(lambda W: net.loss(x, t), param, h)``
per parameter, as ``TwoLayerNet.numerical_gradient`` does without the hook)
runs instead when the net is not the standard structure (layers other than
``Affine1, Relu1, Affine2`` of the backend holding the ``params`` arrays and
a ``SoftmaxWithLoss``, an overridden ``loss`` / ``predict``, aliased
parameters), when ``h`` is not a finite non-zero real scalar, when a dtype is
wider than float64, or when an input, parameter or base activation is not
finite. Bad inputs raise the reference's errors (same checks from
``scratchprop._validate``, same order) before any kernel runs; the parameters
are never written.
"""

import numpy as np

from . import _validate as check
from . import numpy as _ref
from ._numba_net import standard_params

__all__ = ["net_numerical_gradient", "float32_tolerance"]

_KEYS = ("W1", "b1", "W2", "b2")
_NCHUNKS = 16  # W1's rows in fixed blocks, whatever the thread count


def float32_tolerance(loss, h=1e-4, dtype=np.float32):
    """Documented bound on ``|this - reference|`` for a net whose scores are ``dtype`` < float64.

    ``8 * eps(dtype) * max(1, |loss|) / (2 |h|)``: both implementations round
    each of the two losses of a central difference to ``dtype`` (the
    reference at every step of its sums), so their differences can be a few
    steps of the loss grid apart (``eps * |loss|`` is at least one step),
    and the difference is divided by ``2h``. Measured: at most 2.8 steps.
    """
    eps = float(np.finfo(dtype).eps)
    return 8.0 * eps * max(1.0, abs(float(loss))) / (2.0 * abs(float(h)))


def net_numerical_gradient(net, x, t, h=1e-4):
    """Central-difference gradient of ``net.loss(x, t)`` for ``W1, b1, W2, b2``.

    The same numbers as ``TwoLayerNet(backend="numpy").numerical_gradient(x,
    t, h)`` (see the module docstring for the tolerance), three to four
    orders of magnitude faster. Returns a dict of arrays with each parameter's
    shape and dtype; the parameters are left bit-exactly as they were (they
    are not written at all).
    """
    if not _fast_path_ok(net, h):
        return _reference_loop(net, x, t, h)
    prep = _prepare(net, x, t, h)
    if prep is None:
        return _reference_loop(net, x, t, h)
    return _run(net, prep, h)


# --------------------------------------------------------------------------- checks


def _fast_path_ok(net, h):
    """True when ``net`` is the standard 2-layer net of its backend and ``h`` is usable."""
    if isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, float, np.integer, np.floating)):
        return False
    if not np.isfinite(h) or h == 0 or np.dtype(type(h)).itemsize > 8:
        return False
    if tuple(getattr(net, "params_key", ())) != _KEYS:
        return False
    # the loss is computed from the parameters alone: the reference's layers or ours
    arrays = standard_params(net, _layer_classes(net))
    if arrays is None:
        return False
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return True  # let the reference's checks raise their errors
    for a in range(4):
        for b in range(a + 1, 4):
            if np.may_share_memory(arrays[a], arrays[b]):
                return False
    return True


def _layer_classes(net):
    """The net's backend's ``(Affine, Relu, SoftmaxWithLoss)`` if it is ours (numpy or numba)."""
    from . import _numba_layers

    B = getattr(net, "backend", None)
    for ours in (_ref, _numba_layers):
        if getattr(B, "Affine", None) is ours.Affine:
            return ours.Affine, ours.Relu, ours.SoftmaxWithLoss
    return (None, None, None)


def _reference_loop(net, x, t, h):
    """What ``TwoLayerNet.numerical_gradient`` does without a hook: the reference loop."""
    numerical_gradient = getattr(net.backend, "numerical_gradient", _ref.numerical_gradient)

    def loss_W(W):
        return net.loss(x, t)

    return {k: numerical_gradient(loss_W, net.params[k], h) for k in net.params_key}


def _validate(P, x, t):
    """The reference's checks in the reference's order; returns ``x2, score dtype, labels, T``.

    The reference first checks that ``W1`` is perturbable, then evaluates the
    loss (``Affine``, ``Relu``, ``Affine``, ``SoftmaxWithLoss`` checks), and
    checks each further parameter when its turn comes.
    """
    W1, b1, W2, b2 = (P[k] for k in _KEYS)
    check.perturbable("x", W1)
    check.affine_params("Affine", W1, b1)
    x2, x = check.affine_input("Affine", x, W1)
    hidden_dtype = np.result_type(x2.dtype, W1.dtype, b1.dtype)
    hidden_shape = (W1.shape[1],) if x.ndim == 1 else (x2.shape[0], W1.shape[1])
    check.affine_params("Affine", W2, b2)
    hidden = np.empty(hidden_shape, hidden_dtype)
    check.affine_input("Affine", hidden, W2)
    score_dtype = np.result_type(hidden_dtype, W2.dtype, b2.dtype)
    scores_shape = (W2.shape[1],) if x.ndim == 1 else (x2.shape[0], W2.shape[1])
    y2 = check.logits("SoftmaxWithLoss", np.empty(scores_shape, score_dtype))
    if score_dtype.kind != "f":
        score_dtype = np.dtype(np.float64)
    N, C = y2.shape
    labels, T = check.targets("SoftmaxWithLoss", t, N, C, score_dtype)
    for k in ("b1", "W2", "b2"):
        check.perturbable("x", P[k])
    return x2, score_dtype, labels, T


# --------------------------------------------------------------------------- preparation

_LIMIT = 1e300  # parameters beyond this could overflow when perturbed: reference loop


def _perturbed(W, h):
    """``W + h`` and ``W - h`` exactly as the reference stores them (``W[idx] = tmp + h``)."""
    return np.asarray(W + h).astype(W.dtype, copy=False), np.asarray(W - h).astype(W.dtype, copy=False)


def _in_range(a):
    return a.size == 0 or (-_LIMIT <= a.min() and a.max() <= _LIMIT)  # False for NaN


def _prepare(net, x, t, h):
    """Validate, then cache the float64 base activations; None means "use the reference loop"."""
    from .kernels import numgrad as K

    P = net.params
    x2, ct, labels, T = _validate(P, x, t)
    if ct.itemsize > 8 or any(P[k].dtype.itemsize > 8 for k in _KEYS):
        return None
    if isinstance(h, (int, np.integer)) and abs(int(h)) > 2**53:
        return None
    f64 = np.float64
    W1, b1, W2, b2 = (np.ascontiguousarray(P[k], dtype=f64) for k in _KEYS)
    if not all(_in_range(a) for a in (W1, b1, W2, b2)):
        return None
    xf = np.ascontiguousarray(x2, dtype=f64)
    if not np.isfinite(xf).all():
        return None
    N, C = xf.shape[0], W2.shape[1]
    if labels is not None:
        Tf = np.zeros((N, C))
        Tf[np.arange(N), labels] = 1.0
    else:
        Tf = np.ascontiguousarray(T, dtype=f64)

    z1 = np.dot(xf, W1)
    a1 = z1 + b1
    hb = a1.copy()
    hb[a1 <= 0] = 0
    z2 = np.dot(hb, W2)
    s = z2 + b2
    if not np.isfinite(s).all():
        return None
    if ct.itemsize < 8:  # the reference computes in ct: stay well inside its range
        lim = float(np.finfo(ct).max) * 1e-3
        if np.abs(a1).max() > lim or np.abs(s).max() > lim:
            return None
    sh = s - s.max(axis=1, keepdims=True)
    E = np.exp(sh)
    m0 = E.sum(axis=1)
    log_m0 = np.log(m0)
    p = E / m0[:, None]
    tsum = Tf.sum(axis=1)
    Bsum = float((tsum * log_m0 - (Tf * sh).sum(axis=1)).sum())
    TW = np.dot(Tf, W2.T)
    wmax = np.abs(W2).max(axis=1)
    kappa = np.empty((N, K.R_TERMS, W2.shape[0]))
    K.series_coefficients(p, W2, kappa)
    kappa1 = np.empty((N, K.R_TERMS, C))
    K.series_coefficients(p, np.eye(C), kappa1)
    if not (np.isfinite(Bsum) and np.isfinite(kappa).all() and np.isfinite(TW).all()):
        return None

    pert = {}
    for k, Wf in zip(_KEYS, (W1, b1, W2, b2)):
        if P[k].dtype == f64:
            pert[k] = (Wf, Wf, Wf, True)  # the kernel adds h itself: the same float64 rounding
        else:
            Wp, Wm = _perturbed(P[k], h)
            Wp, Wm = np.ascontiguousarray(Wp, dtype=f64), np.ascontiguousarray(Wm, dtype=f64)
            if not (np.isfinite(Wp).all() and np.isfinite(Wm).all()):
                return None
            pert[k] = (Wf, Wp, Wm, False)
    return dict(
        K=K,
        ct=ct,
        xf=xf,
        z1=z1,
        a1=a1,
        hb=hb,
        z2=z2,
        s=s,
        sh=sh,
        p=p,
        log_m0=log_m0,
        T=Tf,
        tsum=tsum,
        Bsum=Bsum,
        TW=TW,
        wmax=wmax,
        kappa=kappa,
        kappa1=kappa1,
        pert=pert,
        W2=W2,
    )


def _run(net, prep, h, force_exact=False):
    """Run the kernels and form ``(f(+h) - f(-h)) / (2 * h)`` in the reference's dtypes.

    Where the reference's arithmetic is float64 throughout (float64 parameters
    and scores) the kernels form the quotient themselves; otherwise they
    return both losses and NumPy rounds them to the score dtype and divides
    exactly as the reference does.
    """
    from .threads import NUMGRAD_MIN_ELEMENTS, parallel_region

    K, ct, pert = prep["K"], prep["ct"], prep["pert"]
    hd = float(h)
    two_h = float(2 * h)
    out, pending = {}, {}
    for k in _KEYS:
        param = net.params[k]
        if ct == np.float64 and param.dtype == np.float64:
            out[k] = np.empty_like(param)
            pending[k] = (out[k], out[k], True)
        else:
            pending[k] = (np.empty(param.shape), np.empty(param.shape), False)
    c = prep
    N, D = c["xf"].shape
    H, C = c["W2"].shape
    W, Wp, Wm, add = pert["W1"]
    o0, o1, direct = pending["W1"]
    args = (
        c["xf"],
        W,
        Wp,
        Wm,
        add,
        hd,
        c["a1"],
        c["hb"],
        c["kappa"],
        c["wmax"],
        c["sh"],
        c["p"],
        c["W2"],
        c["TW"],
        c["tsum"],
        c["log_m0"],
        c["Bsum"],
        o0,
        o1,
        two_h,
        direct,
    )
    with parallel_region(N * D * H, NUMGRAD_MIN_ELEMENTS) as threaded:
        if threaded:  # fixed row blocks: the same bits as the serial kernel
            K.grad_w1(*args, min(_NCHUNKS, D), force_exact)
        else:
            K.grad_w1_serial(*args, force_exact)
    W, Wp, Wm, add = pert["b1"]
    o0, o1, direct = pending["b1"]
    K.grad_b1(
        c["z1"],
        W,
        Wp,
        Wm,
        add,
        hd,
        c["hb"],
        c["sh"],
        c["p"],
        c["W2"],
        c["TW"],
        c["tsum"],
        c["log_m0"],
        c["Bsum"],
        o0,
        o1,
        two_h,
        direct,
    )
    W, Wp, Wm, add = pert["W2"]
    o0, o1, direct = pending["W2"]
    K.grad_w2(
        W,
        Wp,
        Wm,
        add,
        hd,
        c["hb"],
        c["kappa1"],
        c["sh"],
        c["p"],
        c["T"],
        c["tsum"],
        c["log_m0"],
        c["Bsum"],
        o0,
        o1,
        two_h,
        direct,
        force_exact,
    )
    W, Wp, Wm, add = pert["b2"]
    o0, o1, direct = pending["b2"]
    K.grad_b2(
        c["z2"],
        c["s"],
        W,
        Wp,
        Wm,
        add,
        hd,
        c["kappa1"],
        c["sh"],
        c["p"],
        c["T"],
        c["tsum"],
        c["log_m0"],
        c["Bsum"],
        o0,
        o1,
        two_h,
        direct,
        force_exact,
    )

    for k in _KEYS:
        o0, o1, direct = pending[k]
        if not direct:
            # the reference: fxh1, fxh2 are losses in ct; grad[idx] = (fxh1 - fxh2) / (2 * h)
            g = (o0.astype(ct, copy=False) - o1.astype(ct, copy=False)) / (2 * h)
            out[k] = np.empty_like(net.params[k])
            np.copyto(out[k], g, casting="unsafe")
    return {k: out[k] for k in _KEYS}
