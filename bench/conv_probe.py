"""Probes behind the convolution's design choices (``bench/CONV.md``); run from the repository root.

``python bench/conv_probe.py blocks``
    The Numba ``Convolution``'s forward + backward at batch 100 for the book's shapes (SimpleConvNet's
    conv and DeepConvNet's three kinds), with the unfolded images in blocks of 0.25 to 16 MiB or the
    whole batch at once (``CHUNK_BYTES``), float64 and float32.

``python bench/conv_probe.py after-product [processes]``
    SimpleConvNet's unfold of 72 float32 images (4 MiB) alone, right after a product that read its
    buffer (``np.dot`` on NumPy's BLAS, 2 threads, then 1), and NumPy's ``fill`` of that buffer and
    ``sum`` of the product the same way, in several fresh processes ten seconds apart.

``python bench/conv_probe.py direct``
    The convolution's forward at batch 100 for the book's shapes three ways: the layer (unfold a
    block, one BLAS product, bias and layout), a direct convolution in Numba (each filter value
    times a shifted image row, added into the output row: no unfolded matrix), serial and
    ``prange`` over images. The issue asked for im2col + GEMM against direct convolution.

``python bench/conv_probe.py conv-on-one-thread [rounds]``
    A training step of the book-style SimpleConvNet (float64) and of ``SimpleConvNet(backend="numba")``
    (float64, float32) with the convolution's products on NumPy's BLAS as it is (2 threads) and on
    one thread (OpenBLAS set to 1 thread during each Convolution call, 2 after), interleaved in one
    process: median ms of each, per round. Shows what a single-threaded convolution costs in the
    VM's fast state and saves in its slow one.

``python bench/conv_probe.py blas-threads [processes]``
    One Convolution backward (SimpleConvNet's, batch 100) with NumPy's BLAS on 2 threads and on 1,
    in several fresh processes: shows when OpenBLAS's spinning worker slows the passes that run
    on the calling thread.
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


def conv_on_one_thread(rounds=3):
    import ctypes
    import types

    sys.path.insert(0, "tests")
    import booknet_conv

    import scratchprop._numba_conv as nbconv
    import scratchprop.numba as NB
    from scratchprop import SimpleConvNet
    from scratchprop.kernels import _blas

    set_threads = ctypes.CDLL(_blas.PATH).scipy_openblas_set_num_threads64_
    set_threads.argtypes = [ctypes.c_int]
    two = nbconv.Convolution

    class OneThread(two):
        def _forward(self, x, relu):
            set_threads(1)
            try:
                return two._forward(self, x, relu)
            finally:
                set_threads(2)

        def _backward(self, dout, need_dx, relu):
            set_threads(1)
            try:
                return two._backward(self, dout, need_dx, relu)
            finally:
                set_threads(2)

    def step_ms(kind, dt, cls):
        np.random.seed(0)
        if kind == "book":
            mod = types.SimpleNamespace(**{k: getattr(NB, k) for k in NB.__all__})
            mod.Convolution = cls
            net = booknet_conv.book_simple_convnet_class(mod)()
        else:
            net = SimpleConvNet(backend="numba", dtype=dt, seed=0)
            net.layers["Conv1"].__class__ = cls
        opt = NB.Adam(lr=0.001)
        x, t = np.random.rand(100, 1, 28, 28).astype(dt), np.random.randint(0, 10, 100)

        def step():
            opt.update(net.params, net.gradient(x, t))

        return _median_ms(step, 25)

    print("round | step ms, BLAS 2 threads / 1 thread in the convolution")
    for r in range(rounds):
        row = []
        for kind, dt in (("book", np.float64), ("net", np.float64), ("net", np.float32)):
            row.append(
                f"{kind} {np.dtype(dt).name} {step_ms(kind, dt, two):5.1f} / {step_ms(kind, dt, OneThread):5.1f}"
            )
        print(f"{r:5d} | " + "   ".join(row), flush=True)


_ONE = """
import time, numpy as np
from threadpoolctl import threadpool_limits
import scratchprop.numba as NB
rng = np.random.default_rng(0)
x = rng.standard_normal((100, 1, 28, 28))
layer = NB.Convolution(rng.standard_normal((30, 1, 5, 5)) * 0.3, np.zeros(30), 1, 0)
dout = rng.standard_normal(layer.forward(x).shape)
out = []
for n in (2, 1, 2, 1):
    with threadpool_limits(n, user_api="blas"):
        layer.backward(dout)
        t0 = time.perf_counter()
        for _ in range(15):
            layer.backward(dout)
        out.append(f"BLAS {n}: {(time.perf_counter() - t0) / 15 * 1e3:5.1f} ms")
print("   ".join(out))
"""


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


def blas_threads(processes=10):
    for _ in range(processes):
        subprocess.run([sys.executable, "-c", _ONE], check=True)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "blocks":
        blocks()
    elif what == "after-product":
        after_product(int(sys.argv[2]) if len(sys.argv) > 2 else 6)
    elif what == "direct":
        direct()
    elif what == "conv-on-one-thread":
        conv_on_one_thread(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif what == "blas-threads":
        blas_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    else:
        sys.exit(__doc__)
