"""Probes behind the convolution's design choices (``bench/CONV.md``); run from the repository root.

``python bench/conv_probe.py blocks``
    The Numba ``Convolution``'s forward + backward at batch 100 for the book's shapes (SimpleConvNet's
    conv and DeepConvNet's three kinds), with the unfolded images in blocks of 0.25 to 16 MiB or the
    whole batch at once (``CHUNK_BYTES``, a thread's block), float64 and float32.

``python bench/conv_probe.py after-product [processes]``
    SimpleConvNet's unfold of 72 float32 images (4 MiB) alone, right after a product that read its
    buffer (``np.dot`` on NumPy's BLAS, 2 threads, then 1), and NumPy's ``fill`` of that buffer and
    ``sum`` of the product the same way, in several fresh processes ten seconds apart.

``python bench/conv_probe.py direct``
    The convolution's forward at batch 100 for the book's shapes three ways: the layer (unfold a
    block, one BLAS product, bias and layout), a direct convolution in Numba (each filter value
    times a shifted image row, added into the output row: no unfolded matrix), serial and
    ``prange`` over images. The issue asked for im2col + GEMM against direct convolution.

``python bench/conv_probe.py coherence [rounds]``
    The slow state's mechanism, without BLAS: a 4 MiB buffer filled on vCPU 0 alone, right after
    a thread on vCPU 1 read it, and right after that thread read another buffer, every few seconds
    (Linux: the threads are pinned). When the two vCPUs do not share a cache, the second is
    10-30x the first.

``python bench/conv_probe.py hold [rounds]``
    A training step of ``SimpleConvNet`` / ``DeepConvNet(backend="numba")`` (float64, float32) with
    NumPy's BLAS on 2 threads (each Convolution holds it at one thread during its call) and held
    at one thread for the whole step, interleaved: why a Numba convnet holds it for its step.

``python bench/conv_probe.py pieces``
    The convolution's three products on one thread (forward, ``dW``, ``dx``), for one thread's
    block of the book's shapes (batch 100 on 2 threads), cut into pieces of 32 to 2048 columns or
    whole: what ``_numba_conv._pieces`` and ``MIN_PIECE`` decide. Prints the piece that fits
    OpenBLAS's small-matrix path (``_blas.SMALL_GEMM_MACS``).

``python bench/conv_probe.py coldstart``
    Start-up: a fresh ``python`` doing the imports, ``SimpleConvNet`` / ``DeepConvNet(backend="numba")``
    and its first Adam step at batch 100, on an empty ``NUMBA_CACHE_DIR`` and then with it filled
    (float64, then float32 on the same cache: its own signatures). Run it with the Python of the
    install to judge (``pip install -e .``: no SciPy, which Numba imports when present).

(``conv-on-one-thread`` and ``blas-threads``, the probes of the design before the convolution
ran parallel across the batch, are in ``git show 483dfce:bench/conv_probe.py``.)
"""

import subprocess
import sys
import time

import numpy as np

SHAPES = (  # (channels in, filters, image size, filter size, pad): the book's convolutions
    (1, 30, 28, 5, 0),
    (16, 16, 28, 3, 1),
    (32, 32, 14, 3, 2),
    (64, 64, 8, 3, 1),
)


def _median_ms(fn, n=10):
    fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.median(times) * 1e3


def blocks():
    import scratchprop._numba_conv as nbconv

    rng = np.random.default_rng(0)
    sizes = (1 << 18, 1 << 20, 2 << 20, 4 << 20, 16 << 20, 1 << 40)
    print(
        "channels filters image dtype | forward + backward ms for blocks of "
        + ", ".join("whole batch" if s == 1 << 40 else f"{s / (1 << 20):g} MiB" for s in sizes)
    )
    for dt in (np.float64, np.float32):
        for C, FN, H, FS, pad in SHAPES:
            x = rng.random((100, C, H, H)).astype(dt)
            W = (rng.standard_normal((FN, C, FS, FS)) * 0.1).astype(dt)
            layer = nbconv.Convolution(W, np.zeros(FN, dt), 1, pad)
            dout = rng.standard_normal(layer.forward(x).shape).astype(dt)
            row = []
            for size in sizes:
                nbconv.CHUNK_BYTES = size
                row.append(
                    _median_ms(lambda layer=layer, x=x, dout=dout: (layer.forward(x), layer.backward(dout)))
                )
            print(f"{C:8d} {FN:7d} {H:5d} {np.dtype(dt).name:7s} | " + "  ".join(f"{t:7.2f}" for t in row))


def _direct_kernels():
    from numba import njit, prange

    def conv(x, W, b, pad, out, n0, n1):
        # out[n, f, oh, :] = b[f] + sum over (c, i, j) of W[f, c, i, j] * x_padded[n, c, oh + i, j : j + OW]
        _, C, H, Wd = x.shape
        F, _, FH, FW = W.shape
        OH, OW = out.shape[2], out.shape[3]
        for n in range(n0, n1):
            for f in range(F):
                for oh in range(OH):
                    row = out[n, f, oh]
                    row[:] = b[f]
                    for c in range(C):
                        for i in range(FH):
                            h = oh + i - pad
                            if h < 0 or h >= H:
                                continue
                            src = x[n, c, h]
                            for j in range(FW):
                                w = W[f, c, i, j]
                                lo = max(0, pad - j)  # output columns whose input column is inside
                                hi = min(OW, Wd + pad - j)
                                for ow in range(lo, hi):  # contiguous: vectorised
                                    row[ow] += w * src[ow + j - pad]

    serial = njit(cache=False)(conv)

    def by_image(x, W, b, pad, out):
        for n in prange(x.shape[0]):
            serial(x, W, b, pad, out, n, n + 1)

    return serial, njit(parallel=True, cache=False)(by_image)


def direct():
    import scratchprop.numba as NB

    serial, parallel = _direct_kernels()
    rng = np.random.default_rng(0)
    print("channels filters image dtype | forward ms: layer (im2col + BLAS) | direct serial | direct prange")
    for dt in (np.float64, np.float32):
        for C, FN, H, FS, pad in SHAPES:
            x = rng.random((100, C, H, H)).astype(dt)
            W = (rng.standard_normal((FN, C, FS, FS)) * 0.1).astype(dt)
            b = rng.standard_normal(FN).astype(dt)
            layer = NB.Convolution(W, b, 1, pad)
            want = layer.forward(x)
            out = np.empty_like(want)
            serial(x, W, b, pad, out, 0, 100)
            np.testing.assert_allclose(out, want, rtol=1e-4 if dt == np.float32 else 1e-10, atol=1e-4)
            args = (x, W, b, pad, out)
            row = [
                _median_ms(lambda layer=layer, x=x: layer.forward(x)),
                _median_ms(lambda args=args: serial(*args, 0, 100)),
                _median_ms(lambda args=args: parallel(*args)),
            ]
            print(f"{C:8d} {FN:7d} {H:5d} {np.dtype(dt).name:7s} | " + "  ".join(f"{t:7.2f}" for t in row))


def hold(rounds=10):
    import contextlib

    import scratchprop
    from scratchprop import threads

    rng = np.random.default_rng(0)
    print("net dtype | step ms, median [min-max] of rounds: BLAS 2 threads | held at 1 for the whole step")
    for name in ("SimpleConvNet", "DeepConvNet"):
        for dt in (np.float64, np.float32):
            net = getattr(scratchprop, name)(backend="numba", seed=0, dtype=dt)
            opt = scratchprop.numba.Adam(lr=0.001)
            x, t = rng.random((100, 1, 28, 28)).astype(dt), rng.integers(0, 10, 100)
            res = {2: [], 1: []}

            def step(net=net, opt=opt, x=x, t=t):
                opt.update(net.params, net.gradient(x, t))

            for r in range(rounds):
                for n in (2, 1) if r % 2 == 0 else (1, 2):
                    # the net's own choice (it holds) overridden either way
                    net._blas_for_step = threads.one_thread_blas if n == 1 else contextlib.nullcontext
                    res[n].append(_median_ms(step, 3))
            cells = [f"{np.median(v):6.1f} [{min(v):.1f}-{max(v):.1f}]" for v in (res[2], res[1])]
            print(f"{name} {np.dtype(dt).name} | " + " | ".join(cells), flush=True)


_COHERENCE = """
import os, sys, threading, time, numpy as np
from numba import njit

@njit(nogil=True)
def fill(buf, v):
    for i in range(buf.size):
        buf[i] = v

@njit(nogil=True)
def readsum(buf):
    s = 0.0
    for i in range(buf.size):
        s += buf[i]
    return s

X, Y = np.zeros(1 << 19), np.zeros(1 << 19)  # 4 MiB each
fill(X, 1.0), readsum(X)
go, done, target = threading.Event(), threading.Event(), [X]

def reader():  # the other vCPU reads a buffer, as OpenBLAS's worker reads its half of a block
    os.sched_setaffinity(0, {1})
    while True:
        go.wait()
        go.clear()
        readsum(target[0])
        done.set()

threading.Thread(target=reader, daemon=True).start()
os.sched_setaffinity(0, {0})

def fill_ms(mode, reps=30):
    ts = []
    for r in range(reps):
        if mode:
            target[0] = X if mode == "same" else Y
            go.set(), done.wait(), done.clear()
        t0 = time.perf_counter()
        fill(X, float(r))
        ts.append(time.perf_counter() - t0)
    return np.median(ts) * 1e3

for _ in range(int(sys.argv[1])):
    a, s, o = fill_ms(None), fill_ms("same"), fill_ms("other")
    print(time.strftime("%H:%M:%S"), f"fill X on vCPU 0: alone {a:.3f} ms | after vCPU 1 read X {s:.3f} | after it read Y {o:.3f}", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def coherence(rounds=8, pause=3.0):
    subprocess.run([sys.executable, "-c", _COHERENCE, str(rounds), str(pause)], check=True)


_AFTER = """
import time, numpy as np
from threadpoolctl import threadpool_limits
from scratchprop.kernels import conv as K
rng = np.random.default_rng(0)
x = rng.random((72, 1, 28, 28)).astype(np.float32)
colT = np.empty((25, 72 * 576), np.float32)
A = rng.random((30, 25)).astype(np.float32)
rows = np.empty((30, 72 * 576), np.float32)

def ms(work, product=True, n=30):
    out = []
    for _ in range(n + 1):
        if product:
            np.dot(A, colT, out=rows)
        t0 = time.perf_counter()
        work()
        out.append(time.perf_counter() - t0)
    return np.median(out[1:]) * 1e3

unfold = lambda: K.unfold(x, 5, 5, 1, 0, colT)
r = [f"unfold alone {ms(unfold, False):.2f}", f"after the product {ms(unfold):.2f}"]
with threadpool_limits(1, user_api="blas"):
    r.append(f"(BLAS 1 thread: {ms(unfold):.2f})")
r.append(f"| fill alone {ms(lambda: colT.fill(0.5), False):.2f}, after {ms(lambda: colT.fill(0.5)):.2f}")
r.append(f"| sum of the product alone {ms(rows.sum, False):.2f}, after {ms(rows.sum):.2f} ms")
print("  ".join(r))
"""


def after_product(processes=6):
    for i in range(processes):
        if i:
            time.sleep(10)
        subprocess.run([sys.executable, "-c", _AFTER], check=True)


def pieces():
    import scratchprop._numba_conv as nbconv
    from scratchprop import threads
    from scratchprop.kernels import conv_batch as KB

    rng = np.random.default_rng(0)
    print(f"SMALL_GEMM_MACS {nbconv._blas.SMALL_GEMM_MACS}, MIN_PIECE {nbconv.MIN_PIECE}; ms per 50 images")
    for dt in (np.float32, np.float64):
        for C, FN, H, F, pad in SHAPES:
            K, OH = C * F * F, H + 2 * pad - F + 1
            P = OH * OH
            B = max(1, min(50, nbconv.CHUNK_BYTES // (K * P * np.dtype(dt).itemsize)))
            m, blocks = B * P, -(-50 // B)
            W, colT = rng.random((FN, K)).astype(dt), rng.random((K, m)).astype(dt)
            rows, dWT, dcol = np.empty((FN, m), dt), np.zeros((K, FN), dt), np.empty((K, m), dt)
            products = {  # name: (kernel, its arguments before the piece)
                "forward": (KB._by_columns, (False, W, colT, rows)),
                "dW": (KB._by_inner, (colT, rows, dWT)),
                "dx": (KB._by_columns, (True, W, rows, dcol)),
            }
            print(
                f"{dt.__name__} C={C} FN={FN} {H}x{H} {F}x{F}: {m} columns, pieces now {nbconv._pieces(FN, K)}"
            )
            with threads.one_thread_blas():
                for name, (fn, args) in products.items():
                    cells = [
                        f"{p}: {_median_ms(lambda p=p, fn=fn, args=args: fn(*args, p), 20) * blocks:.3f}"
                        for p in (32, 64, 128, 256, 512, 1024, 2048, 0)
                    ]
                    print(f"    {name:8s}", "  ".join(cells).replace(" 0:", " whole:"))


_FIRST_STEP = """
import sys, numpy as np, scratchprop
dt = np.dtype(sys.argv[2])
net = getattr(scratchprop, sys.argv[1])(backend="numba", seed=0, dtype=dt)
opt = scratchprop.numba.Adam(lr=0.001)
x = np.random.default_rng(0).random((100, 1, 28, 28)).astype(dt)
opt.update(net.params, net.gradient(x, np.arange(100) % 10))
"""


def coldstart():
    import importlib.util
    import os
    import tempfile

    # Numba imports SciPy's BLAS wrappers when SciPy is installed (its first compile or cache load):
    # part of the start-up of a process that has SciPy, as most have; the default install does not
    scipy = importlib.util.find_spec("scipy") is not None
    print(f"{sys.executable}: SciPy {'installed' if scipy else 'not installed (the default install)'}")
    print("net dtype | first step of a fresh process, s: empty cache | cached (median of 3)")
    for name in ("SimpleConvNet", "DeepConvNet"):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python keeps its bytecode caches
            for dt in ("float64", "float32"):
                times = []
                for _ in range(4):
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-c", _FIRST_STEP, name, dt], check=True, env=env)
                    times.append(time.perf_counter() - t0)
                print(f"{name} {dt} | {times[0]:.1f} | {np.median(times[1:]):.2f}", flush=True)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "blocks":
        blocks()
    elif what == "after-product":
        after_product(int(sys.argv[2]) if len(sys.argv) > 2 else 6)
    elif what == "direct":
        direct()
    elif what == "hold":
        hold(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    elif what == "coldstart":
        coldstart()
    elif what == "pieces":
        pieces()
    elif what == "coherence":
        coherence(int(sys.argv[2]) if len(sys.argv) > 2 else 8)
    else:
        sys.exit(__doc__)
