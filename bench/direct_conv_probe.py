"""Probe: the direct convolution (``kernels/conv_direct.py``) against unfold + OpenBLAS (issue 16).

``python bench/direct_conv_probe.py``
    DeepConvNet's 3x3, stride-1, pad-1 float32 convolutions at batch 100, on ONE thread (the
    probe sets ``NUMBA_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` to 1 unless they are set): the
    forward of the Numba ``Convolution`` layer on its unfold path (unfold a block, one OpenBLAS
    product, bias and layout; the probe sets ``DIRECT_MIN_FILL`` so that the layer never takes
    the direct path) against the direct convolution, image by image, with no unfolded matrix:
    each image padded once into a flat buffer, the products a register-blocked micro-kernel in
    LLVM vector IR (``kernels/conv_direct.py`` says how). Then the backward's ``dx`` (all but the
    first layer's): the same direct convolution of the padded ``dout`` with the filters flipped
    and transposed, against the layer's share of its ``backward`` (its time less
    ``backward_params``', which skips ``dx``: the fold and a product). Checked against the
    float64 reference (relative errors printed). Needs AVX2 + FMA.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from scratchprop.kernels import conv_direct as K  # noqa: E402


@njit
def _images(x, Wm, b, pad, off, xp, full, out):
    """``out[n] = conv(x[n], Wm) + b`` for every image, through the layer's direct kernels."""
    C, H, W = x.shape[1:]
    for n in range(x.shape[0]):
        K.pad_rows(x[n].reshape(C, H * W), 0, H, W, pad, xp)
        K.convolve(Wm, xp, off, full)
        K.to_image(full, W + 2 * pad, out[n])
        for f in range(out.shape[1]):
            out[n, f] += b[f]


def direct(x, W, b, pad):
    """``conv(x, W) + b`` (stride 1) by :mod:`scratchprop.kernels.conv_direct`, image by image."""
    N, C, H, Wd = x.shape
    F, _, FH, FW = W.shape
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = Hp - FH + 1, Wp - FW + 1
    step = K.positions(x.itemsize)
    npos = -(-OH * Wp // step) * step
    off = ((np.arange(C)[:, None, None] * Hp + np.arange(FH)[:, None]) * Wp + np.arange(FW)).reshape(-1)
    xp = np.empty(C * Hp * Wp + npos + FW, x.dtype)
    full = np.empty((F, npos), x.dtype)
    out = np.empty((N, F, OH, OW), x.dtype)
    _images(x, np.ascontiguousarray(W.reshape(F, -1)), b, pad, off.astype(np.intp), xp, full, out)
    return out


#: DeepConvNet's convolutions: (channels, filters, image side), all 3x3, stride 1, pad 1.
SHAPES = ((1, 16, 28), (16, 16, 28), (16, 32, 14), (32, 32, 14), (32, 64, 7), (64, 64, 7))


def _median_s(fn, rounds=7):
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _rel(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def main():
    import scratchprop.numba as nb
    import scratchprop.numpy as npref
    from scratchprop import _numba_conv

    _numba_conv.DIRECT_MIN_FILL = 2.0  # the layer as it was: unfold + product (it now takes the direct path)

    rng = np.random.default_rng(0)
    N = 100
    threads = os.environ["NUMBA_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]
    print(f"float32, batch {N}, Numba / OpenBLAS threads {threads[0]} / {threads[1]}; median of 7, ms")
    total = np.zeros(4)
    for C, F, S in SHAPES:
        x = rng.random((N, C, S, S), dtype=np.float32)
        W = (rng.standard_normal((F, C, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(F).astype(np.float32)
        dout = rng.standard_normal((N, F, S, S)).astype(np.float32)
        layer = nb.Convolution(W, b, 1, 1)
        ref = npref.Convolution(W.astype(np.float64), b.astype(np.float64), 1, 1)
        y_ref = ref.forward(x.astype(np.float64))
        dx_ref = ref.backward(dout.astype(np.float64))
        err = [_rel(layer.forward(x), y_ref), _rel(direct(x, W, b, 1), y_ref)]
        times = [_median_s(partial(layer.forward, x)), _median_s(partial(direct, x, W, b, 1))]
        line = f"{C:2d}->{F:2d} {S:2d}x{S:2d} forward: layer {times[0] * 1e3:6.2f} | direct {times[1] * 1e3:6.2f}"
        if C % K.ROWS == 0:  # dx: the padded dout against the filters flipped and transposed (C outputs)
            Wt = np.ascontiguousarray(W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            zero = np.zeros(C, np.float32)
            err += [_rel(layer.backward(dout), dx_ref), _rel(direct(dout, Wt, zero, 1), dx_ref)]
            # the layer's dx share: its backward less its backward without dx (dW and db only)
            dx_layer = _median_s(partial(layer.backward, dout)) - _median_s(
                partial(layer.backward_params, dout)
            )
            times += [dx_layer, _median_s(partial(direct, dout, Wt, zero, 1))]
            line += f" || dx: layer {times[2] * 1e3:6.2f} | direct {times[3] * 1e3:6.2f}"
        total[: len(times)] += times
        print(line + " || rel err vs float64 reference " + " ".join(f"{e:.0e}" for e in err))
    print(
        f"all six forwards: layer {total[0] * 1e3:.1f} ms, direct {total[1] * 1e3:.1f} ms; "
        f"the five dx: layer {total[2] * 1e3:.1f} ms, direct {total[3] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
