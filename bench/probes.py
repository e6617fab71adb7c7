#!/usr/bin/env python
"""Small probes behind ``scratchprop.threads`` and the speed notes (see ``bench/THREADS.md``).

``python bench/probes.py cache``
    Three ``x @ W`` products (784x100 float64 ``W``, 627 KB) back to back,
    and after a pause: a sleep or a busy wait of 0.1, 1 and 10 ms. If a busy
    wait costs as much as a sleep, the slowdown is the cache losing ``W``
    during the pause, not a thread pool falling asleep. A ``small.sum()`` of
    100 floats and a short Python loop after the same pauses show how much of
    it is not ``W`` at all: the code and the interpreter's own data re-read.
``NUMBA_THREADING_LAYER=omp python bench/probes.py regions``
    Numba's cost of a ``prange`` region under the chosen layer: an empty
    region, a ReLU pass serial and parallel (10k-1M elements), each back to
    back and right after a threaded ``np.dot``; and the ``np.dot`` right after
    a region.
``python bench/probes.py dispatch``
    ``_dispatch.KERNEL_MIN_ELEMENTS``'s two sides: Relu, Sigmoid and Dropout
    through the Numba wrappers with the kernel forced (threshold 0) against the
    reference's NumPy code, 256 to 64k elements, interleaved; the kernel pays
    where the ratio drops below 1.
``python bench/probes.py faults``
    The user's own SGD update of the book's ``TwoLayerNet`` (``params[k] -= lr * grad[k]``,
    batch 32), timed right after ``net.gradient`` and on its own, on each backend's layers,
    with the page faults per step. Run it again with ``MALLOC_TRIM_THRESHOLD_=268435456
    MALLOC_MMAP_THRESHOLD_=33554432``: glibc then keeps freed memory for the next temporary.
``python bench/probes.py layers [name ...]``
    Each layer of ``scratchprop.layer_table`` (or those named), forward + backward in training
    mode, float64, at the layer benchmarks' batches, reference and Numba layer interleaved round
    by round in one process (pytest-benchmark times each case on its own, seconds apart: at a
    few microseconds a call, the VM's swings between the two decide the ratio).
``python bench/probes.py here [batch ...]``
    Rule 1's two ways to run a product (``threads.BLAS_MIN_MACS``): the book's ``TwoLayerNet`` on
    the drop-in layers and the fused ``TwoLayerNet`` at each batch (8, 32, 64, 100 by default),
    their products all on the calling thread (``kernels/gemm.py``) or all in NumPy's BLAS,
    against the reference, in interleaved blocks of steps in one process; and which way the
    default takes the first layer's products.
``python bench/probes.py products [batch]``
    Issue 15's step, ``MultiLayerNetExtend(784, [100]*5, 10)`` with BatchNorm, Dropout and
    Adam at batch 100 or ``batch`` (float64), on each backend, against its matrix products alone through
    NumPy (into preallocated arrays, interleaved in one process): the reference over the
    products is the most any backend on NumPy's BLAS could reach. Then every kernel call of the
    Numba step timed through a wrapper: what is left of the step is Python between the calls.
``python bench/probes.py chapter6 [batch ...]``
    ``bench/test_chapter6.py``'s cases (our ``MultiLayerNetExtend``, the book-style class,
    Adam's update; 1, 32, 100 and 1000 by default) with each backend interleaved round by round
    in one process: per case the median over rounds of reference / Numba, and the lowest and
    highest round (pytest-benchmark times each case on its own, seconds apart, and the VM's
    phases can move one side by 30 % or more between them).
``python bench/probes.py cold [batch]``
    The fused ``TwoLayerNet``'s train step (batch 1 by default) back to back and right after
    the user's ``np.dot`` (1000x784 @ 784x100, which leaves nothing of the step in the caches),
    split where it runs: the Python before the kernel call, the call (Numba's dispatch and the
    kernel), the Python after it; and the dispatch alone, an empty ``@njit`` function given the
    step's fifteen arguments. What a step after NumPy work must pay beyond its back-to-back
    time, whatever the threads do.
``python bench/probes.py booknet [batch ...]``
    The book's ``TwoLayerNet`` on each backend's layers (batch 32 by default), its SGD step in
    the two shapes a user's loop takes: the book's script (``grad = net.gradient(x, t)`` at
    module level, so last step's gradients are alive during the next ``gradient``) and a step
    function (they are freed when it returns); all four interleaved round by round in one
    process, with the page faults per step. The reference's time depends on the shape; ours
    hardly does.
``python bench/probes.py phases [batch ...]``
    The book's ``TwoLayerNet`` step (batch 32 by default), each layer's ``forward`` and
    ``backward`` and the user's SGD update timed where they run, inside the step, on each
    backend's layers: which calls the drop-in layers make faster, and which they cannot (the
    first layer's products, in either backend as fast as the machine does them there).
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pools import median_us  # noqa: E402


def _us(fn, before=None, n=300):
    return f"{median_us(fn, before, n):8.1f} us"


def cache():
    rng = np.random.default_rng(0)
    W, x, out = rng.random((784, 100)), rng.random(784), np.empty(100)

    def three():
        for _ in range(3):
            np.dot(x, W, out=out)

    def busy(s):
        end = time.perf_counter() + s
        while time.perf_counter() < end:
            pass

    small = rng.random(100)

    def tiny():  # 800 bytes of data: what a pause costs code that holds nothing in the cache
        small.sum()

    def python():
        s = 0
        for i in range(100):
            s += i

    print("median of 300, us:        3 x (784 @ 784x100) | small.sum() (100) | 100-step Python loop")
    print("  back to back      ", _us(three), "|", _us(tiny), "|", _us(python))
    for s in (0.0001, 0.001, 0.01):
        for how, wait in (("sleep", time.sleep), ("busy ", busy)):
            print(
                f"  after {s * 1e3:4g} ms {how}  ",
                *(_us(fn, lambda: wait(s)) + " |" for fn in (three, tiny)),
                _us(python, lambda: wait(s)),
            )


def regions():
    import numba
    from numba import njit, prange

    @njit(parallel=True, nogil=True)
    def relu_par(x, out, nch):
        n = x.shape[0]
        for c in prange(nch):
            for i in range(c * n // nch, (c + 1) * n // nch):
                v = x[i]
                out[i] = 0 if v <= 0 else v

    @njit(nogil=True)
    def relu_ser(x, out):
        for i in range(x.shape[0]):
            v = x[i]
            out[i] = 0 if v <= 0 else v

    @njit(parallel=True, nogil=True)
    def empty(a, nch):
        for c in prange(nch):
            a[c] += 1.0

    rng = np.random.default_rng(0)
    A, B = rng.random((1000, 784)), rng.random((784, 100))
    dot = lambda: np.dot(A, B)  # noqa: E731
    e = np.zeros(16)
    empty(e, 16)
    print(f"layer {numba.threading_layer()}, {numba.get_num_threads()} threads")
    print(
        "empty region: back to back",
        _us(lambda: empty(e, 16)),
        "| after np.dot",
        _us(lambda: empty(e, 16), dot, 100),
    )
    print(
        "np.dot 1000x784 @ 784x100: back to back",
        _us(dot, n=50),
        "| after a region",
        _us(dot, lambda: empty(e, 16), 50),
    )
    for n in (10_000, 100_000, 1_000_000):
        x, out = rng.standard_normal(n), np.empty(n)
        relu_par(x, out, 16)
        relu_ser(x, out)
        print(
            f"ReLU {n:>9,}: serial {_us(lambda: relu_ser(x, out))}"
            f" | parallel {_us(lambda: relu_par(x, out, 16))}"
            f" | after np.dot: serial {_us(lambda: relu_ser(x, out), dot, 100)}"
            f", parallel {_us(lambda: relu_par(x, out, 16), dot, 100)}"
        )


def dispatch():
    import scratchprop.numba as NB
    import scratchprop.numpy as NP
    from scratchprop import _dispatch

    _dispatch.KERNEL_MIN_ELEMENTS = 0  # every call through the kernels
    rng = np.random.default_rng(0)
    print("median us, reference NumPy / Numba kernel path (ratio)")
    for n in (256, 512, 1024, 2048, 4096, 8192, 16384, 65536):
        x, d = rng.standard_normal(n), rng.standard_normal(n)
        row = []
        for name in ("Relu", "Sigmoid", "Dropout"):
            a, b = getattr(NP, name)(), getattr(NB, name)()
            a.forward(x), b.forward(x)
            for what, fa, fb in (
                ("fwd", lambda: a.forward(x), lambda: b.forward(x)),
                ("bwd", lambda: a.backward(d), lambda: b.backward(d)),
            ):
                ta, tb = median_us(fa, None, 500), median_us(fb, None, 500)
                row.append(f"{name} {what} {ta:6.1f}/{tb:6.1f} ({tb / ta:4.2f})")
        print(f"{n:>6}: " + " | ".join(row))


def faults(N=32, steps=2000):
    import resource

    from booknet import book_net

    import scratchprop.numba as NB
    import scratchprop.numpy as NP

    rng = np.random.default_rng(0)
    x, t = rng.random((N, 784)), np.eye(10)[rng.integers(0, 10, N)]
    env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"book TwoLayerNet, batch {N}, median of {steps}; glibc settings: {env or 'defaults'}")
    for M in (NP, NB):
        net = book_net(M, 784, 100, 10)

        def update(grad):
            for k in ("W1", "b1", "W2", "b2"):
                net.params[k] -= 0.1 * grad[k]

        after, alone, faults = [], [], 0
        for _ in range(steps):
            grad = net.gradient(x, t)
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            update(grad)
            after.append(time.perf_counter() - t0)
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        copy = {k: v.copy() for k, v in grad.items()}
        for _ in range(steps):
            t0 = time.perf_counter()
            update(copy)
            alone.append(time.perf_counter() - t0)
        print(
            f"  {M.__name__:18s} update after gradient {np.median(after) * 1e6:6.1f} us"
            f" ({faults / steps:5.1f} page faults) | alone {np.median(alone) * 1e6:6.1f} us"
        )


def _interleaved(fns, rounds, round_s, most):
    """Each of ``fns`` timed in turn, ``rounds`` times: per function, the median us per call of
    each round of about ``round_s`` seconds (at most ``most`` calls)."""
    t0 = time.perf_counter()
    for fn in fns:
        fn()
    n = max(3, min(most, int(round_s / max(time.perf_counter() - t0, 1e-7))))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            times[k].append(median_us(fn, None, n))
    return times


def layers(*names, rounds=15):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import scratchprop.numba as NB
    import scratchprop.numpy as NP
    from bench.cases import LAYER_BATCHES
    from scratchprop.layer_table import LAYERS

    print("float64, forward + backward, median us per call of", rounds, "interleaved rounds")
    print("layer batch: reference | numba | reference / numba")
    for s in LAYERS:
        if names and s.name not in names:
            continue
        for N in LAYER_BATCHES:
            shape, steps = s.bench_shape(N), []
            if len(shape) == 4 and N > 1000:  # images: issue 16's range is 1-1000 (a call here takes seconds)
                continue
            for M in (NP, NB):
                rng = np.random.default_rng(0)
                layer = s.make(M, rng, np.float64, shape)
                args = s.inputs(rng, np.float64, shape)
                out = layer.forward(*args, **s.modes[0])
                dout = 1 if s.loss else rng.standard_normal(np.shape(out))

                def step(layer=layer, args=args, dout=dout):
                    layer.forward(*args, **s.modes[0])
                    layer.backward(dout)

                steps.append(step)
            times = _interleaved(steps, rounds, 0.01, 300)
            ref, nb = np.median(times[0]), np.median(times[1])
            print(f"{s.name:18s} {N:5d}: {ref:9.1f} | {nb:9.1f} | {ref / nb:5.2f}", flush=True)


def products(N=100, rounds=11):
    import scratchprop

    sizes = [784] + [100] * 5 + [10]
    rng = np.random.default_rng(0)
    Ws = [rng.random((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    acts = [rng.random((N, a)) for a in sizes]
    outs = (
        [np.empty((N, b)) for b in sizes[1:]],
        [np.empty(W.shape) for W in Ws],
        [np.empty((N, a)) for a in sizes],
    )

    def floor(first_dx):  # forward, dW and dx of every Affine; the first layer's dx only with first_dx
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W, out=outs[0][i])
        for i, W in enumerate(Ws):
            np.matmul(acts[i].T, acts[i + 1], out=outs[1][i])
            if i or first_dx:
                np.matmul(acts[i + 1], W.T, out=outs[2][i])

    x, t = rng.random((N, 784)), rng.integers(0, 10, N)
    steps = {"17 products": lambda: floor(True), "16 (no first dx)": lambda: floor(False)}
    for backend in ("numpy", "numba"):
        net = scratchprop.MultiLayerNetExtend(
            784, [100] * 5, 10, backend=backend, seed=0, use_batchnorm=True, use_dropout=True
        )
        opt = getattr(scratchprop, backend).Adam(lr=0.001)
        steps[backend] = lambda net=net, opt=opt: opt.update(net.params, net.gradient(x, t))
    times = {k: [] for k in steps}
    for _ in range(rounds):
        for k, fn in steps.items():
            times[k].append(median_us(fn, None, 40))
    med = {k: np.median(v) for k, v in times.items()}
    print(f"MultiLayerNetExtend 784-[100]x5-10, batchnorm, dropout, Adam, batch {N}, float64; median us:")
    print("  " + " | ".join(f"{k} {v:7.1f}" for k, v in med.items()))
    print(
        f"  reference / numba {med['numpy'] / med['numba']:.2f}x; reference / its 17 products "
        f"{med['numpy'] / med['17 products']:.2f}x; reference / numba's 16 "
        f"{med['numpy'] / med['16 (no first dx)']:.2f}x (the ceiling); numba beyond its products "
        f"{med['numba'] - med['16 (no first dx)']:.0f} us"
    )
    _kernel_calls(steps["numba"])


def chapter6(*batches, rounds=11):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench.cases import CH6_BATCHES, CH6_SIZES, Case
    from bench.chapter6 import build_chapter6

    print("chapter 6, float64, median us per call; reference / numba: median of", rounds, "rounds (range)")
    for N in batches or CH6_BATCHES:
        for api in ("MultiLayerNetExtend", "book", "Adam"):
            case = "update" if api == "Adam" else "train_step"
            fns = [
                build_chapter6(Case("chapter6", case, api, b, "float64", N, CH6_SIZES)).fn
                for b in ("numpy", "numba")
            ]
            times = _interleaved(fns, rounds, 0.1, 500)
            ratios = np.array(times[0]) / np.array(times[1])
            print(
                f"  batch {N:4d} {api:19s} {np.median(times[0]):9.1f} | {np.median(times[1]):9.1f} | "
                f"{np.median(ratios):5.2f}x ({ratios.min():.2f}-{ratios.max():.2f})",
                flush=True,
            )


def _timed(f, key, acc, calls=None):
    """``f``, adding the seconds of each call to ``acc[key]`` (and one to ``calls[key]``)."""

    def timed(*a):
        t0 = time.perf_counter()
        out = f(*a)
        acc[key] += time.perf_counter() - t0
        if calls is not None:
            calls[key] += 1
        return out

    return timed


def _kernel_calls(step, n=500):
    """Every kernel call of ``step`` timed through a wrapper (Numba's dispatch included): what is
    left of the step's time is Python between the calls."""
    import importlib
    from collections import defaultdict

    from numba.core.registry import CPUDispatcher

    bare = median_us(step, None, n)
    spent, calls = defaultdict(float), defaultdict(int)
    import pkgutil

    import scratchprop.kernels as K

    names = [m.name for m in pkgutil.iter_modules(K.__path__)]  # every kernel module, new ones too
    modules = [importlib.import_module("scratchprop.kernels." + m) for m in names]
    saved = [(m, k, v) for m in modules for k, v in vars(m).items() if isinstance(v, CPUDispatcher)]
    import scratchprop._numba_optimizers as O  # the optimizers hold their *_each kernels as class attributes

    classes = [c for c in vars(O).values() if isinstance(c, type) and "_kernel_each" in vars(c)]
    held = [(c, "_kernel_each", vars(c)["_kernel_each"]) for c in classes]
    for m, k, v in saved:
        setattr(m, k, _timed(v, f"{m.__name__.rsplit('.', 1)[1]}.{k}", spent, calls))
    for c, k, v in held:
        setattr(c, k, staticmethod(_timed(v.__func__, f"optim.{v.__func__.__name__}", spent, calls)))
    saved += held
    try:
        for _ in range(50):
            step()
        spent.clear()
        calls.clear()
        wrapped = median_us(step, None, n)
    finally:
        for m, k, v in saved:
            setattr(m, k, v)
    total = sum(spent.values()) / n * 1e6
    print(
        f"  numba step {bare:.0f} us ({wrapped:.0f} with each kernel call timed): {sum(calls.values()) / n:.0f}"
        f" kernel calls {total:.0f} us with their dispatch, Python between them ~{bare - total:.0f} us"
    )
    for k in sorted(spent, key=spent.get, reverse=True):
        print(f"    {k:28s} x{calls[k] / n:<3.0f} {spent[k] / n * 1e6:7.1f} us")


def here(*batches, rounds=4, steps=150):
    from booknet import book_net

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import scratchprop
    import scratchprop.numba as NB
    import scratchprop.numpy as NP
    from bench.cases import inputs  # the benchmarks' MNIST digits (a package: relative imports)
    from scratchprop import threads

    default = threads.BLAS_MIN_MACS
    print("784-100-10 SGD step, float64, MNIST digits; median us of interleaved blocks of", steps, "steps")
    print("net batch: reference | products here | in BLAS | speed-ups (here, BLAS) | default")
    for N in batches or (8, 32, 64, 100):
        x, t = inputs(N, "float64")
        for name in ("book", "fused"):
            if name == "book":
                nets = {M: book_net(M, 784, 100, 10) for M in (NP, NB)}

                def step(net):
                    grad = net.gradient(x, t)
                    for k in ("W1", "b1", "W2", "b2"):
                        net.params[k] -= 0.1 * grad[k]

            else:
                nets = {
                    M: scratchprop.TwoLayerNet(784, 100, 10, backend=M.__name__[12:], seed=0)
                    for M in (NP, NB)
                }

                def step(net):
                    net.train_step(x, t, 0.1)

            runs = {"reference": (NP, default), "here": (NB, 10**15), "blas": (NB, 0)}
            times = {k: [] for k in runs}
            for _ in range(rounds):
                for k, (M, limit) in runs.items():
                    threads.BLAS_MIN_MACS = limit
                    times[k].append(median_us(lambda: step(nets[M]), None, steps))
            threads.BLAS_MIN_MACS = default
            med = {k: np.median(v) for k, v in times.items()}
            chosen = "here" if not threads.blas_pays(N * 784 * 100, 8) else "BLAS"
            print(
                f"  {name:5s} {N:5d}: {med['reference']:8.1f} | {med['here']:8.1f} | {med['blas']:8.1f} | "
                f"{med['reference'] / med['here']:.2f}x, {med['reference'] / med['blas']:.2f}x | {chosen}"
            )


def cold(N=1, steps=400, rounds=3):
    from numba import njit

    import scratchprop
    from scratchprop import _numba_net

    rng = np.random.default_rng(0)
    xs = rng.random((64, N, 784)) * (rng.random((64, N, 784)) < 0.2)  # MNIST-like: 80 % zeros
    ts = rng.integers(0, 10, (64, N))
    net = scratchprop.TwoLayerNet(784, 100, 10, backend="numba", seed=0)
    A, B, AB = rng.random((1000, 784)), rng.random((784, 100)), np.empty((1000, 100))
    kernel, marks, args = _numba_net._K, {}, []
    pc = time.perf_counter

    class Timed:  # the module's kernel, its call timed
        @staticmethod
        def step(*a):
            marks["in"] = pc()
            out = kernel.step(*a)
            marks["out"] = pc()
            if not args:
                args.extend(a)
            return out

    @njit
    def empty(xc, lab, T, W1, b1, W2, b2, lr, update, h, s, y, dh, dW1, own):
        return 0

    _numba_net._K = Timed
    try:
        for i in range(50):
            net.train_step(xs[i % 64], ts[i % 64], 0.1)
        empty(*args)
        print(
            f"fused TwoLayerNet train_step, batch {N}, float64; median us of {steps} steps, {rounds} rounds"
        )
        print("            step | Python before | kernel call | Python after | dispatch alone")
        for _ in range(rounds):
            for name, dot in (("back to back", False), ("after np.dot", True)):
                parts = [[] for _ in range(5)]
                for i in range(steps):
                    if dot:
                        np.dot(A, B, out=AB)
                    t0 = pc()
                    net.train_step(xs[i % 64], ts[i % 64], 0.1)
                    t1 = pc()
                    if dot:
                        np.dot(A, B, out=AB)
                    t2 = pc()
                    empty(*args)
                    t3 = pc()
                    for k, v in enumerate(
                        (t1 - t0, marks["in"] - t0, marks["out"] - marks["in"], t1 - marks["out"], t3 - t2)
                    ):
                        parts[k].append(v * 1e6)
                med = [np.median(v) for v in parts]
                print(
                    f"  {name}: {med[0]:6.1f} | {med[1]:13.1f} | {med[2]:11.1f} | {med[3]:12.1f} | {med[4]:6.1f}"
                )
    finally:
        _numba_net._K = kernel


def booknet(*batches, rounds=21, steps=100):
    import resource

    from booknet import book_net

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import scratchprop.numba as NB
    import scratchprop.numpy as NP
    from bench.cases import inputs

    pc, keys = time.perf_counter, ("W1", "b1", "W2", "b2")

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    for N in batches or (32,):
        x, t = inputs(N, "float64")

        def script(net, n):  # the book's train_neuralnet.py: grad outlives the step
            times = []
            for _ in range(n):
                t0 = pc()
                grad = net.gradient(x, t)
                for key in keys:
                    net.params[key] -= 0.1 * grad[key]
                times.append(pc() - t0)
            return times

        def function(net, n):  # the same step in a function: grad is freed when it returns
            def step():
                grad = net.gradient(x, t)
                for key in keys:
                    net.params[key] -= 0.1 * grad[key]

            times = []
            for _ in range(n):
                t0 = pc()
                step()
                times.append(pc() - t0)
            return times

        cases = {
            (M.__name__[12:], how): (book_net(M, 784, 100, 10), how)
            for M in (NP, NB)
            for how in (script, function)
        }
        got = {k: ([], []) for k in cases}
        for r in range(rounds + 1):
            for k, (net, how) in cases.items():
                f0 = faults()
                times = how(net, steps)
                if r:  # the first round warms up
                    got[k][0].append(np.median(times) * 1e6)
                    got[k][1].append((faults() - f0) / steps)
        print(
            f"book TwoLayerNet, batch {N}, float64: median us per step over {rounds} rounds of {steps} steps"
        )
        for how in (script, function):
            ref, ours = got[("numpy", how)], got[("numba", how)]
            ratio = np.array(ref[0]) / np.array(ours[0])
            print(
                f"  {how.__name__:8s}: reference {np.median(ref[0]):6.1f} ({np.mean(ref[1]):4.1f} faults) | "
                f"numba {np.median(ours[0]):6.1f} ({np.mean(ours[1]):4.1f} faults) | "
                f"reference / numba {np.median(ratio):.2f}x ({ratio.min():.2f}-{ratio.max():.2f})"
            )


def phases(*batches, steps=2000):
    from collections import defaultdict

    from booknet import book_net

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import scratchprop.numba as NB
    import scratchprop.numpy as NP
    from bench.cases import inputs

    pc = time.perf_counter
    for N in batches or (32,):
        x, t = inputs(N, "float64")
        res = {}
        for M in (NP, NB):
            net, acc = book_net(M, 784, 100, 10), defaultdict(float)
            for name, layer in list(net.layers.items()) + [("SoftmaxWithLoss", net.lastLayer)]:
                for method in ("forward", "backward"):
                    setattr(layer, method, _timed(getattr(layer, method), f"{name}.{method}", acc))
            for k in range(steps + 200):  # 200 to warm up, then acc starts again
                if k == 200:
                    acc.clear()
                t0 = pc()
                grad = net.gradient(x, t)
                t1 = pc()
                for key in ("W1", "b1", "W2", "b2"):
                    net.params[key] -= 0.1 * grad[key]
                acc["net.gradient"] += t1 - t0
                acc["the user's update"] += pc() - t1
            res[M] = {k: v / steps * 1e6 for k, v in acc.items()}
        print(f"batch {N}, float64, mean us per step over {steps} steps: reference | numba")
        for k in res[NB]:
            print(f"  {k:22s} {res[NP][k]:8.1f} | {res[NB][k]:8.1f}")


if __name__ == "__main__":
    probes = {
        "phases": phases,
        "cold": cold,
        "booknet": booknet,
        "here": here,
        "cache": cache,
        "regions": regions,
        "dispatch": dispatch,
        "faults": faults,
        "products": products,
        "layers": layers,
        "chapter6": chapter6,
    }
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in probes:
        raise SystemExit(__doc__)
    probes[which](*(a if which == "layers" else int(a) for a in sys.argv[2:]))
