#!/usr/bin/env python
"""Probe: a layer's products as our kernel on OpenBLAS's two threads (``kernels/pair.py``).

``python bench/pair_probe.py products [batch ...]``
    A 784 x 100 layer's forward (``x @ W``) and weight gradient (``x.T @ dout``), float64, MNIST
    digits, at each batch (32 to 4000 by default), three ways interleaved in one process: NumPy's
    OpenBLAS (``np.matmul`` into a preallocated array, both its threads), our kernel on this
    thread (``kernels/gemm.py``), and our kernel paired (half the rows on OpenBLAS's worker).
``python bench/pair_probe.py step [batch]``
    Issue 15's step (``MultiLayerNetExtend(784, [100]*5, 10)``, BatchNorm, Dropout, Adam; batch
    100 by default) on the reference, on the Numba backend with the first layer paired (the
    default) and with it in OpenBLAS's own product (``kernels.pair.AVAILABLE`` off), interleaved
    round by round, in three scenarios: back to back, after the user's ``np.dot`` (1000 x 784 @
    784 x 100, NumPy's two threads) and after a 10 ms sleep. Per scenario: median us per step and
    the reference's ratio to each (median of rounds, lowest and highest round).
``python bench/pair_probe.py update [batch]``
    Adam's update split with OpenBLAS's worker (``kernels/optim.py``, the exception to rule 2 of
    ``scratchprop.threads``). First what bounds it: the kernel's ns per element on arrays of 4,000
    (in cache) to 1M elements (from memory). Then the update of that net's 22 parameters alone, on
    the reference, one thread and split, interleaved; then the training step (batch 100 by
    default) with the split update against the same step with it on this thread, in the three
    scenarios of ``step``.
``python bench/pair_probe.py convnet``
    Why a convnet's update stays on this thread (``threads.blas_held_lately``): ``SimpleConvNet``
    + Adam at batch 100, its ``gradient`` timed after the default update and after the same update
    forced to split with OpenBLAS's worker, in blocks of 8 steps with a 0.3 s sleep before each
    (the worker falls asleep between blocks).
``python bench/pair_probe.py forward [batch]``
    Why a paired forward splits the inner dimension (``pair.split_product``) where the weight
    gradient is paired too: that net's first-layer forward ``x @ W1`` (batch 100 by default),
    timed right after a training step (gradient and Adam's split update, so ``W1``'s rows lie in
    the cache of the core that updated them), as the rows of ``x @ W1`` paired
    (``pair.paired_product``, each thread reads all of ``W1``) and as its two half sums (each
    reads the rows whose gradient it made), interleaved; and both on a ``W1`` nobody rewrites.
``python bench/pair_probe.py draws [batch]``
    Dropout's masks drawn on OpenBLAS's worker beside a hidden layer's product (``kernels/mlp.py``,
    ``threads.DRAWS_PAIR_MIN_ELEMENTS``): that net's training step with Adam (batch 100 by
    default), on the reference, with the draws there (the default) and all on this thread (the
    threshold set out of reach), interleaved round by round, in the three scenarios of ``step``.
``python bench/pair_probe.py compile``
    What the split update costs a fresh process: a Python with an empty Numba cache, then again
    with that cache, times ``MultiLayerNetExtend`` 784-[100]x5-10's first five Adam updates (the
    second makes the split's records and compiles or loads its kernels).

Results and what they mean: ``bench/THREADS.md``, "Our products on OpenBLAS's threads".
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _interleaved(fns, rounds, per_round_s):
    """Per function, the median us per call of each round (fixed calls, about ``per_round_s``)."""
    for f in fns:
        f()
    t0 = time.perf_counter()
    fns[0]()
    n = max(5, int(per_round_s / max(time.perf_counter() - t0, 1e-6)))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for f, acc in zip(fns, times):
            one = []
            for _ in range(n):
                a = time.perf_counter()
                f()
                one.append(time.perf_counter() - a)
            acc.append(np.median(one) * 1e6)
    return times


def products(*batches):
    from bench.cases import inputs
    from scratchprop.kernels import pair

    fn = pair.share_address(np.float64)
    print("784x100 layer, float64, median us of 7 interleaved rounds: OpenBLAS | ours here | ours paired")
    for N in batches or (32, 64, 100, 200, 1000, 4000):
        x, _ = inputs(N, "float64", 784, 10)
        rng = np.random.default_rng(0)
        W, d = rng.standard_normal((784, 100)), rng.standard_normal((N, 100))
        o, dW = np.empty((N, 100)), np.empty((784, 100))
        fns = _three_ways(x, W, d, o, dW, fn)
        m = [np.median(t) for t in _interleaved(fns, 7, 0.05)]
        print(
            f"  batch {N:5d}  x @ W: {m[0]:8.1f} | {m[1]:8.1f} | {m[2]:8.1f}    "
            f"x.T @ dout: {m[3]:8.1f} | {m[4]:8.1f} | {m[5]:8.1f}"
        )


def _three_ways(x, W, d, o, dW, fn):
    """``x @ W`` and ``x.T @ d`` in OpenBLAS, our kernel here, our kernel paired."""
    from scratchprop.kernels import gemm, pair

    D = x.shape[1]
    return [
        lambda: np.matmul(x, W, out=o),
        lambda: gemm.product(x, D, 1, W, o, 1.0, False),
        lambda: pair.paired_product(x, D, 1, W, o, 1.0, False, fn),
        lambda: np.matmul(x.T, d, out=dW),
        lambda: gemm.product(x, 1, D, d, dW, 1.0, False),
        lambda: pair.paired_product(x, 1, D, d, dW, 1.0, False, fn),
    ]


def step(N=100):
    import scratchprop
    from bench.cases import inputs
    from scratchprop.kernels import pair

    x, t = inputs(N, "float64", 784, 10)

    def make(backend, paired):
        net = scratchprop.MultiLayerNetExtend(
            784, [100] * 5, 10, backend=backend, seed=0, use_batchnorm=True, use_dropout=True
        )
        opt = getattr(scratchprop, backend).Adam(lr=0.001)
        pair.AVAILABLE = paired  # read when the net first runs at this batch
        opt.update(net.params, net.gradient(x, t))
        pair.AVAILABLE = True
        return lambda: opt.update(net.params, net.gradient(x, t))

    steps = {
        "reference": make("numpy", True),
        "paired": make("numba", True),
        "OpenBLAS": make("numba", False),
    }
    _scenarios(steps, N)


def _scenarios(steps, N):
    """``steps`` (the reference first) interleaved round by round back to back, after the user's
    ``np.dot`` and after a 10 ms sleep: the median us per step and the reference's ratio to each."""
    rng = np.random.default_rng(1)
    A, B = rng.random((1000, 784)), rng.random((784, 100))
    before = {"back to back": None, "after np.dot": lambda: A @ B, "after 10 ms": lambda: time.sleep(0.01)}
    print(f"MultiLayerNetExtend 784-[100]x5-10 + Adam, batch {N}, float64; median us per step (9 rounds)")
    for name, pre in before.items():
        fns = []
        for f in steps.values():
            if pre is None:
                fns.append(f)
            else:
                fns.append(_timed_after(pre, f))
        times = _interleaved_after(fns, 9, 0.3) if pre is not None else _interleaved(fns, 9, 0.2)
        ref = np.array(times[0])
        cells = []
        for k, tt in zip(steps, times):
            r = ref / np.array(tt)
            cells.append(
                f"{k} {np.median(tt):7.1f}"
                + ("" if k == "reference" else f" ({np.median(r):.2f}x, {r.min():.2f}-{r.max():.2f})")
            )
        print(f"  {name:13s} " + " | ".join(cells))


def update(N=100):
    import scratchprop
    from bench.cases import inputs
    from scratchprop.kernels import optim

    rng = np.random.default_rng(0)
    cells = []
    for n in (4_000, 20_000, 120_000, 1_000_000):
        arrays = rng.random(n), rng.random(n) - 0.5, np.zeros(n), np.zeros(n)
        (t,) = _interleaved([lambda a=arrays: optim.adam(*a, 1e-3, 0.9, 0.999)], 5, 0.1)
        cells.append(f"{n:,} {np.median(t) * 1e3 / n:.2f}")
    print("Adam's kernel on one thread, ns per element: " + " | ".join(cells))

    x, t = inputs(N, "float64", 784, 10)

    def make(backend, split):
        net = scratchprop.MultiLayerNetExtend(
            784, [100] * 5, 10, backend=backend, seed=0, use_batchnorm=True, use_dropout=True
        )
        opt = getattr(scratchprop, backend).Adam(lr=0.001)
        for _ in range(2):  # the second update makes the records of the split
            grads = net.gradient(x, t)
            opt.update(net.params, grads)
        if backend == "numba" and not split:
            opt._each.pair = None  # the same parameters' update on this thread (kernels.optim.adam_each)
        elif backend == "numba":
            assert opt._each.pair is not None, "no split here (no BLAS worker to share with)"
        size = sum(p.size for p in net.params.values())
        return lambda: opt.update(net.params, net.gradient(x, t)), lambda: opt.update(net.params, grads), size

    made = {
        "reference": make("numpy", True),
        "split": make("numba", True),
        "one thread": make("numba", False),
    }
    times = _interleaved([u for _, u, _ in made.values()], 9, 0.2)
    ref = np.array(times[0])
    size = made["split"][2]
    print(
        f"Adam's update of MultiLayerNetExtend 784-[100]x5-10 ({size:,} parameters), float64; median us (9 rounds)"
    )
    print(
        "  "
        + " | ".join(
            f"{k} {np.median(tt):6.1f} ({np.median(ref / np.array(tt)):.2f}x)" for k, tt in zip(made, times)
        )
    )
    _scenarios({k: s for k, (s, _, _) in made.items()}, N)


def convnet(N=100):
    import scratchprop
    from bench.cases import inputs
    from scratchprop import threads

    x, t = inputs(N, "float64", 784, 10)
    x = x.reshape(N, 1, 28, 28)
    net = scratchprop.SimpleConvNet(backend="numba", seed=0)
    opt = scratchprop.numba.Adam(lr=0.001)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    lately = threads.blas_held_lately
    times = {"default update": [], "update split": []}
    for _ in range(10):
        for k, acc in times.items():
            threads.blas_held_lately = lately if k == "default update" else (lambda: False)
            time.sleep(0.3)
            g = net.gradient(x, t)
            for _ in range(8):
                opt.update(net.params, g)
                a = time.perf_counter()
                g = net.gradient(x, t)
                acc.append(time.perf_counter() - a)
    threads.blas_held_lately = lately
    print(f"SimpleConvNet + Adam, batch {N}, float64: its gradient after the update, ms (80 steps each)")
    for k, v in times.items():
        v = np.array(v) * 1e3
        print(
            f"  {k:15s} median {np.median(v):6.2f} | p10 {np.percentile(v, 10):6.2f} | p90 {np.percentile(v, 90):6.2f}"
        )


_COMPILE = """
import time, numpy as np
t0 = time.perf_counter()
import scratchprop
net = scratchprop.MultiLayerNetExtend(784, [100] * 5, 10, backend="numba", seed=0, use_batchnorm=True)
grads = {k: np.full_like(p, 1e-3) for k, p in net.params.items()}
opt = scratchprop.numba.Adam(lr=0.001)
times = []
for _ in range(5):
    a = time.perf_counter()
    opt.update(net.params, grads)
    times.append(time.perf_counter() - a)
assert opt._each.pair is not None
print(" | ".join(f"update {i + 1} {t:.3f} s" for i, t in enumerate(times)))
"""


def compile():
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache", "its cache"):
            out = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True)
            print(f"{label:12s} {out.stdout.strip() or out.stderr.strip()[-300:]}")


def _timed_after(pre, f):
    """``pre()`` untimed, then ``f()`` timed: returns the seconds of ``f`` alone."""

    def run():
        pre()
        a = time.perf_counter()
        f()
        return time.perf_counter() - a

    return run


def _interleaved_after(runs, rounds, per_round_s):
    """:func:`_interleaved` for functions that return their own timed seconds."""
    for r in runs:
        r()
    per = max(runs[0](), 1e-4)
    n = max(5, int(per_round_s / (per + 0.011)))
    times = [[] for _ in runs]
    for _ in range(rounds):
        for r, acc in zip(runs, times):
            acc.append(np.median([r() for _ in range(n)]) * 1e6)
    return times


def forward(N=100):
    import scratchprop
    import scratchprop.numba
    from bench.cases import inputs
    from scratchprop.kernels import pair

    net = scratchprop.MultiLayerNetExtend(
        784, [100] * 5, 10, backend="numba", seed=0, use_batchnorm=True, use_dropout=True
    )
    opt = scratchprop.numba.Adam(lr=0.001)
    x, t = inputs(N, "float64", 784, 10)
    W1 = net.params["W1"]
    out, part, fn = np.empty((N, 100)), np.empty((N, 100)), pair.share_address(np.float64)
    still = W1.copy()
    ways = {
        "rows of x @ W1": lambda W: pair.paired_product(x, 784, 1, W, out, 1.0, False, fn),
        "its two half sums": lambda W: pair.split_product(x, W, out, False, part, fn),
    }

    def after_step(way):
        def run():
            opt.update(net.params, net.gradient(x, t))
            a = time.perf_counter()
            way(W1)
            return time.perf_counter() - a

        return run

    def alone(way):
        def run():
            a = time.perf_counter()
            way(still)
            return time.perf_counter() - a

        return run

    np.random.seed(1)
    runs = [after_step(w) for w in ways.values()] + [alone(w) for w in ways.values()]
    times = _interleaved_after(runs, 15, 0.1)
    print(
        f"{N} x 784 @ 784 x 100, float64, paired with OpenBLAS's worker; median us of 15 interleaved rounds"
    )
    for i, name in enumerate(ways):
        after, untouched = np.median(times[i]), np.median(times[i + 2])
        print(f"  {name:18s} after a training step {after:7.1f} | W1 untouched {untouched:7.1f}")


def draws(N=100):
    import scratchprop
    import scratchprop.numba
    from bench.cases import inputs
    from scratchprop import threads

    x, t = inputs(N, "float64", 784, 10)
    default = threads.DRAWS_PAIR_MIN_ELEMENTS

    def make(backend, least):
        net = scratchprop.MultiLayerNetExtend(
            784, [100] * 5, 10, backend=backend, seed=0, use_batchnorm=True, use_dropout=True
        )
        opt = (scratchprop.numba if backend == "numba" else scratchprop.numpy).Adam(lr=0.001)

        def one():
            threads.DRAWS_PAIR_MIN_ELEMENTS = least
            opt.update(net.params, net.gradient(x, t))

        return one

    np.random.seed(1)
    steps = {
        "reference": make("numpy", default),
        "worker draws": make("numba", default),
        "draws here": make("numba", 1 << 62),
    }
    try:
        _scenarios(steps, N)
    finally:
        threads.DRAWS_PAIR_MIN_ELEMENTS = default


if __name__ == "__main__":
    probes = {
        "products": products,
        "step": step,
        "update": update,
        "forward": forward,
        "draws": draws,
        "convnet": convnet,
        "compile": compile,
    }
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in probes:
        raise SystemExit(__doc__)
    probes[which](*(int(a) for a in sys.argv[2:]))
