"""Probes behind the convolution's design choices (``bench/CONV.md``); run from the repository root.

``python bench/conv_probe.py blocks``
    The Numba ``Convolution``'s forward + backward at batch 100 for the book's shapes (SimpleConvNet's
    conv and DeepConvNet's three kinds), with the unfolded images in blocks of 0.25 to 16 MiB or the
    whole batch at once (``CHUNK_BYTES``), float64 and float32.

``python bench/conv_probe.py after-product [processes]``
    SimpleConvNet's unfold of 72 float32 images (4 MiB) alone, right after a product that read its
    buffer (``np.dot`` on NumPy's BLAS, 2 threads, then 1), and NumPy's ``fill`` of that buffer and
    ``sum`` of the product the same way, in several fresh processes ten seconds apart.

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
    sizes = (1 << 18, 1 << 20, 4 << 20, 16 << 20, 1 << 40)
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
    elif what == "blas-threads":
        blas_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 10)
    else:
        sys.exit(__doc__)
