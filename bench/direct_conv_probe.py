"""Probe: the direct convolution (``kernels/conv_direct.py``) against unfold + OpenBLAS (issue 16).

``python bench/direct_conv_probe.py``
    DeepConvNet's six 3x3, stride-1 float32 convolutions (their pads: 1, but 2 for the fourth)
    at batch 100, on ONE thread (the probe sets ``NUMBA_NUM_THREADS`` and
    ``OPENBLAS_NUM_THREADS`` to 1 unless they are set). The Numba ``Convolution`` layer on its
    unfold path (unfold a block, one OpenBLAS product, layout; the probe sets
    ``DIRECT_MIN_FILL`` so that the layer never takes the direct path) against the direct
    kernels image by image, with no unfolded matrix (``kernels/conv_direct.py`` says how):
    the forward; ``dW`` (the layer's ``backward_params``, which skips ``dx``, against
    ``filter_gradient``); and ``dx`` for all but the first layer (the layer's ``backward`` less
    its ``backward_params``, against the direct convolution of the padded ``dout`` with the
    filters flipped and transposed). Checked against the float64 reference (relative errors
    printed). Needs AVX2 + FMA; with AVX-512 the kernels use its 16-lane vectors.
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
        K.to_image(full, W + 2 * pad, b[:0], False, out[n])
        for f in range(out.shape[1]):
            out[n, f] += b[f]


@njit
def _filter_gradients(x, drows, pad, off, xp, DT, dWT):
    """``dWT (K, F)``: the filter gradient summed over the images, through the layer's direct kernels."""
    C, H, W = x.shape[1:]
    OH, OW = H + 2 * pad - 2, W + 2 * pad - 2
    dWT[:] = 0
    for n in range(x.shape[0]):
        K.pad_rows(x[n].reshape(C, H * W), 0, H, W, pad, xp)
        K.from_rows(drows, n * OH * OW, OH, OW, W + 2 * pad, DT)
        K.filter_gradient(DT, xp, off, dWT)


def _geometry(x, F, FH, FW, pad):
    N, C, H, Wd = x.shape
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = Hp - FH + 1, Wp - FW + 1
    npos = K.positions(F, OH * Wp, x.itemsize)
    off = ((np.arange(C)[:, None, None] * Hp + np.arange(FH)[:, None]) * Wp + np.arange(FW)).reshape(-1)
    return OH, OW, Wp, npos, off.astype(np.intp), np.empty(C * Hp * Wp + npos + FW, x.dtype)


def direct(x, W, b, pad):
    """``conv(x, W) + b`` (stride 1) by :mod:`scratchprop.kernels.conv_direct`, image by image."""
    F, _, FH, FW = W.shape
    OH, OW, Wp, npos, off, xp = _geometry(x, F, FH, FW, pad)
    full = np.empty((F, npos), x.dtype)
    out = np.empty((x.shape[0], F, OH, OW), x.dtype)
    _images(x, np.ascontiguousarray(W.reshape(F, -1)), b, pad, off, xp, full, out)
    return out


def direct_dW(x, dout, pad):
    """The filter gradient ``(F, C, 3, 3)`` by :func:`.conv_direct.filter_gradient`, image by image."""
    N, F, OH, OW = dout.shape
    _, _, Wp, _, off, xp = _geometry(x, F, 3, 3, pad)
    drows = np.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(F, -1)  # the layer's channel rows
    dWT = np.empty((off.size, F), x.dtype)
    _filter_gradients(x, drows, pad, off, xp, np.empty((OH * Wp, F), x.dtype), dWT)
    return dWT.T.reshape(F, x.shape[1], 3, 3)


#: DeepConvNet's convolutions: (channels, filters, image side, pad), all 3x3, stride 1.
SHAPES = ((1, 16, 28, 1), (16, 16, 28, 1), (16, 32, 14, 1), (32, 32, 14, 2), (32, 64, 8, 1), (64, 64, 8, 1))


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
    total = np.zeros(6)
    for C, F, S, pad in SHAPES:
        x = rng.random((N, C, S, S), dtype=np.float32)
        W = (rng.standard_normal((F, C, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(F).astype(np.float32)
        side = S + 2 * pad - 2
        dout = rng.standard_normal((N, F, side, side)).astype(np.float32)
        layer = nb.Convolution(W, b, 1, pad)
        ref = npref.Convolution(W.astype(np.float64), b.astype(np.float64), 1, pad)
        y_ref = ref.forward(x.astype(np.float64))
        dx_ref = ref.backward(dout.astype(np.float64))
        err = [_rel(layer.forward(x), y_ref), _rel(direct(x, W, b, pad), y_ref)]
        times = [_median_s(partial(layer.forward, x)), _median_s(partial(direct, x, W, b, pad))]
        line = f"{C:2d}->{F:2d} {S:2d}x{S:2d} pad {pad} forward: layer {times[0] * 1e3:5.2f} | direct {times[1] * 1e3:5.2f}"
        # dW: the layer's backward without dx (unfold, product, db) against the direct filter gradient
        layer.backward_params(dout)
        err += [_rel(layer.dW, ref.dW), _rel(direct_dW(x, dout, pad), ref.dW)]
        times += [
            _median_s(partial(layer.backward_params, dout)),
            _median_s(partial(direct_dW, x, dout, pad)),
        ]
        line += f" || dW: layer {times[2] * 1e3:5.2f} | direct {times[3] * 1e3:5.2f}"
        if C % K.ROWS == 0:  # dx: the padded dout against the filters flipped and transposed (C outputs)
            Wt = np.ascontiguousarray(W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            zero = np.zeros(C, np.float32)
            err += [_rel(layer.backward(dout), dx_ref), _rel(direct(dout, Wt, zero, 2 - pad), dx_ref)]
            # the layer's dx share: its backward less its backward without dx (dW and db only)
            dx_layer = _median_s(partial(layer.backward, dout)) - times[2]
            times += [dx_layer, _median_s(partial(direct, dout, Wt, zero, 2 - pad))]
            line += f" || dx: layer {times[4] * 1e3:5.2f} | direct {times[5] * 1e3:5.2f}"
        total[: len(times)] += times
        print(line + " || rel err vs float64 reference " + " ".join(f"{e:.0e}" for e in err))
    print(
        f"all six: forward layer {total[0] * 1e3:.1f} ms, direct {total[1] * 1e3:.1f}; "
        f"dW layer {total[2] * 1e3:.1f}, direct {total[3] * 1e3:.1f}; "
        f"the five dx: layer {total[4] * 1e3:.1f}, direct {total[5] * 1e3:.1f}"
    )


if __name__ == "__main__":
    main()
