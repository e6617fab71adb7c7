"""The notebook's gradient check, as a report: numerical gradient versus backprop.

A central difference ``(f(w + h) - f(w - h)) / 2h`` is only a derivative
where ``f`` is smooth on ``[w - h, w + h]``. ReLU is not: when a perturbation
moves a hidden unit's pre-activation across 0 for some sample, the two
losses sit on different linear pieces and the quotient is no gradient at
all, however right the backprop is. Such entries ("kink crossed") are found
(:func:`kink_masks`), reported with their raw differences, and left out of the
verdict, as careful gradient-check guides advise; the verdict counts the clean
entries only.

Max pooling has kinks too: where ``+-h`` changes which entry of a window is
its maximum (near-ties, common in a narrow, freshly initialised convnet).

Finding them: for the two-layer net, from one forward pass (the move of each
pre-activation is known in closed form); for the chapter-6 to 8 nets
(:class:`scratchprop.layernet.LayerNet`: ReLU layers anywhere, BatchNorm,
Dropout, Convolution, Pooling), by running the forward pass at ``w + h`` and
``w - h`` for every entry of every parameter upstream of a ReLU or Pooling
layer, with the Dropout masks of the numerical gradient, and comparing every
ReLU layer's mask and every Pooling layer's ``arg_max``: an entry is a kink
when one of them differs. That costs as many forward passes as the numerical
gradient of those parameters.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from . import tolerances


@dataclass
class ParamDiff:
    """How one parameter's backprop gradient differs from its numerical gradient."""

    name: str
    shape: tuple
    mean_abs: float
    max_abs: float
    max_rel: float
    worst_index: tuple
    numerical_at_worst: float
    backprop_at_worst: float
    passed: bool
    kinks: int = 0  #: entries whose +-h perturbation crosses a ReLU kink (not in the verdict)
    kink_max_abs: float = 0.0  #: their largest |numerical - backprop|
    kink_at: tuple = ()  #: up to five of them, as indices


@dataclass
class GradcheckReport:
    """Result of :func:`gradcheck`; ``str(report)`` prints the notebook's lines and a table."""

    params: list = field(default_factory=list)
    numerical_time: float = 0.0
    backprop_time: float = 0.0
    loss_evaluations: int = 0
    params_restored: bool = True
    dtype: str = "float64"
    backend: str = "numpy"
    rtol: float = 0.0
    floor: float = 0.0
    warmup: bool = False
    kinks_checked: bool = False  #: whether kink detection covered this net (see :func:`kink_masks`)
    kink_method: str = ""  #: "closed form" (TwoLayerNet) or "masks" (LayerNet: ReLU masks at w +- h)
    kink_pooling: bool = False  #: whether the "masks" compared max-pooling layers' arg_max too
    seed: object = None  #: the seed the caller reports (the CLI's net seed)

    @property
    def ratio(self):
        """How many times slower the numerical gradient is than backprop."""
        return self.numerical_time / self.backprop_time if self.backprop_time > 0 else float("inf")

    @property
    def passed(self):
        """Every parameter within tolerance and every parameter restored bit-exactly."""
        return self.params_restored and all(p.passed for p in self.params)

    def __str__(self):
        lines = [f"numerical time: {self.numerical_time:.6g} s", f"backprop time: {self.backprop_time:.6g} s"]
        lines += [f"{p.name}: {p.mean_abs:.2g}" for p in self.params]
        lines.append("")
        lines.append(
            f"backend {self.backend}, {self.dtype}; {self.loss_evaluations} loss evaluations; "
            f"numerical / backprop = {self.ratio:.3g}x"
            f"{' (times after one untimed warm-up call)' if self.warmup else ''}"
        )
        lines.append(
            f"{'param':<6} {'shape':<12} {'mean |d|':>10} {'max |d|':>10} {'max rel':>10} "
            f"{'worst at':<12} {'kinks':>5} {'ok':>4}"
        )
        for p in self.params:
            lines.append(
                f"{p.name:<6} {str(p.shape):<12} {p.mean_abs:>10.2e} {p.max_abs:>10.2e} "
                f"{p.max_rel:>10.2e} {str(p.worst_index):<12} {p.kinks:>5} "
                f"{'yes' if p.passed else 'NO':>4}"
            )
        lines.append(f"tolerance: max rel <= {self.rtol:g} (relative to max(|num|, |bp|, {self.floor:g}))")
        if not self.kinks_checked:
            lines.append(
                "kinks: not checked (kink detection covers the Affine -> Relu -> Affine net and the "
                "LayerNet nets)"
            )
        elif self.kink_method == "masks":
            none = "" if any(p.kinks for p in self.params) else "; none crossed"
            pools = " and every Pooling layer's arg_max" if self.kink_pooling else ""
            lines.append(f"kinks: found by comparing every ReLU layer's mask{pools} at w + h and w - h{none}")
        elif not any(p.kinks for p in self.params):
            lines.append("kinks: none (no +-h perturbation moves a ReLU input across 0)")
        for p in self.params:
            if p.kinks:
                at = ", ".join(str(i) for i in p.kink_at) + (", ..." if p.kinks > len(p.kink_at) else "")
                what = "entry whose" if p.kinks == 1 else "entries whose"
                pools = " or a pooling window's maximum to another entry" if self.kink_pooling else ""
                lines.append(
                    f"kinks: {p.name} has {p.kinks} {what} +-h perturbation moves a ReLU "
                    f"input across 0{pools}, left out of the verdict (max |d| there "
                    f"{p.kink_max_abs:.2e}): {at}"
                )
        lines.append(f"parameters restored bit-exactly: {'yes' if self.params_restored else 'NO'}")
        if self.seed is not None:
            lines.append(f"seed: {self.seed}")
        lines.append(f"gradient check {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def compare(name, numerical, backprop, rtol, floor, kink=None):
    """A :class:`ParamDiff` for one parameter's two gradients.

    ``kink``: a boolean mask of the entries whose central difference crosses a
    kink; they are reported apart and left out of the verdict and the clean
    statistics.
    """
    num = np.asarray(numerical, dtype=np.float64)
    bp = np.asarray(backprop, dtype=np.float64)
    diff = np.abs(num - bp)
    rel = diff / np.maximum(np.maximum(np.abs(num), np.abs(bp)), floor)
    kink = np.zeros(diff.shape, bool) if kink is None else np.asarray(kink, bool)
    clean_rel = np.where(kink, 0.0, rel)
    clean = ~kink
    worst = np.unravel_index(int(np.argmax(clean_rel)), rel.shape) if rel.size else ()
    max_rel = float(clean_rel[worst]) if rel.size else 0.0
    kink_idx = np.argwhere(kink)
    return ParamDiff(
        name=name,
        shape=tuple(num.shape),
        mean_abs=float(np.mean(diff[clean])) if clean.any() else 0.0,
        max_abs=float(np.max(diff[clean])) if clean.any() else 0.0,
        max_rel=max_rel,
        worst_index=tuple(int(i) for i in worst),
        numerical_at_worst=float(num[worst]) if num.size else 0.0,
        backprop_at_worst=float(bp[worst]) if bp.size else 0.0,
        passed=bool(np.all(np.isfinite(clean_rel))) and max_rel <= rtol,
        kinks=int(kink.sum()),
        kink_max_abs=float(np.max(diff[kink])) if kink.any() else 0.0,
        kink_at=tuple(tuple(int(i) for i in ix) for ix in kink_idx[:5]),
    )


def kink_masks(net, x, h, random_state=None):
    """``{param: bool mask}`` of the entries whose ``+-h`` perturbation crosses a ReLU kink, or None.

    A :class:`scratchprop.layernet.LayerNet` (the chapter-6 to 8 nets): see
    :func:`layer_kink_masks` (``random_state``: the ``np.random`` state the
    numerical gradient started from, for Dropout's masks).

    For the book's two-layer structure (layers ``Affine1, Relu1, Affine2``
    holding ``params["W1"], ["b1"]``): moving ``W1[i, j]`` by ``h`` moves the
    pre-activation ``a1[n, j]`` by ``h * x[n, i]``, and ``b1[j]`` moves it by
    ``h``; an entry is a kink when, for some sample, that move reaches 0 from
    ``a1`` (with a margin of a few roundings of ``a1``, and of the perturbed
    value in the parameters' dtype). ``W2`` and ``b2`` feed no ReLU: never.
    Any other structure: None (not checked).
    """
    from .layernet import LayerNet

    if isinstance(net, LayerNet):
        return layer_kink_masks(net, x, h, random_state)
    layers = getattr(net, "layers", None)
    params = getattr(net, "params", None)
    try:
        names = list(layers)
        A1 = layers["Affine1"]
        W1, b1 = params["W1"], params["b1"]
    except (TypeError, KeyError):
        return None
    if names != ["Affine1", "Relu1", "Affine2"] or A1.W is not W1 or A1.b is not b1:
        return None
    W1f, b1f = np.asarray(W1, np.float64), np.asarray(b1, np.float64)
    x2 = np.asarray(x, np.float64).reshape(-1, W1f.shape[0])
    a1 = x2 @ W1f + b1f
    eps = float(np.finfo(np.result_type(W1.dtype, np.float32)).eps)
    margin = 64 * eps * (np.abs(x2) @ np.abs(W1f) + np.abs(b1f))  # roundings of a1
    reach = np.abs(a1) - margin  # (N, H)
    step_w = abs(h) * (1 + 1e-6) + 2 * eps * np.abs(W1f)  # the move of W1 as stored
    step_b = abs(h) * (1 + 1e-6) + 2 * eps * np.abs(b1f)
    w1 = np.zeros(W1f.shape, bool)
    for n in range(x2.shape[0]):
        ax = np.abs(x2[n])[:, None]
        w1 |= (ax > 0) & (ax * step_w >= reach[n][None, :])
    b1m = np.any(step_b[None, :] >= reach, axis=0)
    out = {"W1": w1, "b1": b1m}
    for k in params:
        if k not in out:
            out[k] = np.zeros(np.shape(params[k]), bool)
    return out


def _is_relu(layer):
    return type(layer).__name__ == "Relu" and hasattr(layer, "mask")


def _is_pooling(layer):
    return type(layer).__name__ == "Pooling" and hasattr(layer, "arg_max")


def _kink_state(layer):
    """What a kink changes in ``layer``: a ReLU's mask, a max pooling's ``arg_max``."""
    return layer.mask if _is_relu(layer) else layer.arg_max


def layer_kink_masks(net, x, h, random_state=None):
    """Kink masks of a LayerNet, found by running it: ``{param: bool mask}``.

    Each entry of a parameter held by a layer before the last ReLU or Pooling
    layer is set to ``w + h`` and to ``w - h`` exactly as the numerical
    gradient sets it, the net runs forward in training mode from
    ``random_state`` (the same Dropout masks as the numerical gradient;
    default: the current state), and the entry is a kink when some ReLU
    layer's mask or some Pooling layer's ``arg_max`` differs between the two.
    Parameters after the last of them (the output Affine) feed none: never.
    The parameters, BatchNorm's running statistics and ``np.random`` are left
    as they were.
    """
    names = list(net.layers)
    watched = [name for name in names if _is_relu(net.layers[name]) or _is_pooling(net.layers[name])]
    out = {k: np.zeros(np.shape(v), bool) for k, v in net.params.items()}
    if not watched:
        return out
    last = max(names.index(name) for name in watched)
    state = np.random.get_state() if random_state is None else random_state
    outer = np.random.get_state()
    stats = {
        name: (layer.running_mean, layer.running_var)
        for name, layer in net.layers.items()
        if hasattr(layer, "running_mean")
    }

    def masks():
        np.random.set_state(state)
        net.predict(x, train_flg=True)
        return [np.array(_kink_state(net.layers[name])) for name in watched]

    try:
        for key, (layer_name, _) in net.param_owner.items():
            if names.index(layer_name) > last:
                continue
            p, kink = net.params[key], out[key]
            for idx in np.ndindex(p.shape):
                tmp_val = p[idx]
                p[idx] = tmp_val + h
                plus = masks()
                p[idx] = tmp_val - h
                minus = masks()
                p[idx] = tmp_val
                kink[idx] = any(not np.array_equal(a, b) for a, b in zip(plus, minus))
    finally:
        np.random.set_state(outer)
        for name, (mean, var) in stats.items():
            net.layers[name].running_mean, net.layers[name].running_var = mean, var
    return out


def gradcheck(net, x, t, h=1e-4, *, warmup=False, seed=None):
    """Compare ``net.numerical_gradient(x, t)`` with ``net.gradient(x, t)``.

    Parameters
    ----------
    net : TwoLayerNet, MultiLayerNet, MultiLayerNetExtend (or anything with
        ``params``, ``gradient`` and ``numerical_gradient``). For a net with
        Dropout both gradients use the same masks: the numerical gradient
        restores ``np.random``, and backprop then draws from the same state.
    x, t : the batch and its labels / one-hot targets.
    h : float
        Central-difference step.
    warmup : bool
        Call both gradients once, untimed, before timing them (a JIT backend
        otherwise times its compile or cache load on the first call).
    seed : optional
        Recorded in the report (the seed that made the net), so a failure can be rerun.

    Returns
    -------
    GradcheckReport
        Per-parameter mean / max absolute difference, max relative error and
        where it is, both wall times and their ratio, the number of loss
        evaluations (two per parameter element), whether the parameters came
        back bit-exactly, and ``passed`` under :mod:`scratchprop.tolerances`
        over the entries whose central difference crosses no ReLU kink (the
        others are counted and shown apart; see :func:`kink_masks`).
    """
    from .layernet import LayerNet

    keys = list(getattr(net, "params_key", net.params.keys()))
    dtype = np.result_type(*[net.params[k] for k in keys])
    tol = tolerances.gradcheck(dtype)
    before = {k: net.params[k].copy() for k in keys}
    numerical = net.numerical_gradient if h == 1e-4 else (lambda x, t: net.numerical_gradient(x, t, h))
    if warmup:
        numerical(x, t)
        net.gradient(x, t)

    random_state = np.random.get_state()  # Dropout's masks, for both gradients and the kink check
    start = time.perf_counter()
    grad_numerical = numerical(x, t)
    numerical_time = time.perf_counter() - start
    restored = all(np.array_equal(before[k].view(np.uint8), net.params[k].view(np.uint8)) for k in keys)

    start = time.perf_counter()
    grad_backprop = net.gradient(x, t)
    backprop_time = time.perf_counter() - start

    backend = getattr(net, "backend_name", "custom")
    kinks = kink_masks(net, x, h, random_state)
    return GradcheckReport(
        params=[
            compare(
                k,
                grad_numerical[k],
                grad_backprop[k],
                tol["rtol"],
                tol["floor"],
                None if kinks is None else kinks.get(k),
            )
            for k in keys
        ],
        numerical_time=numerical_time,
        backprop_time=backprop_time,
        loss_evaluations=2 * sum(net.params[k].size for k in keys),
        params_restored=restored,
        dtype=str(np.dtype(dtype)),
        backend=str(backend),
        rtol=tol["rtol"],
        floor=tol["floor"],
        warmup=warmup,
        kinks_checked=kinks is not None,
        kink_method="" if kinks is None else "masks" if isinstance(net, LayerNet) else "closed form",
        kink_pooling=isinstance(net, LayerNet) and any(map(_is_pooling, net.layers.values())),
        seed=seed,
    )
