"""The benchmark table: every case, its sizes, how it is built and how it is timed.

One :class:`Case` is one benchmark. ``CASES`` lists them all; the ``test_*``
files only parametrise over ``cases(group)`` and call
:func:`bench.builders.run`, which builds and times a case. To add or resize a
benchmark, edit this file.

Every case writes its identity into ``benchmark.extra_info`` (``group``,
``case``, ``api``, ``backend``, ``dtype``, ``batch``, ``sizes``, ``threads``
and the thread counts in effect); ``bench/report.py`` pairs rows by those
fields only, never by test names.

``SCRATCHPROP_BENCH_SMOKE=1`` shrinks everything (batch 1 and 4, 1,000-sample
inference, a 16-8-4 net for the numerical gradient) so CI can run the whole
suite with ``--benchmark-disable`` in seconds.
"""

import functools
from dataclasses import asdict, dataclass

import numpy as np

from . import _env
from ._env import SMOKE

# --------------------------------------------------------------------------- sizes

SIZES = (784, 100, 10)  # the book's MNIST net: D -> H -> C
CONVNET = ("SimpleConvNet",)  # a scenario case's sizes when its step is SimpleConvNet's
DTYPES = ("float32", "float64")
LR = 0.01  # SGD step; small, so repeated steps on one batch stay finite
PARAMS = ("W1", "b1", "W2", "b2")

if SMOKE:
    BATCHES = LAYER_BATCHES = (1, 4)
    INFER_N = (1000,)
    GRADCHECK_SIZES, GRADCHECK_BATCH = (16, 8, 4), 3
    THREAD_BATCH = 32
    COMPILE_BATCH = 4
    SCENARIO_BATCHES = (1, 4)
    CH6_SIZES, CH6_BATCHES = (16, 8, 8, 4), (1, 4)
    CONV_BATCH, CONV_INFER_N = 2, 4
else:
    BATCHES = (1, 32, 100, 1000, 10000)
    # the layers also at a batch of 4: a few rows are where BLAS libraries differ most
    LAYER_BATCHES = (1, 4, 32, 100, 1000, 10000)
    INFER_N = (10000, 60000)
    GRADCHECK_SIZES, GRADCHECK_BATCH = SIZES, 3  # the notebook's gradient_check.py
    THREAD_BATCH = 10000
    COMPILE_BATCH = 100
    SCENARIO_BATCHES = (1, 32, 1000)
    CH6_SIZES, CH6_BATCHES = (784, 100, 100, 100, 100, 100, 10), (1, 32, 100, 1000)
    CONV_BATCH, CONV_INFER_N = 100, 10000  # the book's train_convnet.py batch; its test set


def _sz(sizes):
    return "-".join(map(str, sizes))


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One benchmark.

    group    layers | train_step | inference | gradcheck | compile | threads | scenario | chapter6 | convnets
    case     what is timed: "Affine.forward", "train_step", "accuracy",
             "numerical_gradient", "gradient", "cold_cache", ...
    api      layer | TwoLayerNet | net (our convnet class) | book (the user's notebook class) | torch | gemm
             | subprocess
    backend  numpy | numba | torch | blas (NumPy's BLAS) | kernels (the kernels' BLAS)
    batch    samples per call (inference: samples evaluated)
    threads  0: the default (every backend on Numba's thread count); else that many
    rounds   0: pytest-benchmark calibrates (honours --benchmark-min-rounds/-max-time);
             else exactly this many rounds of one call (slow cases)
    """

    group: str
    case: str
    api: str
    backend: str
    dtype: str = "float64"
    batch: int = 0
    sizes: tuple = SIZES
    threads: int = 0
    rounds: int = 0

    def __str__(self):  # the pytest id: stable, so --benchmark-compare can pair runs
        parts = [self.case, self.api, self.backend, self.dtype]
        if self.group in ("inference",):
            parts.append(f"n{self.batch}")
        elif self.batch:
            parts.append(f"b{self.batch}")
        if self.sizes != SIZES:
            parts.append(_sz(self.sizes))
        if self.threads:
            parts.append(f"t{self.threads}")
        return "-".join(parts)

    @property
    def bench_group(self):
        """pytest-benchmark's group: the rows its own table compares side by side."""
        if self.group == "layers":
            return f"layers {self.case} {self.dtype} batch={self.batch}"
        if self.group == "inference":
            return f"inference {self.dtype} n={self.batch}"
        if self.group == "gradcheck":
            return f"gradcheck {_sz(self.sizes)} batch={self.batch}"
        if self.group == "compile":
            return "compile"
        if self.group == "chapter6":
            return f"chapter6 {self.case} batch={self.batch}"
        if self.group == "convnets":
            return f"convnets {self.case} {self.dtype} {'n' if 'accuracy' in self.case else 'batch'}={self.batch}"
        return f"{self.group} {self.dtype} batch={self.batch}"

    def info(self):
        d = asdict(self)
        d["sizes"] = _sz(self.sizes)
        d["threads"] = self.threads or _env.default_threads()
        d["smoke"] = SMOKE
        d["timing"] = f"pedantic rounds={self.rounds}" if self.rounds else "calibrated"
        return d


def _layer_cases():
    from scratchprop.layer_table import LAYERS

    for layer in (s.name for s in LAYERS):
        for pass_ in ("forward", "backward"):
            for dtype in DTYPES:
                for batch in LAYER_BATCHES:
                    for backend in ("numpy", "numba"):
                        yield Case("layers", f"{layer}.{pass_}", "layer", backend, dtype, batch)


def _train_cases():
    for dtype in DTYPES:
        for batch in BATCHES:
            # each ratio's two cases timed one after the other (the VM drifts within a run):
            # numpy/floor, numba/numpy, numba/floor, then the book's pair
            for api, backend in (
                ("gemm", "blas"),
                ("TwoLayerNet", "numpy"),
                ("TwoLayerNet", "numba"),
                ("gemm", "kernels"),
                ("torch", "torch"),
                ("book", "numpy"),
                ("book", "numba"),
            ):
                case = "gemm_floor" if api == "gemm" else "train_step"
                yield Case("train_step", case, api, backend, dtype, batch)


def _inference_cases():
    for dtype in DTYPES:
        for n in INFER_N:
            for api, backend in (
                ("TwoLayerNet", "numpy"),
                ("TwoLayerNet", "numba"),
                ("book", "numpy"),
                ("book", "numba"),
                ("torch", "torch"),
            ):
                yield Case("inference", "accuracy", api, backend, dtype, n)


def _gradcheck_cases():
    for api in ("TwoLayerNet", "book"):
        for backend in ("numpy", "numba"):
            for case in ("numerical_gradient", "gradient"):
                # the per-element numerical gradient takes seconds (NumPy: ~6-25 s at
                # 784-100-10): one round. TwoLayerNet(backend="numba") has a fast path
                # (milliseconds): calibrated like the backprop gradient, unless build_gradcheck
                # finds the fast path missing (then one round).
                rounds = (
                    1
                    if case == "numerical_gradient" and not (backend == "numba" and api == "TwoLayerNet")
                    else 0
                )
                yield Case(
                    "gradcheck",
                    case,
                    api,
                    backend,
                    "float64",
                    GRADCHECK_BATCH,
                    GRADCHECK_SIZES,
                    rounds=rounds,
                )


def _compile_cases():
    # one subprocess per round: interpreter start + imports + net + first train step
    yield Case("compile", "cold_cache", "subprocess", "numba", "float64", COMPILE_BATCH, rounds=1)
    yield Case("compile", "warm_cache", "subprocess", "numba", "float64", COMPILE_BATCH, rounds=3)
    yield Case("compile", "no_jit", "subprocess", "numpy", "float64", COMPILE_BATCH, rounds=3)


def _thread_cases():
    for dtype in DTYPES:
        for api, backend in (("TwoLayerNet", "numpy"), ("TwoLayerNet", "numba"), ("torch", "torch")):
            for n in _env.thread_counts():
                yield Case("threads", "train_step", api, backend, dtype, THREAD_BATCH, threads=n)


def _scenario_cases():
    # see bench/scenarios.py; float64 weights throughout, "dtype" is the images'
    for batch in SCENARIO_BATCHES:
        for scenario in ("back_to_back", "alternate", "np_dot", "pause_10ms", "f32_images"):
            for api in ("TwoLayerNet", "book"):
                for backend in ("numpy", "numba"):
                    dtype = "float32" if scenario == "f32_images" else "float64"
                    yield Case("scenario", scenario, api, backend, dtype, batch)
        yield Case("scenario", "user_dot", "numpy", "none", "float64", batch)
        for api in ("TwoLayerNet", "book"):
            for backend in ("numpy", "numba"):
                yield Case("scenario", "user_dot", api, backend, "float64", batch)
    # the same scenarios around SimpleConvNet's step (ours and the book-style class), batch 100
    for scenario in ("back_to_back", "alternate", "np_dot", "pause_10ms", "f32_images", "user_dot"):
        for api in ("net", "book"):
            for backend in ("numpy", "numba"):
                dtype = "float32" if scenario == "f32_images" else "float64"
                yield Case("scenario", scenario, api, backend, dtype, CONV_BATCH, CONVNET)
    yield Case("scenario", "user_dot", "numpy", "none", "float64", CONV_BATCH, CONVNET)


def _chapter6_cases():
    # see bench/chapter6.py: numpy then numba, side by side, for each api
    for batch in CH6_BATCHES:
        for api in ("MultiLayerNetExtend", "book", "Adam"):
            for backend in ("numpy", "numba"):
                case = "update" if api == "Adam" else "train_step"
                yield Case("chapter6", case, api, backend, "float64", batch, CH6_SIZES)


def _convnet_cases():
    # see bench/convnets.py: for each net and dtype, numpy then numba side by side, for each api;
    # NumPy's DeepConvNet takes ~0.6 s a step and ~30 s for 10,000 images: few rounds
    for net in ("SimpleConvNet", "DeepConvNet"):
        deep = net == "DeepConvNet"
        for dtype in DTYPES:
            for api, backend in (("book", "numpy"), ("book", "numba"), ("net", "numpy"), ("net", "numba")):
                slow = deep and backend == "numpy"
                yield Case(
                    "convnets", f"{net}.train_step", api, backend, dtype, CONV_BATCH, rounds=5 if slow else 0
                )
            yield Case("convnets", f"{net}.train_step", "torch", "torch", dtype, CONV_BATCH)
        for api, backend in (("book", "numpy"), ("book", "numba"), ("net", "numpy"), ("net", "numba")):
            rounds = 1 if backend == "numpy" else 3
            yield Case("convnets", f"{net}.accuracy", api, backend, "float64", CONV_INFER_N, rounds=rounds)
        yield Case("convnets", f"{net}.accuracy", "torch", "torch", "float64", CONV_INFER_N, rounds=3)


CASES = [
    *_layer_cases(),
    *_train_cases(),
    *_inference_cases(),
    *_gradcheck_cases(),
    *_compile_cases(),
    *_thread_cases(),
    *_scenario_cases(),
    *_chapter6_cases(),
    *_convnet_cases(),
]


def cases(group):
    return [c for c in CASES if c.group == group]


# --------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=1)
def _mnist():
    """The bundled 10,000 real MNIST digits (train + test), float32 in [0, 1], and labels."""
    from scratchprop.data import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist()
    return np.concatenate([x_train, x_test]), np.concatenate([t_train, t_test])


@functools.lru_cache(maxsize=3)
def inputs(n, dtype, D=784, C=10):
    """``x (n, D)`` C-contiguous and labels ``t (n,)`` int64: real MNIST digits, tiled past 10,000.

    Fresh writeable arrays, like the book loop's ``x_train[batch_mask]``. The
    train-step cases check afterwards that no backend modified them.

    For ``D != 784`` (the tiny smoke nets) ``x`` is uniform random.
    """
    X, T = _mnist()
    if D == X.shape[1]:
        reps = -(-n // len(X))
        x = np.ascontiguousarray(np.tile(X, (reps, 1))[:n] if reps > 1 else X[:n], dtype=dtype)
        t = np.ascontiguousarray((np.tile(T, reps)[:n] if reps > 1 else T[:n]) % C, dtype=np.int64)
    else:
        rng = np.random.default_rng(1)
        x = rng.random((n, D)).astype(dtype)
        t = rng.integers(0, C, n).astype(np.int64)
    return x, t
