"""The NumPy reference layers: hand-computed cases, finite differences, aliasing, no mutation."""

import numpy as np
import pytest
from fd import fd_grad

from scratchprop.numpy import Affine, Relu, SoftmaxWithLoss, cross_entropy_error, softmax

rng = np.random.default_rng(0)


def test_affine_hand_computed():
    W = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    b = np.array([0.5, -0.5])
    layer = Affine(W, b)
    out = layer.forward(np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(out, [[-3.5, -4.5], [5.5, 7.5]])
    dx = layer.backward(np.array([[1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_array_equal(dx, [[1.0, 3.0, 5.0], [2.0, 4.0, 6.0]])
    np.testing.assert_array_equal(layer.dW, [[1.0, 2.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(layer.db, [1.0, 1.0])


def test_relu_hand_computed():
    layer = Relu()
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0, 2.0]])
    np.testing.assert_array_equal(layer.mask, [[True, True, False]])
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 6.0, 7.0]])), [[0.0, 0.0, 7.0]])


def test_softmax_with_loss_hand_computed():
    layer = SoftmaxWithLoss()
    x = np.array([[0.0, np.log(3.0)], [np.log(2.0), np.log(2.0)]])  # y = [.25 .75], [.5 .5]
    loss = layer.forward(x, np.array([1, 0]))
    assert loss == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2, rel=1e-15)
    np.testing.assert_allclose(layer.y, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-15)
    np.testing.assert_allclose(layer.backward(), [[0.125, -0.125], [-0.25, 0.25]], rtol=1e-15)


@pytest.mark.parametrize("shape", [(4, 3, 5), (2, 15), (15,)])
def test_affine_against_finite_differences(shape):
    W = rng.standard_normal((15, 4))
    b = rng.standard_normal(4)
    x = rng.standard_normal(shape)
    layer = Affine(W, b)
    out = layer.forward(x)
    assert out.shape == ((4,) if x.ndim == 1 else (shape[0], 4))
    g = rng.standard_normal(out.shape)  # loss = sum(g * out)
    dx = layer.backward(g)
    assert dx.shape == x.shape

    def f():
        return np.sum(g * Affine(W, b).forward(x))

    np.testing.assert_allclose(dx, fd_grad(f, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.dW, fd_grad(f, W), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(layer.db, fd_grad(f, b), rtol=1e-6, atol=1e-7)


def test_relu_against_finite_differences():
    x = rng.standard_normal((5, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    g = rng.standard_normal(x.shape)
    layer = Relu()
    layer.forward(x)
    dx = layer.backward(g)
    np.testing.assert_allclose(dx, fd_grad(lambda: np.sum(g * Relu().forward(x)), x), rtol=1e-6, atol=1e-7)


def one_hot(labels, C):
    return np.eye(C)[labels]


@pytest.mark.parametrize("form", ["labels", "column", "one_hot", "soft"])
def test_softmax_loss_against_finite_differences(form):
    N, C = 4, 5
    x = rng.standard_normal((N, C))
    labels = rng.integers(0, C, N)
    t = {
        "labels": labels,
        "column": labels.reshape(N, 1),
        "one_hot": one_hot(labels, C),
        "soft": softmax(rng.standard_normal((N, C))),
    }[form]
    layer = SoftmaxWithLoss()
    layer.forward(x, t)
    dx = layer.backward()
    assert dx.shape == (N, C)
    np.testing.assert_allclose(dx, fd_grad(lambda: SoftmaxWithLoss().forward(x, t), x), rtol=1e-7, atol=1e-10)


def test_soft_targets_loss_is_full_cross_entropy():
    # the book's loss picked y[argmax t] for any 2-D t: its gradient was not y - t
    x = rng.standard_normal((3, 4))
    t = softmax(rng.standard_normal((3, 4)))
    loss = SoftmaxWithLoss().forward(x, t)
    assert loss == pytest.approx(-np.sum(t * np.log(softmax(x))) / 3, rel=1e-13)
    assert cross_entropy_error(softmax(x), t) == pytest.approx(loss, rel=1e-6)


def test_column_labels_do_not_broadcast():
    x = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert a.forward(x, labels.reshape(3, 1)) == b.forward(x, labels)
    da, db = a.backward(), b.backward()
    assert da.shape == (3, 4)
    np.testing.assert_array_equal(da, db)


def test_one_hot_backward_matches_labels():
    x = rng.standard_normal((3, 4))
    labels = np.array([2, 0, 1])
    a, b = SoftmaxWithLoss(), SoftmaxWithLoss()
    assert a.forward(x, one_hot(labels, 4)) == pytest.approx(b.forward(x, labels), rel=1e-15)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-15, atol=1e-17)


def test_single_sample_with_one_hot_is_batch_of_one():
    x = rng.standard_normal(5)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, one_hot(3, 5))
    assert loss == pytest.approx(-np.log(softmax(x)[3]), rel=1e-14)
    dx = layer.backward()
    assert dx.shape == (5,)
    np.testing.assert_allclose(dx, softmax(x) - one_hot(3, 5), rtol=1e-14, atol=1e-16)
    assert SoftmaxWithLoss().forward(x, 3) == pytest.approx(loss, rel=1e-15)
    assert SoftmaxWithLoss().forward(x, np.array([3])) == pytest.approx(loss, rel=1e-15)


def test_softmax_any_ndim_and_huge_logits():
    x = rng.standard_normal((2, 3, 4))
    y = softmax(x)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(y[1, 2], softmax(x[1, 2]), rtol=1e-15)
    big = np.array([1000.0, 0.0, -1000.0])
    np.testing.assert_allclose(softmax(big), [1.0, 0.0, 0.0])
    assert np.isfinite(SoftmaxWithLoss().forward(np.array([[1000.0, -1000.0]]), np.array([1])))
    assert SoftmaxWithLoss().forward(np.array([[1000.0, -1000.0]]), np.array([1])) == pytest.approx(2000.0)


def test_cross_entropy_error_forms():
    y = np.array([[0.1, 0.7, 0.2], [0.3, 0.3, 0.4]])
    expected = -(np.log(0.7 + 1e-7) + np.log(0.4 + 1e-7)) / 2
    assert cross_entropy_error(y, np.array([1, 2])) == pytest.approx(expected, rel=1e-14)
    assert cross_entropy_error(y, np.array([[1], [2]])) == pytest.approx(expected, rel=1e-14)
    assert cross_entropy_error(y, one_hot(np.array([1, 2]), 3)) == pytest.approx(expected, rel=1e-14)
    assert cross_entropy_error(y[0], 1) == pytest.approx(-np.log(0.7 + 1e-7), rel=1e-14)
    assert cross_entropy_error(y[0], one_hot(1, 3)) == pytest.approx(-np.log(0.7 + 1e-7), rel=1e-14)


def test_affine_holds_references_and_sees_in_place_updates():
    W = rng.standard_normal((3, 2))
    b = np.zeros(2)
    layer = Affine(W, b)
    assert layer.W is W and layer.b is b
    x = rng.standard_normal((1, 3))
    before = layer.forward(x)
    W -= 0.5
    b += 1.0
    np.testing.assert_allclose(layer.forward(x), before - 0.5 * x.sum() + 1.0, rtol=1e-14)


def test_float32_weights_keep_dtype_and_are_not_copied():
    W = rng.standard_normal((3, 2)).astype(np.float32)
    b = np.zeros(2, np.float32)
    layer = Affine(W, b)
    assert layer.forward(rng.standard_normal((2, 3)).astype(np.float32)).dtype == np.float32
    assert layer.W is W
    # book-style float32 images with float64 weights compute in float64 (NumPy's promotion)
    assert (
        Affine(W.astype(np.float64), b.astype(np.float64))
        .forward(rng.random((2, 3)).astype(np.float32))
        .dtype
        == np.float64
    )
    assert (
        Affine(W.astype(np.float64), b.astype(np.float64)).forward(np.ones((2, 3), np.uint8)).dtype
        == np.float64
    )


def test_layers_do_not_mutate_inputs():
    x = rng.standard_normal((4, 3))
    x_copy = x.copy()
    relu = Relu()
    out = relu.forward(x)
    out[...] = 7
    np.testing.assert_array_equal(x, x_copy)
    dout = rng.standard_normal((4, 3))
    dout_copy = dout.copy()
    relu.backward(dout)
    np.testing.assert_array_equal(dout, dout_copy)
    sm = SoftmaxWithLoss()
    t = one_hot(np.array([0, 1, 2, 0]), 3)
    t_copy = t.copy()
    sm.forward(x, t)
    sm.backward()
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(t, t_copy)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    W_copy, b_copy = W.copy(), b.copy()
    aff = Affine(W, b)
    aff.forward(x)
    g = rng.standard_normal((4, 2))
    g_copy = g.copy()
    aff.backward(g)
    np.testing.assert_array_equal(g, g_copy)
    np.testing.assert_array_equal(W, W_copy)
    np.testing.assert_array_equal(b, b_copy)
    np.testing.assert_array_equal(x, x_copy)


def test_relu_nan_passes_through_like_the_book():
    out = Relu().forward(np.array([np.nan, -1.0]))
    assert np.isnan(out[0]) and out[1] == 0.0


def test_any_integer_label_dtype():
    x = rng.standard_normal((3, 4))
    ref = SoftmaxWithLoss().forward(x, np.array([0, 1, 3]))
    for dt in (np.uint8, np.int16, np.int32, np.uint64):
        assert SoftmaxWithLoss().forward(x, np.array([0, 1, 3], dtype=dt)) == ref
    assert SoftmaxWithLoss().forward(x, np.array([0.0, 1.0, 3.0])) == ref  # integral floats are labels
