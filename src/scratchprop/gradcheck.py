"""The notebook's gradient check, as a report: numerical gradient versus backprop."""
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

    @property
    def ratio(self):
        """How many times slower the numerical gradient is than backprop."""
        return self.numerical_time / self.backprop_time if self.backprop_time > 0 else float("inf")

    @property
    def passed(self):
        """Every parameter within tolerance and every parameter restored bit-exactly."""
        return self.params_restored and all(p.passed for p in self.params)

    def __str__(self):
        lines = [f"numerical time: {self.numerical_time:.6g} s",
                 f"backprop time: {self.backprop_time:.6g} s"]
        lines += [f"{p.name}: {p.mean_abs:.2g}" for p in self.params]
        lines.append("")
        lines.append(f"backend {self.backend}, {self.dtype}; {self.loss_evaluations} loss evaluations; "
                     f"numerical / backprop = {self.ratio:.3g}x"
                     f"{' (times after one untimed warm-up call)' if self.warmup else ''}")
        lines.append(f"{'param':<6} {'shape':<12} {'mean |d|':>10} {'max |d|':>10} {'max rel':>10} "
                     f"{'worst at':<12} {'ok':>4}")
        for p in self.params:
            lines.append(f"{p.name:<6} {str(p.shape):<12} {p.mean_abs:>10.2e} {p.max_abs:>10.2e} "
                         f"{p.max_rel:>10.2e} {str(p.worst_index):<12} {'yes' if p.passed else 'NO':>4}")
        lines.append(f"tolerance: max rel <= {self.rtol:g} (relative to max(|num|, |bp|, {self.floor:g}))")
        lines.append(f"parameters restored bit-exactly: {'yes' if self.params_restored else 'NO'}")
        lines.append(f"gradient check {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def compare(name, numerical, backprop, rtol, floor):
    """A :class:`ParamDiff` for one parameter's two gradients."""
    num = np.asarray(numerical, dtype=np.float64)
    bp = np.asarray(backprop, dtype=np.float64)
    diff = np.abs(num - bp)
    rel = diff / np.maximum(np.maximum(np.abs(num), np.abs(bp)), floor)
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape) if rel.size else ()
    max_rel = float(rel[worst]) if rel.size else 0.0
    return ParamDiff(
        name=name, shape=tuple(num.shape),
        mean_abs=float(np.mean(diff)) if diff.size else 0.0,
        max_abs=float(np.max(diff)) if diff.size else 0.0,
        max_rel=max_rel, worst_index=tuple(int(i) for i in worst),
        numerical_at_worst=float(num[worst]) if num.size else 0.0,
        backprop_at_worst=float(bp[worst]) if bp.size else 0.0,
        passed=bool(np.all(np.isfinite(rel))) and max_rel <= rtol,
    )


def gradcheck(net, x, t, h=1e-4, *, warmup=False):
    """Compare ``net.numerical_gradient(x, t)`` with ``net.gradient(x, t)``.

    Parameters
    ----------
    net : TwoLayerNet (or anything with ``params``, ``params_key``,
        ``gradient`` and ``numerical_gradient``)
    x, t : the batch and its labels / one-hot targets.
    h : float
        Central-difference step.
    warmup : bool
        Call both gradients once, untimed, before timing them (a JIT backend
        otherwise times its compile or cache load on the first call).

    Returns
    -------
    GradcheckReport
        Per-parameter mean / max absolute difference, max relative error and
        where it is, both wall times and their ratio, the number of loss
        evaluations (two per parameter element), whether the parameters came
        back bit-exactly, and ``passed`` under :mod:`scratchprop.tolerances`.
    """
    keys = list(getattr(net, "params_key", net.params.keys()))
    dtype = np.result_type(*[net.params[k] for k in keys])
    tol = tolerances.gradcheck(dtype)
    before = {k: net.params[k].copy() for k in keys}
    numerical = net.numerical_gradient if h == 1e-4 else (lambda x, t: net.numerical_gradient(x, t, h))
    if warmup:
        numerical(x, t)
        net.gradient(x, t)

    start = time.perf_counter()
    grad_numerical = numerical(x, t)
    numerical_time = time.perf_counter() - start
    restored = all(np.array_equal(before[k].view(np.uint8), net.params[k].view(np.uint8)) for k in keys)

    start = time.perf_counter()
    grad_backprop = net.gradient(x, t)
    backprop_time = time.perf_counter() - start

    backend = getattr(net, "backend_name", "custom")
    return GradcheckReport(
        params=[compare(k, grad_numerical[k], grad_backprop[k], tol["rtol"], tol["floor"]) for k in keys],
        numerical_time=numerical_time, backprop_time=backprop_time,
        loss_evaluations=2 * sum(net.params[k].size for k in keys),
        params_restored=restored, dtype=str(np.dtype(dtype)), backend=str(backend),
        rtol=tol["rtol"], floor=tol["floor"], warmup=warmup,
    )
