"""Input checks shared by every backend.

Each function raises ``TypeError`` / ``ValueError`` whose message names the
layer, what was expected and what came, and returns the arrays in the form
the computation wants. The NumPy reference and the Numba backend both call
these, so a bad input fails the same way (and before any kernel runs).
"""

import math

import numpy as np

from . import tolerances


def _desc(a):
    a = np.asarray(a)
    return f"shape {a.shape} dtype {a.dtype}"


def shape_of(a):
    """``np.shape(a)``, read as the attribute for an ndarray (``np.shape`` costs ~0.3 us a call)."""
    return a.shape if type(a) is np.ndarray else np.shape(a)


def as_numeric(layer, name, a):
    """``a`` as an ndarray of bool/int/float; anything else is a TypeError."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{layer}: {name} must be a real numeric array, got {_desc(arr)}")
    return arr


def affine_params(layer, W, b):
    """Check ``W (D, M)`` and ``b (M,)`` as held by an Affine layer."""
    if not isinstance(W, np.ndarray) or W.dtype.kind != "f":
        raise TypeError(
            f"{layer}: W must be a floating-point ndarray, got "
            f"{type(W).__name__} {_desc(W) if isinstance(W, np.ndarray) else ''}".rstrip()
        )
    if not isinstance(b, np.ndarray) or b.dtype.kind != "f":
        raise TypeError(
            f"{layer}: b must be a floating-point ndarray, got "
            f"{type(b).__name__} {_desc(b) if isinstance(b, np.ndarray) else ''}".rstrip()
        )
    if W.ndim != 2:
        raise ValueError(f"{layer}: W must be 2-D (D, M), got {_desc(W)}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"{layer}: b must have shape ({W.shape[1]},) to match W {W.shape}, got {_desc(b)}")


def affine_input(layer, x, W):
    """``x`` as ``(N, D)``: ``(D,)`` is one sample, ``(N, ...)`` is flattened.

    Returns ``(x2, x)`` where ``x`` is the (asarray'd) original.
    """
    x = as_numeric(layer, "x", x)
    D = W.shape[0]
    if x.ndim == 0:
        raise ValueError(f"{layer}: x must be (N, {D}), (N, ...) or ({D},), got a scalar")
    if x.ndim == 2:
        x2 = x
    else:  # math.prod, not np.prod: this runs on every call, and np.prod is 20x slower
        x2 = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], math.prod(x.shape[1:]))
    if x2.shape[1] != D:
        raise ValueError(
            f"{layer}: x has {x2.shape[1]} features per sample but W expects {D} "
            f"(W {W.shape}); got x {_desc(x)}"
        )
    return x2, x


def dout_like(layer, dout, shape):
    """Check that ``dout`` matches the forward output ``shape``."""
    dout = as_numeric(layer, "dout", dout)
    if dout.shape != tuple(shape):
        raise ValueError(
            f"{layer}: dout must have the forward output's shape {tuple(shape)}, got {_desc(dout)}"
        )
    return dout


def forward_done(layer, value, what="forward"):
    """Raise if ``backward`` is called before ``forward`` stored ``value``."""
    if value is None:
        raise ValueError(f"{layer}: backward() called before {what}(); call {what} first")


def logits(layer, x):
    """Scores ``x`` as ``(N, C)`` (a 1-D ``(C,)`` is one sample)."""
    x = as_numeric(layer, "x", x)
    if x.ndim not in (1, 2):
        raise ValueError(f"{layer}: x must be (N, C) or (C,), got {_desc(x)}")
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    if x2.shape[0] == 0:
        raise ValueError(f"{layer}: the batch is empty (x {_desc(x)}); a mean loss needs N >= 1")
    if x2.shape[1] == 0:
        raise ValueError(f"{layer}: x has no classes (C = 0), got {_desc(x)}")
    return x2


def targets(layer, t, N, C, dtype):
    """Normalise the target ``t`` for ``N`` samples of ``C`` classes.

    Returns ``(labels, T)``: exactly one is not None. ``labels`` is ``(N,)``
    ``intp`` in ``[0, C)``; ``T`` is ``(N, C)`` of ``dtype`` whose rows are
    one-hot / probability distributions (non-negative, summing to 1).

    Accepted: integer labels ``(N,)`` or ``(N, 1)`` (a scalar or ``(1,)`` for
    one sample; integral floats too), or one-hot / probability rows ``(N, C)``
    (``(C,)`` for one sample).
    """
    t = as_numeric(layer, "t", t)
    if t.shape in ((N, C),) or (N == 1 and t.shape == (C,)):
        if C == 1 and t.dtype.kind in "iub":
            pass  # (N, 1) integers with C == 1: labels, handled below
        else:
            T = np.asarray(t, dtype=dtype).reshape(N, C)
            if not np.all(T >= 0):
                raise ValueError(
                    f"{layer}: one-hot / probability targets must be non-negative "
                    f"(and not NaN), got min {float(np.min(T))}"
                )
            tol = tolerances.target_sum(dtype)
            sums = T.sum(axis=1)
            bad = np.abs(sums - 1) > tol
            if np.any(bad):
                i = int(np.argmax(bad))
                raise ValueError(
                    f"{layer}: each one-hot / probability target row must sum to 1 "
                    f"(within {tol}); row {i} sums to {float(sums[i])!r}"
                )
            return None, T
    if t.shape in ((N,), (N, 1)) or (N == 1 and t.shape in ((), (1,))):
        labels = t.reshape(N)
        if labels.dtype.kind == "f":
            if not np.all(np.isfinite(labels)) or not np.all(labels == np.floor(labels)):
                raise TypeError(f"{layer}: labels must be integers, got non-integral values in {_desc(t)}")
        elif labels.dtype.kind == "b":
            raise TypeError(f"{layer}: labels must be integers, got {_desc(t)}")
        if N and (labels.min() < 0 or labels.max() >= C):
            raise ValueError(
                f"{layer}: labels must lie in [0, {C}) for {C} classes, got values in "
                f"[{labels.min()}, {labels.max()}]"
            )
        return labels.astype(np.intp, copy=False), None
    raise ValueError(
        f"{layer}: t must be labels ({N},) or ({N}, 1), or one-hot rows ({N}, {C}) "
        f"to match x with {N} samples of {C} classes; got {_desc(t)}"
    )


#: What the kernels take for "no integer labels" and, per float dtype, "no target rows".
NO_LABELS = np.empty(0, dtype=np.intp)
NO_T = {
    np.dtype(np.float32): np.empty((0, 0), np.float32),
    np.dtype(np.float64): np.empty((0, 0), np.float64),
}


def int_labels(t, N):
    """Integer labels ``t (N,)`` as a C-contiguous, writeable ``intp`` array, range NOT checked; else None.

    The common form of :func:`targets`, made kernel-ready without its
    ``min``/``max`` passes: the caller checks the range in a kernel and calls
    :func:`label_error` for the error. Values past ``intp`` (``uint64``) wrap to
    negative, so the range check still rejects them.
    """
    if type(t) is np.ndarray and t.shape == (N,) and t.dtype.kind in "iu":
        if t.dtype == np.intp and t.flags.c_contiguous and t.flags.writeable:
            return t
        return np.array(t, np.intp)
    return None


def kernel_targets(layer, t, N, C, dtype):
    """:func:`targets` made kernel-ready: ``(labels or None, T or None, labels_c, T_c)``.

    ``labels_c`` (``intp``) or ``T_c`` (``dtype``, float32 or float64) is the
    target as a C-contiguous array, the other one an empty placeholder
    (:data:`NO_LABELS`, :data:`NO_T`). The two common forms skip :func:`targets`'
    NumPy passes and are NOT checked here: integer labels ``(N,)`` (:func:`int_labels`)
    and float rows ``(N, C)``. The caller checks them in one kernel pass
    (``kernels.softmax_loss.targets_suspect``) and, for a suspect target, calls
    :func:`label_error` (labels) or :func:`targets` (rows), which raise the error.
    """
    lab = int_labels(t, N)
    if lab is not None:
        return lab, None, lab, NO_T[dtype]
    if type(t) is np.ndarray and t.shape == (N, C) and t.dtype.kind == "f":
        T = np.ascontiguousarray(t, dtype=dtype)  # targets()' np.asarray(t, dtype), contiguous
        return None, T, NO_LABELS, T
    labels, T = targets(layer, t, N, C, dtype)
    if labels is not None:
        return labels, None, np.ascontiguousarray(labels, dtype=np.intp), NO_T[dtype]
    return None, T, NO_LABELS, np.ascontiguousarray(T, dtype=dtype)


def label_error(layer, t, N, C, dtype):
    """Raise :func:`targets`' error for labels that a kernel found outside ``[0, C)``."""
    targets(layer, t, N, C, dtype)
    raise AssertionError(f"{layer}: a kernel rejected labels that the checks accept")


def perturbable(name, x):
    """``x`` must be a writeable float ndarray to be perturbed in place."""
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"numerical_gradient: {name} must be an ndarray that f reads (it is "
            f"perturbed in place), got {type(x).__name__}"
        )
    if x.dtype.kind != "f":
        raise TypeError(
            f"numerical_gradient: {name} must be floating point (an integer array "
            f"cannot hold x + h), got {_desc(x)}"
        )
    if not x.flags.writeable:
        raise ValueError(f"numerical_gradient: {name} is read-only; it is perturbed in place")


def learning_rate(where, lr):
    """``lr`` must be one finite real number: a Python ``int``/``float``, a NumPy integer or
    floating scalar, or a 0-d array of one. Checked before any parameter is touched, so a bad
    ``lr`` never leaves a net half updated."""
    real = (
        isinstance(lr, (int, float, np.integer, np.floating)) and not isinstance(lr, (bool, np.bool_))
    ) or (type(lr) is np.ndarray and lr.ndim == 0 and lr.dtype.kind in "iuf")
    if not real:
        what = (
            f"an array of shape {lr.shape} ({lr.dtype})"
            if isinstance(lr, np.ndarray)
            else f"{type(lr).__name__} {lr!r}"
        )
        raise TypeError(f"{where}: lr must be one real number (an int or float), got {what}")
    if not math.isfinite(float(lr)):
        raise ValueError(f"{where}: lr must be finite, got {float(lr)!r}")


# --- chapter 6: Dropout, BatchNormalization, optimizers ---------------------------------------


def fraction(where, name, value, allow_one=False):
    """``value`` must be one real number in ``[0, 1)`` (``[0, 1]`` with ``allow_one``); returns a float.

    Returned as a Python float so that it keeps float32 arithmetic float32
    (a NumPy float64 scalar would promote float32 arrays under NEP 50).
    """
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    if not real:
        raise TypeError(f"{where}: {name} must be one real number, got {type(value).__name__} {value!r}")
    value = float(value)
    ok = 0.0 <= value <= 1.0 if allow_one else 0.0 <= value < 1.0
    if not ok:  # NaN fails too
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{where}: {name} must lie in {interval}, got {value!r}")
    return value


def batchnorm_params(layer, gamma, beta):
    """``gamma`` and ``beta`` must be floating-point ndarrays of one same 1-D shape ``(D,)``."""
    for name, a in (("gamma", gamma), ("beta", beta)):
        if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
            raise TypeError(
                f"{layer}: {name} must be a floating-point ndarray, got "
                f"{type(a).__name__} {_desc(a) if isinstance(a, np.ndarray) else ''}".rstrip()
            )
        if a.ndim != 1:
            raise ValueError(f"{layer}: {name} must be 1-D (D,), got {_desc(a)}")
    if beta.shape != gamma.shape:
        raise ValueError(f"{layer}: beta must have gamma's shape {gamma.shape}, got {_desc(beta)}")


def batchnorm_running(layer, running_mean, running_var, D):
    """The running statistics: both None, or both numeric ``(D,)``; returned as float arrays."""
    if running_mean is None and running_var is None:
        return None, None
    if running_mean is None or running_var is None:
        raise ValueError(f"{layer}: give both running_mean and running_var, or neither")
    out = []
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        a = as_numeric(layer, name, a)
        if a.shape != (D,):
            raise ValueError(f"{layer}: {name} must have shape ({D},) to match gamma, got {_desc(a)}")
        out.append(a if a.dtype.kind == "f" else a.astype(np.float64))
    return tuple(out)


def batchnorm_input(layer, x, D, train):
    """``x (N, D)`` or ``(N, ...)`` with ``D`` values per sample, as a float ``(N, D)`` array."""
    x = as_numeric(layer, "x", x)
    if x.ndim < 2:
        raise ValueError(
            f"{layer}: x must be (N, {D}) or (N, ...) with {D} values per sample, got {_desc(x)}"
        )
    # math.prod, not reshape(N, -1): -1 cannot be inferred for an empty batch
    features = math.prod(x.shape[1:])
    if features != D:
        raise ValueError(f"{layer}: x must have D={D} features per sample, got {_desc(x)}")
    if train and x.shape[0] == 0:
        raise ValueError(
            f"{layer}: the batch is empty (x {_desc(x)}); training mode needs N >= 1 to take batch statistics"
        )
    x2 = x.reshape(x.shape[0], D)
    return x2 if x2.dtype.kind == "f" else x2.astype(np.float64)


def train_forward_done(layer, value, last_train):
    """Raise unless the last ``forward`` was a training one (``backward`` needs its batch state)."""
    forward_done(layer, value, "forward(x, train_flg=True)")
    if not last_train:
        raise ValueError(
            f"{layer}: backward() after a test-mode forward (train_flg=False); backward needs "
            f"the state of forward(x, train_flg=True)"
        )


def optimizer_step(where, params, grads):
    """``grads`` must hold, for every key of ``params``, a numeric value of that parameter's shape;
    parameters must be float arrays (updated in place) or real numbers. Checked before any update."""
    if not hasattr(params, "keys") or not hasattr(grads, "keys"):
        raise TypeError(
            f"{where}: params and grads must be dicts, got {type(params).__name__} and {type(grads).__name__}"
        )
    for key in params.keys():
        p = params[key]
        if key not in grads:
            raise ValueError(f"{where}: grads has no entry {key!r} (params has {list(params.keys())})")
        if isinstance(p, np.ndarray):
            if p.dtype.kind != "f":
                raise TypeError(
                    f"{where}: params[{key!r}] must be a floating-point array (it is updated in place), "
                    f"got {_desc(p)}"
                )
        elif not isinstance(p, (int, float, np.integer, np.floating)) or isinstance(p, (bool, np.bool_)):
            raise TypeError(
                f"{where}: params[{key!r}] must be a float ndarray or a real number, got {type(p).__name__}"
            )
        g = grads[key]
        g_arr = g if type(g) is np.ndarray else np.asarray(g)  # the usual case without asarray
        if g_arr.dtype.kind not in "biuf":
            raise TypeError(f"{where}: grads[{key!r}] must be real numeric, got {_desc(g)}")
        if g_arr.shape != shape_of(p):
            raise ValueError(
                f"{where}: grads[{key!r}] has shape {np.shape(g)}, params[{key!r}] has shape {np.shape(p)}"
            )
