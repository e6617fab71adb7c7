"""TwoLayerNet on the reference backend: the notebook's surface, finite differences, aliasing."""

from collections import OrderedDict

import numpy as np
import pytest
from fd import fd_grad

import scratchprop
import scratchprop.numpy as ref

rng = np.random.default_rng(1)


def batch(N=3, D=6, C=4):
    return rng.standard_normal((N, D)), rng.integers(0, C, N)


def test_notebook_surface():
    net = scratchprop.TwoLayerNet(784, 50, 10)
    assert set(net.params) == {"W1", "b1", "W2", "b2"} and list(net.params_key) == ["W1", "b1", "W2", "b2"]
    assert net.params["W1"].shape == (784, 50) and net.params["b2"].shape == (10,)
    assert isinstance(net.layers, OrderedDict) and list(net.layers) == ["Affine1", "Relu1", "Affine2"]
    assert isinstance(net.lastLayer, ref.SoftmaxWithLoss)
    assert net.layers["Affine1"].W is net.params["W1"] and net.layers["Affine2"].b is net.params["b2"]
    assert np.all(net.params["b1"] == 0) and 0.005 < net.params["W1"].std() < 0.015
    assert net.backend is ref and net.backend_name == "numpy"
    assert scratchprop.TwoLayerNet(3, 2, 2, backend=ref).backend is ref


def test_seed_and_dtype():
    a = scratchprop.TwoLayerNet(5, 4, 3, seed=7)
    b = scratchprop.TwoLayerNet(5, 4, 3, seed=7)
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    f = scratchprop.TwoLayerNet(5, 4, 3, seed=7, dtype=np.float32)
    assert all(p.dtype == np.float32 for p in f.params.values())
    x, t = batch(D=5, C=3)
    assert f.predict(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("form", ["labels", "column", "one_hot"])
def test_gradient_against_finite_differences(form):
    net = scratchprop.TwoLayerNet(6, 5, 4, weight_init_std=0.5, seed=3)
    x, labels = batch()
    t = {"labels": labels, "column": labels[:, None], "one_hot": np.eye(4)[labels]}[form]
    grads = net.gradient(x, t)
    for k in net.params_key:
        np.testing.assert_allclose(
            grads[k], fd_grad(lambda: net.loss(x, t), net.params[k]), rtol=1e-6, atol=1e-8, err_msg=k
        )


def test_numerical_gradient_through_aliasing_is_nonzero_and_matches():
    net = scratchprop.TwoLayerNet(6, 5, 4, weight_init_std=0.5, seed=4)
    x, t = batch()
    before = {k: v.copy() for k, v in net.params.items()}
    num = net.numerical_gradient(x, t)
    back = net.gradient(x, t)
    for k in net.params_key:
        assert np.any(num[k] != 0), k
        np.testing.assert_allclose(num[k], back[k], rtol=1e-5, atol=1e-9, err_msg=k)
        assert before[k].tobytes() == net.params[k].tobytes()


def test_in_place_sgd_is_seen_and_train_step_learns():
    net = scratchprop.TwoLayerNet(6, 8, 4, weight_init_std=0.3, seed=5)
    x, t = batch(N=16)
    W1 = net.params["W1"]
    first = net.loss(x, t)
    for _ in range(50):
        grads = net.gradient(x, t)
        for k in net.params_key:
            net.params[k] -= 0.5 * grads[k]
    assert net.params["W1"] is W1 and net.layers["Affine1"].W is W1
    assert net.loss(x, t) < 0.5 * first
    assert net.train_step(x, t, 0.1) == pytest.approx(net.lastLayer.loss)


def test_train_step_equals_manual_sgd():
    a = scratchprop.TwoLayerNet(6, 5, 4, seed=9)
    b = scratchprop.TwoLayerNet(6, 5, 4, seed=9)
    x, t = batch()
    loss = a.train_step(x, t, 0.1)
    g = b.gradient(x, t)
    for k in b.params_key:
        b.params[k] -= 0.1 * g[k]
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert loss == b.lastLayer.loss


def test_accuracy_label_forms_and_single_sample():
    net = scratchprop.TwoLayerNet(6, 5, 4, seed=2)
    x, labels = batch(N=10)
    pred = np.argmax(net.predict(x), axis=1)
    expected = np.mean(pred == labels)
    assert net.accuracy(x, labels) == expected
    assert net.accuracy(x, labels[:, None]) == expected
    assert net.accuracy(x, np.eye(4)[labels]) == expected
    assert net.accuracy(x[0], int(pred[0])) == 1.0
    assert net.predict(x[0]).shape == (4,)


def test_nd_input_is_flattened():
    net = scratchprop.TwoLayerNet(12, 5, 3, seed=2)
    x = rng.standard_normal((4, 1, 3, 4))
    t = rng.integers(0, 3, 4)
    np.testing.assert_allclose(net.loss(x, t), net.loss(x.reshape(4, 12), t), rtol=1e-15)
    net.gradient(x, t)
    assert net.layers["Affine1"].original_x_shape == (4, 1, 3, 4)


def test_load_params_copies_in_place():
    net = scratchprop.TwoLayerNet(4, 3, 2, seed=0)
    W1 = net.params["W1"]
    other = scratchprop.TwoLayerNet(4, 3, 2, seed=1)
    net.load_params(other.params)
    assert net.params["W1"] is W1
    np.testing.assert_array_equal(W1, other.params["W1"])
    with pytest.raises(ValueError, match=r"W2 must have shape \(3, 2\)"):
        net.load_params({**other.params, "W2": np.zeros((2, 2))})


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    "lr, error, message",
    [
        (float("nan"), ValueError, "lr must be finite, got nan"),
        (float("inf"), ValueError, "lr must be finite, got inf"),
        (-float("inf"), ValueError, "lr must be finite, got -inf"),
        (np.float32("nan"), ValueError, "lr must be finite"),
        (
            np.full(100, 0.1),
            TypeError,
            "lr must be one real number (an int or float), got an array of shape (100,)",
        ),
        ("0.1", TypeError, "got str '0.1'"),
        (True, TypeError, "got bool True"),
        (0.1 + 0j, TypeError, "got complex"),
        (None, TypeError, "got NoneType None"),
    ],
)
def test_a_bad_lr_raises_before_any_parameter_moves(backend, lr, error, message):
    if backend == "numba":
        pytest.importorskip("numba")
    net = scratchprop.TwoLayerNet(20, 8, 3, backend=backend, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    x, t = np.random.default_rng(0).random((5, 20)), np.array([0, 1, 2, 0, 1])
    with pytest.raises(error) as exc:
        net.train_step(x, t, lr)
    assert str(exc.value).startswith("TwoLayerNet.train_step: ") and message in str(exc.value)
    for k in before:
        assert net.params[k].tobytes() == before[k].tobytes(), k


@pytest.mark.parametrize(
    "lr", [0.1, 1, np.float32(0.1), np.float64(0.1), np.int64(1), np.array(0.1), -0.05, 0.0]
)
def test_every_real_lr_gives_the_reference_step(lr):
    pytest.importorskip("numba")
    nets = [scratchprop.TwoLayerNet(20, 8, 3, backend=b, seed=0) for b in ("numpy", "numba")]
    x, t = np.random.default_rng(0).random((5, 20)), np.array([0, 1, 2, 0, 1])
    for net in nets:
        net.train_step(x, t, lr)
    for k in nets[0].params:
        np.testing.assert_allclose(nets[1].params[k], nets[0].params[k], rtol=1e-12, atol=1e-15)
