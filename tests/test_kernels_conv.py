"""The chapter-7 kernels (``scratchprop.kernels.conv``) against the reference's NumPy code.

The unfold is a copy and the folds add in the reference's order, so those
are compared bit for bit; so are pooling's max, ``arg_max`` (NaN included)
and its backward. The Numba layer runs the convolution a block of images
at a time: any split into blocks must give the whole batch's results. The
layer-level equivalence, error parity and determinism
run from the layer table (``tests/test_layer_table.py``).
"""

import numpy as np
import pytest

from scratchprop import _numba_conv as nb
from scratchprop import _numba_layers as nb_layers
from scratchprop import _numpy_conv as ref
from scratchprop import tolerances
from scratchprop.kernels import conv as K

DTYPES = [np.float64, np.float32]
# (N, C, H, W), filter (FH, FW), stride, pad: the book's 5x5 and 3x3, strides, padding, odd sizes
CASES = [
    ((2, 1, 8, 8), (5, 5), 1, 0),
    ((3, 2, 7, 5), (3, 3), 1, 1),
    ((2, 3, 9, 9), (3, 3), 2, 1),
    ((1, 2, 6, 7), (2, 3), 2, 2),
    ((3, 1, 5, 5), (1, 1), 1, 0),
    ((2, 2, 4, 4), (4, 4), 1, 3),
    ((2, 1, 1, 3), (5, 5), 3, 2),  # window offsets that see no image column at all
]


def same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def out_hw(shape, F, stride, pad):
    return ((shape[2] + 2 * pad - F[0]) // stride + 1, (shape[3] + 2 * pad - F[1]) // stride + 1)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape, F, stride, pad", CASES)
def test_unfold_is_im2col_transposed(shape, F, stride, pad, dt):
    x = np.random.default_rng(0).standard_normal(shape).astype(dt)
    OH, OW = out_hw(shape, F, stride, pad)
    colT = np.full((shape[1] * F[0] * F[1], shape[0] * OH * OW), np.nan, dt)
    K.unfold(x, F[0], F[1], stride, pad, colT)
    same_bits(np.ascontiguousarray(colT.T), ref.im2col(x, F[0], F[1], stride, pad))
    same_bits(np.ascontiguousarray(colT.T), K.im2col_naive(x, F[0], F[1], stride, pad))


def test_unfold_converts_float32_images_on_store():
    x = np.random.default_rng(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    colT = np.empty((9, 2 * 16))
    K.unfold(x, 3, 3, 1, 0, colT)
    same_bits(np.ascontiguousarray(colT.T), ref.im2col(x, 3, 3).astype(np.float64))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("shape, F, stride, pad", CASES)
def test_fold_is_col2im_bit_for_bit(shape, F, stride, pad, dt):
    OH, OW = out_hw(shape, F, stride, pad)
    col = np.random.default_rng(2).standard_normal((shape[0] * OH * OW, shape[1] * F[0] * F[1])).astype(dt)
    dx = np.full(shape, np.nan, dt)  # every element must be written
    K.fold(np.ascontiguousarray(col.T), F[0], F[1], stride, pad, dx)
    same_bits(dx, np.ascontiguousarray(ref.col2im(col, shape, F[0], F[1], stride, pad)))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
def test_bias_and_layout_passes(dt, relu):
    # 6 channels: four at a time, then two one by one; with relu, the Relu layer's values fused
    rng = np.random.default_rng(3)
    N, F, OH, OW = 3, 6, 5, 6
    rows = rng.standard_normal((F, N * OH * OW)).astype(dt)
    rows[0, :3] = np.nan, -0.0, 0.0
    b = rng.standard_normal(F).astype(dt)
    b[0] = 0
    out = np.empty((N, F, OH, OW), dt)
    K.cn_to_nchw(rows, b, out, relu)
    want = np.ascontiguousarray((rows.T + b).reshape(N, OH, OW, F).transpose(0, 3, 1, 2))
    relu_layer = nb_layers.Relu()
    if relu:
        want = relu_layer.forward(want)
    same_bits(out, want)
    dout = rng.standard_normal(out.shape).astype(dt)
    back, db = np.empty_like(rows), np.zeros(F, dt)  # db accumulates
    K.nchw_to_cn(dout, back, db, out, relu)
    d = relu_layer.backward(dout) if relu else dout
    same_bits(back, np.ascontiguousarray(d.transpose(1, 0, 2, 3).reshape(F, -1)))
    # db: per image and channel, eight running sums added as a tree, then the tail; image by image
    same_bits(db, sum8_order(d.reshape(N, F, OH * OW)))
    tol = tolerances.equivalence(dt)
    want = np.sum(back, axis=1)
    assert np.abs(db - want).max() <= tol["rtol"] * np.abs(want).max() + tol["atol"]


def sum8_order(v):
    """``kernels.conv._sum8``'s order over the last axis of ``v (N, F, P)``, added image by image."""
    N, F, P = v.shape
    db = np.zeros(F, v.dtype)
    for n in range(N):
        for f in range(F):
            row, q = v[n, f], P - P % 8
            a = np.zeros(8, v.dtype)
            for k in range(0, q, 8):
                a = a + row[k : k + 8]
            s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
            for k in range(q, P):
                s = s + row[k]
            db[f] = db[f] + s
    return db


POOLS = [
    ((2, 2), 2, 0),
    ((3, 3), 1, 1),
    ((2, 2), 1, 0),
    ((2, 2), 2, 1),
    ((1, 3), 1, 0),
    ((3, 2), 2, 0),
    ((3, 3), 3, 0),
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("P, stride, pad", POOLS)
@pytest.mark.parametrize("HW", [(7, 8), (6, 12)])  # (6, 12): 2x2 and 3x3 windows tile the image
def test_pooling_max_argmax_and_backward_are_the_references(P, stride, pad, dt, HW):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, *HW)).astype(dt)
    x[0, 0, 1, 1] = x[1, 1, 2, 3] = np.nan  # np.argmax: the first NaN wins
    x[2, 0, :3, :3] = -1.0  # all negative: padding zeros win where they take part
    x[2, 1, :2, :2] = 0.5  # ties: the first maximum
    layer = ref.Pooling(P[0], P[1], stride, pad)
    want = np.ascontiguousarray(layer.forward(x))
    dout = rng.standard_normal(want.shape).astype(dt)
    dout[0, 0, 0, 0] = -0.0  # col2im adds into zeros: -0.0 comes back as 0.0
    want_dx = np.ascontiguousarray(layer.backward(dout))
    N, C, OH, OW = want.shape
    for arg_dt in (np.uint8, np.intp):  # the layer's compact indices; intp for windows over 256
        out, arg = np.empty(want.shape, dt), np.empty(want.size, arg_dt)
        K.pool_forward(x, P[0], P[1], stride, pad, out, arg)
        same_bits(out, want)
        # the same indices as the reference's arg_max, whose rows are (n, oh, ow, c)
        assert np.array_equal(arg.reshape(N, C, OH, OW).transpose(0, 2, 3, 1).reshape(-1), layer.arg_max)
        dx = np.full(x.shape, np.nan, dt)
        K.pool_backward(dout, arg, P[0], P[1], stride, pad, dx)
        same_bits(dx, want_dx)


@pytest.mark.parametrize("read_first", [False, True])
def test_pooling_backward_reads_arg_max_once_it_was_read_or_changed(read_first):
    # the layer keeps compact indices; once arg_max is read, backward uses that array, so a change
    # made to it counts as in the reference
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 6))
    dout = rng.standard_normal((2, 3, 3, 3))
    ours, theirs = nb.Pooling(2, 2, 2), ref.Pooling(2, 2, 2)
    same_bits(ours.forward(x), np.ascontiguousarray(theirs.forward(x)))
    if read_first:
        ours.arg_max[:5] = (ours.arg_max[:5] + 1) % 4
        theirs.arg_max[:5] = (theirs.arg_max[:5] + 1) % 4
    same_bits(ours.backward(dout), np.ascontiguousarray(theirs.backward(dout)))
    ours.arg_max[0] = 7  # outside a 2x2 window: the reference's error, not a read out of bounds
    with pytest.raises(IndexError):
        theirs.arg_max[0] = 7
        theirs.backward(dout)
    with pytest.raises(IndexError):
        ours.backward(dout)


@pytest.mark.parametrize("chunk_bytes", [1, 3000, 1 << 30])
def test_convolution_in_blocks_of_images_gives_the_whole_batchs_results(monkeypatch, chunk_bytes):
    # the layer's blocks (one image, a few, the whole batch): db the same bits; out, dx and dW the
    # same sums (BLAS may group a product's terms by its shape, and dW adds block by block)
    import scratchprop._numba_conv as nbconv

    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 9, 9))
    W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    dout = rng.standard_normal((5, 4, 9, 9))
    runs = []
    for size in (1 << 30, chunk_bytes):
        monkeypatch.setattr(nbconv, "CHUNK_BYTES", size)
        layer = nbconv.Convolution(W, b, 1, 1)
        out = layer.forward(x)
        dx = layer.backward(dout)
        runs.append((out, dx, layer.db, layer.dW, layer.col))
    same_bits(runs[1][2], runs[0][2])
    for i in (0, 1, 3):
        np.testing.assert_allclose(runs[1][i], runs[0][i], rtol=1e-12, atol=1e-12)
    same_bits(runs[1][4], ref.im2col(x, 3, 3, 1, 1))
