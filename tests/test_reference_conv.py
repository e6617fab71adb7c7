"""The chapter-7 reference: im2col / col2im / Convolution / Pooling against direct loops,
the book's code, finite differences; the bugs fixed; the errors.

The ``book_*`` functions below restate the book's ``common/util.py`` and
``common/layers.py`` (oreilly-japan/deep-learning-from-scratch, MIT licence)
in the book's operation order, to check that float64 results are the book's
bit for bit.
"""

import numpy as np
import pytest
from fd import fd_grad

from scratchprop.numpy import Convolution, Pooling, col2im, conv_output_size, im2col

rng = np.random.default_rng(7)

# (input shape, filter h, filter w, stride, pad)
CASES = [
    ((2, 3, 7, 6), 3, 3, 1, 0),
    ((2, 3, 7, 6), 3, 2, 2, 1),
    ((1, 1, 5, 5), 5, 5, 1, 0),
    ((3, 2, 8, 9), 3, 3, 3, 2),
    ((2, 2, 6, 6), 1, 1, 1, 0),
    ((1, 2, 9, 8), 2, 4, 2, 0),  # windows that do not tile: the last row / column is dropped
]
IDS = [f"{s}-{fh}x{fw}-s{st}-p{p}" for s, fh, fw, st, p in CASES]


# --- direct loops ----------------------------------------------------------------------------------


def out_size(n, f, stride, pad):
    return (n + 2 * pad - f) // stride + 1


def padded(x, pad):
    N, C, H, W = x.shape
    img = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=np.float64)
    img[:, :, pad : pad + H, pad : pad + W] = x
    return img


def loop_im2col(x, fh, fw, stride, pad):
    N, C, H, W = x.shape
    oh, ow = out_size(H, fh, stride, pad), out_size(W, fw, stride, pad)
    img = padded(x, pad)
    col = np.zeros((N * oh * ow, C * fh * fw))
    for n in range(N):
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for c in range(C):
                    for a in range(fh):
                        for b in range(fw):
                            col[row, (c * fh + a) * fw + b] = img[n, c, i * stride + a, j * stride + b]
    return col


def loop_col2im(col, shape, fh, fw, stride, pad):
    N, C, H, W = shape
    oh, ow = out_size(H, fh, stride, pad), out_size(W, fw, stride, pad)
    img = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    for n in range(N):
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for c in range(C):
                    for a in range(fh):
                        for b in range(fw):
                            img[n, c, i * stride + a, j * stride + b] += col[row, (c * fh + a) * fw + b]
    return img[:, :, pad : pad + H, pad : pad + W]


def loop_conv(x, Wt, b, stride, pad):
    N, C, H, W = x.shape
    FN, _, FH, FW = Wt.shape
    oh, ow = out_size(H, FH, stride, pad), out_size(W, FW, stride, pad)
    img = padded(x, pad)
    out = np.zeros((N, FN, oh, ow))
    for n in range(N):
        for f in range(FN):
            for i in range(oh):
                for j in range(ow):
                    s = b[f]
                    for c in range(C):
                        for a in range(FH):
                            for e in range(FW):
                                s += img[n, c, i * stride + a, j * stride + e] * Wt[f, c, a, e]
                    out[n, f, i, j] = s
    return out


def loop_pool(x, ph, pw, stride, pad):
    """Max of each zero-padded window and the (row-major) index of its first maximum."""
    N, C, H, W = x.shape
    oh, ow = out_size(H, ph, stride, pad), out_size(W, pw, stride, pad)
    img = padded(x, pad)
    out = np.zeros((N, C, oh, ow))
    first = np.zeros((N, C, oh, ow), dtype=int)
    for n in range(N):
        for c in range(C):
            for i in range(oh):
                for j in range(ow):
                    best, at = -np.inf, -1
                    for a in range(ph):
                        for e in range(pw):
                            v = img[n, c, i * stride + a, j * stride + e]
                            if v > best:
                                best, at = v, a * pw + e
                    out[n, c, i, j], first[n, c, i, j] = best, at
    return out, first


# --- the book's code, in its operation order ------------------------------------------------------


def book_im2col(input_data, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_data.shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    img = np.pad(input_data, [(0, 0), (0, 0), (pad, pad), (pad, pad)], "constant")
    col = np.zeros((N, C, filter_h, filter_w, out_h, out_w))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            col[:, :, y, x, :, :] = img[:, :, y:y_max:stride, x:x_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1)


def book_col2im(col, input_shape, filter_h, filter_w, stride=1, pad=0):
    N, C, H, W = input_shape
    out_h = (H + 2 * pad - filter_h) // stride + 1
    out_w = (W + 2 * pad - filter_w) // stride + 1
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((N, C, H + 2 * pad + stride - 1, W + 2 * pad + stride - 1))
    for y in range(filter_h):
        y_max = y + stride * out_h
        for x in range(filter_w):
            x_max = x + stride * out_w
            img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x, :, :]
    return img[:, :, pad : H + pad, pad : W + pad]


def book_conv(x, Wt, b, dout, stride, pad):
    """The book's Convolution forward and backward: ``(out, dx, dW, db)``."""
    FN, C, FH, FW = Wt.shape
    N, C, H, W = x.shape
    out_h = 1 + int((H + 2 * pad - FH) / stride)
    out_w = 1 + int((W + 2 * pad - FW) / stride)
    col = book_im2col(x, FH, FW, stride, pad)
    col_W = Wt.reshape(FN, -1).T
    out = (np.dot(col, col_W) + b).reshape(N, out_h, out_w, -1).transpose(0, 3, 1, 2)
    d = dout.transpose(0, 2, 3, 1).reshape(-1, FN)
    db = np.sum(d, axis=0)
    dW = np.dot(col.T, d).transpose(1, 0).reshape(FN, C, FH, FW)
    dx = book_col2im(np.dot(d, col_W.T), x.shape, FH, FW, stride, pad)
    return out, dx, dW, db


def book_pool(x, dout, ph, pw, stride):
    """The book's Pooling (pad 0) forward and backward: ``(out, arg_max, dx)``."""
    N, C, H, W = x.shape
    out_h = int(1 + (H - ph) / stride)
    out_w = int(1 + (W - pw) / stride)
    col = book_im2col(x, ph, pw, stride, 0).reshape(-1, ph * pw)
    arg_max = np.argmax(col, axis=1)
    out = np.max(col, axis=1).reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2)
    d = dout.transpose(0, 2, 3, 1)
    dmax = np.zeros((d.size, ph * pw))
    dmax[np.arange(arg_max.size), arg_max.flatten()] = d.flatten()
    dmax = dmax.reshape(d.shape + (ph * pw,))
    dcol = dmax.reshape(dmax.shape[0] * dmax.shape[1] * dmax.shape[2], -1)
    return out, arg_max, book_col2im(dcol, x.shape, ph, pw, stride, 0)


# --- im2col / col2im ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, fh, fw, stride, pad", CASES, ids=IDS)
def test_im2col_and_col2im_against_loops_and_the_book(shape, fh, fw, stride, pad):
    x = rng.standard_normal(shape)
    col = im2col(x, fh, fw, stride, pad)
    np.testing.assert_array_equal(col, loop_im2col(x, fh, fw, stride, pad))
    np.testing.assert_array_equal(col, book_im2col(x, fh, fw, stride, pad))
    c = rng.standard_normal(col.shape)
    back = col2im(c, shape, fh, fw, stride, pad)
    assert back.shape == shape
    np.testing.assert_allclose(back, loop_col2im(c, shape, fh, fw, stride, pad), rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(back, book_col2im(c, shape, fh, fw, stride, pad))


@pytest.mark.parametrize("shape, fh, fw, stride, pad", CASES, ids=IDS)
def test_col2im_is_the_adjoint_of_im2col(shape, fh, fw, stride, pad):
    x = rng.standard_normal(shape)
    col = im2col(x, fh, fw, stride, pad)
    c = rng.standard_normal(col.shape)
    lhs = np.sum(col * c)
    rhs = np.sum(x * col2im(c, shape, fh, fw, stride, pad))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_col2im_adds_overlapping_windows():
    # 3x3 windows, stride 1, on 4x4: the centre pixels are read by 4 windows, the corners by 1
    col = im2col(np.zeros((1, 1, 4, 4)), 3, 3)
    counts = col2im(np.ones_like(col), (1, 1, 4, 4), 3, 3)
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_float32_stays_float32_and_ints_become_float64():
    x32 = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    col = im2col(x32, 3, 3, 1, 1)
    assert col.dtype == np.float32  # the book: float64
    assert col2im(col, x32.shape, 3, 3, 1, 1).dtype == np.float32
    assert im2col(np.ones((1, 1, 3, 3), dtype=int), 2, 2).dtype == np.float64
    W, b = rng.standard_normal((4, 2, 3, 3)).astype(np.float32), np.zeros(4, np.float32)
    conv = Convolution(W, b, pad=1)
    out = conv.forward(x32)
    assert out.dtype == np.float32
    dx = conv.backward(np.ones(out.shape, np.float32))
    assert dx.dtype == conv.dW.dtype == conv.db.dtype == np.float32
    pool = Pooling(2, 2, stride=2)
    out = pool.forward(x32)
    assert out.dtype == np.float32
    assert pool.backward(np.ones(out.shape, np.float32)).dtype == np.float32


# --- conv_output_size ------------------------------------------------------------------------------


def test_conv_output_size_is_an_int():
    assert conv_output_size(28, 5) == 24 and type(conv_output_size(28, 5)) is int  # the book: 24.0
    assert conv_output_size(14, 3, 1, 2) == 16
    assert conv_output_size(24, 2, 2) == 12
    assert conv_output_size(np.int64(7), 3, 2) == 3


@pytest.mark.parametrize(
    "args, match",
    [
        ((25, 2, 2), r"not a multiple of stride 2"),  # the book: 12.5
        ((3, 5), r"larger than the padded input"),
        ((3, 5, 1, 0), r"3 \+ 2\*0 = 3"),
        ((5, 3, 0), r"stride must be >= 1"),
        ((5, 3, 1, -1), r"pad must be >= 0"),
        ((0, 1), r"input_size must be >= 1"),
    ],
)
def test_conv_output_size_errors(args, match):
    with pytest.raises(ValueError, match="conv_output_size: .*" + match):
        conv_output_size(*args)


def test_conv_output_size_types():
    with pytest.raises(TypeError, match="conv_output_size: stride must be an integer"):
        conv_output_size(5, 3, 1.0)


# --- Convolution -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, fh, fw, stride, pad", CASES, ids=IDS)
def test_convolution_against_loops_and_the_book(shape, fh, fw, stride, pad):
    x = rng.standard_normal(shape)
    W = rng.standard_normal((4, shape[1], fh, fw))
    b = rng.standard_normal(4)
    conv = Convolution(W, b, stride, pad)
    out = conv.forward(x)
    np.testing.assert_allclose(out, loop_conv(x, W, b, stride, pad), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = conv.backward(dout)
    want = book_conv(x, W, b, dout, stride, pad)
    for got, ref in zip((out, dx, conv.dW, conv.db), want):
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    assert conv.col.shape == (out.shape[0] * out.shape[2] * out.shape[3], shape[1] * fh * fw)
    assert conv.col_W.shape == (shape[1] * fh * fw, 4)
    assert conv.x is x


@pytest.mark.parametrize("shape, fh, fw, stride, pad", CASES[:4], ids=IDS[:4])
def test_convolution_gradients_by_finite_differences(shape, fh, fw, stride, pad):
    x = rng.standard_normal(shape)
    W = rng.standard_normal((3, shape[1], fh, fw))
    b = rng.standard_normal(3)
    conv = Convolution(W, b, stride, pad)
    G = rng.standard_normal(conv.forward(x).shape)

    def f():
        return float(np.sum(conv.forward(x) * G))

    conv.forward(x)
    dx = conv.backward(G)
    dW, db = conv.dW.copy(), conv.db.copy()
    for got, wrt in ((dx, x), (dW, W), (db, b)):
        np.testing.assert_allclose(got, fd_grad(f, wrt), rtol=1e-6, atol=1e-7)


def test_convolution_sees_in_place_updates_of_its_parameters():
    W, b = rng.standard_normal((2, 1, 3, 3)), np.zeros(2)
    conv = Convolution(W, b)
    x = rng.standard_normal((1, 1, 4, 4))
    before = conv.forward(x)
    W *= 2
    b += 1
    np.testing.assert_allclose(conv.forward(x), 2 * before + 1)


def test_convolution_takes_integer_input():
    x = np.arange(32).reshape(2, 1, 4, 4)
    W, b = rng.standard_normal((2, 1, 3, 3)), np.zeros(2)
    np.testing.assert_allclose(Convolution(W, b).forward(x), loop_conv(x, W, b, 1, 0), rtol=1e-12)


# --- Pooling ---------------------------------------------------------------------------------------


POOL_CASES = [
    ((2, 3, 8, 8), 2, 2, 2, 0),
    ((2, 2, 7, 5), 2, 2, 2, 0),
    ((1, 2, 6, 6), 3, 3, 1, 0),
    ((2, 1, 5, 7), 2, 3, 2, 1),
]


@pytest.mark.parametrize("shape, ph, pw, stride, pad", POOL_CASES)
def test_pooling_against_loops(shape, ph, pw, stride, pad):
    x = rng.standard_normal(shape)
    pool = Pooling(ph, pw, stride, pad)
    out = pool.forward(x)
    want, first = loop_pool(x, ph, pw, stride, pad)
    np.testing.assert_array_equal(out, want)
    # arg_max: rows ordered (n, oh, ow, c)
    np.testing.assert_array_equal(pool.arg_max, first.transpose(0, 2, 3, 1).reshape(-1))


@pytest.mark.parametrize(
    "shape, ph, pw, stride", [(s, ph, pw, st) for s, ph, pw, st, p in POOL_CASES if p == 0]
)
def test_pooling_equals_the_book(shape, ph, pw, stride):
    x = rng.standard_normal(shape)
    pool = Pooling(ph, pw, stride)
    out = pool.forward(x)
    dout = rng.standard_normal(out.shape)
    dx = pool.backward(dout)
    b_out, b_arg, b_dx = book_pool(x, dout, ph, pw, stride)
    np.testing.assert_array_equal(out, b_out)
    np.testing.assert_array_equal(pool.arg_max, b_arg)
    np.testing.assert_array_equal(dx, b_dx)


def test_pooling_ties_go_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]]]])
    pool = Pooling(2, 2, stride=2)
    assert pool.forward(x)[0, 0, 0, 0] == 3.0
    assert pool.arg_max.tolist() == [1]
    np.testing.assert_array_equal(pool.backward(np.full((1, 1, 1, 1), 5.0))[0, 0], [[0, 5], [0, 0]])


def test_pooling_overlapping_windows_add_their_gradients():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0  # the maximum of all four 2x2 windows (stride 1)
    pool = Pooling(2, 2)  # the book's default stride is 1
    assert pool.forward(x).shape == (1, 1, 2, 2)
    dx = pool.backward(np.ones((1, 1, 2, 2)))
    assert dx[0, 0, 1, 1] == 4.0 and dx.sum() == 4.0


@pytest.mark.parametrize("shape, ph, pw, stride, pad", POOL_CASES)
def test_pooling_gradient_by_finite_differences(shape, ph, pw, stride, pad):
    x = rng.permutation(np.prod(shape)).reshape(shape) / 10.0 + 0.05  # distinct values: no ties
    pool = Pooling(ph, pw, stride, pad)
    G = rng.standard_normal(pool.forward(x).shape)
    pool.forward(x)
    dx = pool.backward(G)
    np.testing.assert_allclose(
        dx, fd_grad(lambda: float(np.sum(pool.forward(x) * G)), x), rtol=1e-6, atol=1e-6
    )


def test_pooling_with_padding_works_and_pads_with_zeros():
    # the book: out_h ignores pad and the reshape crashes
    x = -1.0 - rng.random((2, 3, 4, 4))  # all negative
    pool = Pooling(2, 2, stride=2, pad=1)
    out = pool.forward(x)
    assert out.shape == (2, 3, 3, 3)
    want, _ = loop_pool(x, 2, 2, 2, 1)
    np.testing.assert_array_equal(out, want)
    # every window reaches into the zero padding except the centre one, which lies inside x
    assert np.all(out[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] == 0)
    np.testing.assert_array_equal(out[:, :, 1, 1], x[:, :, 1:3, 1:3].max(axis=(2, 3)))
    # the gradient of a maximum taken in the padding goes nowhere
    dx = pool.backward(np.ones(out.shape))
    assert dx.shape == x.shape and dx.sum() == 2 * 3


# --- errors ----------------------------------------------------------------------------------------

W3 = np.ones((2, 3, 3, 3))
B3 = np.zeros(2)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (
            lambda: Convolution(np.ones((2, 9)), B3),
            ValueError,
            r"Convolution: W must be 4-D \(FN, C, FH, FW\)",
        ),
        (
            lambda: Convolution(np.ones((2, 3, 3, 3), int), B3),
            TypeError,
            "Convolution: W must be a floating-point",
        ),
        (lambda: Convolution(W3, np.zeros(3)), ValueError, r"Convolution: b must have shape \(2,\)"),
        (lambda: Convolution(W3, [0.0, 0.0]), TypeError, "Convolution: b must be a floating-point ndarray"),
        (lambda: Convolution(W3, B3, stride=0), ValueError, "Convolution: stride must be >= 1, got 0"),
        (lambda: Convolution(W3, B3, stride=1.5), TypeError, "Convolution: stride must be an integer"),
        (lambda: Convolution(W3, B3, pad=-1), ValueError, "Convolution: pad must be >= 0"),
        (lambda: Convolution(W3, B3, pad=True), TypeError, "Convolution: pad must be an integer"),
        (lambda: Pooling(2, 0), ValueError, "Pooling: pool_w must be >= 1"),
        (lambda: Pooling(2, 2, stride=0), ValueError, "Pooling: stride must be >= 1"),
        (lambda: Pooling(2, 2, pad=-1), ValueError, "Pooling: pad must be >= 0"),
        (lambda: Pooling(2.0, 2), TypeError, "Pooling: pool_h must be an integer"),
    ],
)
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    "layer, x, match",
    [
        (
            lambda: Convolution(W3, B3),
            np.ones((3, 5, 5)),
            r"Convolution: x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
        ),
        (
            lambda: Convolution(W3, B3),
            np.ones((1, 2, 5, 5)),
            r"Convolution: x has 2 channels but W \(2, 3, 3, 3\) expects 3",
        ),
        (
            lambda: Convolution(W3, B3),
            np.ones((1, 3, 2, 5)),
            r"Convolution: the window \(height 3\) is larger than the padded input",
        ),
        (
            lambda: Convolution(W3, B3, pad=1),
            np.ones((1, 3, 5, 0)),
            r"Convolution: the window \(width 3\) .* \(width 0 \+ 2\*1 = 2\)",
        ),
        (lambda: Convolution(W3, B3), np.array(["a"]), "Convolution: x must be a real numeric array"),
        (lambda: Pooling(2, 2), np.ones((4, 4)), r"Pooling: x must be 4-D"),
        (
            lambda: Pooling(3, 3, stride=2),
            np.ones((1, 1, 2, 5)),
            r"Pooling: the window \(height 3\) is larger",
        ),
    ],
)
def test_forward_errors(layer, x, match):
    with pytest.raises((TypeError, ValueError), match=match):
        layer().forward(x)


def test_backward_errors():
    conv = Convolution(W3, B3)
    with pytest.raises(ValueError, match=r"Convolution: backward\(\) called before forward\(\)"):
        conv.backward(np.ones((1, 2, 3, 3)))
    conv.forward(np.ones((1, 3, 5, 5)))
    with pytest.raises(
        ValueError, match=r"Convolution: dout must have the forward output's shape \(1, 2, 3, 3\)"
    ):
        conv.backward(np.ones((1, 2, 3, 4)))
    pool = Pooling(2, 2, stride=2)
    with pytest.raises(ValueError, match=r"Pooling: backward\(\) called before forward\(\)"):
        pool.backward(np.ones((1, 1, 1, 1)))
    pool.forward(np.ones((1, 3, 4, 4)))
    with pytest.raises(
        ValueError, match=r"Pooling: dout must have the forward output's shape \(1, 3, 2, 2\)"
    ):
        pool.backward(np.ones((1, 3, 4, 4)))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: im2col(np.ones((3, 4, 4)), 2, 2), ValueError, r"im2col: input_data must be 4-D"),
        (
            lambda: im2col(np.ones((1, 1, 4, 4)), 5, 2),
            ValueError,
            r"im2col: the window \(height 5\) is larger",
        ),
        (lambda: im2col(np.ones((1, 1, 4, 4)), 2, 2, stride=0), ValueError, "im2col: stride must be >= 1"),
        (lambda: im2col(np.ones((1, 1, 4, 4)), 0, 2), ValueError, "im2col: filter_h must be >= 1"),
        (lambda: col2im(np.ones((8, 4)), (1, 1, 4, 4), 2, 2), ValueError, r"col2im: col must be \(9, 4\)"),
        (
            lambda: col2im(np.ones((9, 4)), (1, 4, 4), 2, 2),
            ValueError,
            r"col2im: input_shape must be 4 sizes",
        ),
        (lambda: col2im(np.ones((9, 4)), 4, 2, 2), ValueError, r"col2im: input_shape must be 4 sizes"),
    ],
)
def test_function_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
