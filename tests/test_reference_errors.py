"""Bad input raises a clear TypeError/ValueError naming the layer, the expected and the received."""

import numpy as np
import pytest

import scratchprop
from scratchprop.numpy import Affine, Relu, SoftmaxWithLoss, cross_entropy_error, numerical_gradient, softmax

rng = np.random.default_rng(0)
W, b = rng.standard_normal((4, 3)), np.zeros(3)


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda: Affine(W, np.zeros(2)), ValueError, ["Affine", "(3,)", "(2,)"]),
        (lambda: Affine(W.tolist(), b), TypeError, ["Affine", "W", "list"]),
        (lambda: Affine(W.astype(int), b), TypeError, ["Affine", "W", "int"]),
        (lambda: Affine(np.zeros(3), b), ValueError, ["Affine", "2-D"]),
    ],
)
def test_bad_affine_parameters(make, exc, words):
    with pytest.raises(exc) as err:
        make()
    for w in words:
        assert w in str(err.value)


def test_affine_wrong_feature_count():
    with pytest.raises(ValueError, match=r"Affine: x has 5 features per sample but W expects 4"):
        Affine(W, b).forward(np.zeros((2, 5)))


def test_affine_scalar_and_string_input():
    with pytest.raises(ValueError, match="Affine"):
        Affine(W, b).forward(np.float64(1.0))
    with pytest.raises(TypeError, match="Affine: x must be a real numeric array"):
        Affine(W, b).forward(np.array([["a"] * 4]))


def test_affine_bad_dout():
    layer = Affine(W, b)
    layer.forward(np.zeros((2, 4)))
    with pytest.raises(
        ValueError, match=r"Affine: dout must have the forward output's shape \(2, 3\), got shape \(3, 2\)"
    ):
        layer.backward(np.zeros((3, 2)))


@pytest.mark.parametrize(
    "layer, call",
    [
        (Affine(W, b), lambda lay: lay.backward(np.zeros((1, 3)))),
        (Relu(), lambda lay: lay.backward(np.zeros(3))),
        (SoftmaxWithLoss(), lambda lay: lay.backward()),
    ],
)
def test_backward_before_forward(layer, call):
    with pytest.raises(ValueError, match=r"backward\(\) called before forward\(\)"):
        call(layer)
    assert type(layer).__name__ in str(pytest.raises(ValueError, call, layer).value)


def test_relu_bad_dout():
    r = Relu()
    r.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Relu: dout must have the forward output's shape \(2, 3\)"):
        r.backward(np.zeros((3, 2)))


@pytest.mark.parametrize(
    "t, exc, pattern",
    [
        (np.array([0, 1, 3]), ValueError, r"labels must lie in \[0, 3\).*\[0, 3\]"),
        (np.array([0, -1, 2]), ValueError, r"labels must lie in \[0, 3\)"),
        (np.array([0.5, 1, 2]), TypeError, r"labels must be integers"),
        (np.array([True, False, True]), TypeError, r"labels must be integers"),
        (
            np.array([0, 1]),
            ValueError,
            r"t must be labels \(3,\) or \(3, 1\), or one-hot rows \(3, 3\).*got shape \(2,\)",
        ),
        (np.zeros((3, 4)), ValueError, r"one-hot rows \(3, 3\)"),
        (np.full((3, 3), 0.5), ValueError, r"must sum to 1.*row 0 sums to"),
        (np.array([[1.5, -0.5, 0.0]] * 3), ValueError, r"non-negative"),
        (np.array(["a", "b", "c"]), TypeError, r"t must be a real numeric array"),
    ],
)
def test_bad_targets(t, exc, pattern):
    with pytest.raises(exc, match="SoftmaxWithLoss: .*" + pattern):
        SoftmaxWithLoss().forward(rng.standard_normal((3, 3)), t)


def test_empty_batch_and_bad_ndim_for_loss():
    with pytest.raises(ValueError, match=r"SoftmaxWithLoss: the batch is empty"):
        SoftmaxWithLoss().forward(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(
        ValueError, match=r"SoftmaxWithLoss: x must be \(N, C\) or \(C,\), got shape \(2, 3, 4\)"
    ):
        SoftmaxWithLoss().forward(np.zeros((2, 3, 4)), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"cross_entropy_error: the batch is empty"):
        cross_entropy_error(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError, match="softmax"):
        softmax(np.float64(3.0))


def test_empty_batch_where_it_can_work():
    out = Affine(W, b).forward(np.zeros((0, 4)))
    assert out.shape == (0, 3)


def test_numerical_gradient_rejects_what_it_cannot_perturb():
    with pytest.raises(TypeError, match="floating point"):
        numerical_gradient(lambda x: 0.0, np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="ndarray"):
        numerical_gradient(lambda x: 0.0, [1.0, 2.0])
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(lambda x: 0.0, ro)


def test_net_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; choose one of: numpy, numba"):
        scratchprop.TwoLayerNet(4, 3, 2, backend="torch")
    with pytest.raises(TypeError, match="lacks"):
        scratchprop.TwoLayerNet(4, 3, 2, backend=object())
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got -1"):
        scratchprop.TwoLayerNet(4, -1, 2)
    with pytest.raises(TypeError, match="dtype must be a floating-point type"):
        scratchprop.TwoLayerNet(4, 3, 2, dtype=np.int32)
    net = scratchprop.TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(ValueError, match="Affine: x has 5 features"):
        net.loss(np.zeros((2, 5)), np.zeros(2, int))
    with pytest.raises(ValueError, match=r"TwoLayerNet.accuracy: labels must lie in \[0, 2\)"):
        net.accuracy(np.zeros((2, 4)), np.array([0, 2]))
