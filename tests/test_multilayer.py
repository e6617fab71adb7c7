"""MultiLayerNet(Extend): the book-style net on our layers and optimizers, both backends, gradients."""

import numpy as np
import pytest
from booknet_extend import book_extend_class

import scratchprop.numba as NB
import scratchprop.numpy as NP
from scratchprop import MultiLayerNet, MultiLayerNetExtend, tolerances

rng = np.random.default_rng(11)
X = rng.random((40, 12))
T = rng.integers(0, 5, 40)


def close(a, b, dtype=np.float64, scale=1.0):
    # absolute, against the array's size (a bias before BatchNorm is rounding noise around 0)
    tol = tolerances.equivalence(dtype)
    size = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=0, atol=scale * (tol["rtol"] * size + tol["atol"]))


def book_run(M, steps=4, **kw):
    np.random.seed(5)
    net = book_extend_class(M)(12, [10, 9, 8], 5, **kw)
    opt = M.Adam(lr=0.01)
    losses = []
    for k in range(steps):
        xb, tb = X[k * 10 : (k + 1) * 10], T[k * 10 : (k + 1) * 10]
        grads = net.gradient(xb, tb)
        opt.update(net.params, grads)
        losses.append(net.loss(xb, tb))
    return net, losses


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"use_batchnorm": True},
        {"use_dropout": True, "dropout_ration": 0.3},
        {"use_batchnorm": True, "use_dropout": True, "weight_decay_lambda": 0.1, "activation": "sigmoid"},
    ],
    ids=["plain", "batchnorm", "dropout", "all"],
)
def test_book_style_net_on_our_layers_equals_the_reference(kw):
    ref, ref_losses = book_run(NP, **kw)
    got, got_losses = book_run(NB, **kw)
    close(got_losses, ref_losses, scale=100)  # four Adam steps compound rounding a little
    for k in ref.params:
        close(got.params[k], ref.params[k], scale=100)
    close(got.accuracy(X, T), ref.accuracy(X, T))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_our_class_equals_the_book_style_class(backend):
    M = NP if backend == "numpy" else NB
    book, _ = book_run(M, steps=0, use_batchnorm=True, use_dropout=True)
    ours = MultiLayerNetExtend(12, [10, 9, 8], 5, use_batchnorm=True, use_dropout=True, backend=backend)
    assert list(ours.params) == list(book.params) or sorted(ours.params) == sorted(book.params)
    assert list(ours.layers) == list(book.layers)
    ours.load_params(book.params)
    for net in (book, ours):
        np.random.seed(9)
        net._grads = net.gradient(X, T)
    for k in book.params:
        np.testing.assert_array_equal(ours._grads[k], book._grads[k])
    for flg in (False, True):
        np.random.seed(3)
        a = book.predict(X, train_flg=flg)
        np.random.seed(3)
        np.testing.assert_array_equal(ours.predict(X, train_flg=flg), a)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    "kw",
    [
        {"activation": "sigmoid", "weight_init_std": "xavier", "weight_decay_lambda": 0.3},
        {"activation": "sigmoid", "use_batchnorm": True, "use_dropout": True, "dropout_ratio": 0.25},
        {"activation": "sigmoid", "use_batchnorm": True, "weight_decay_lambda": 0.1, "weight_init_std": 0.5},
    ],
    ids=["decay", "bn_dropout", "bn_decay"],
)
def test_gradient_matches_numerical_gradient(backend, kw):
    # sigmoid: no kinks, so the central difference is good to ~1e-9 everywhere
    net = MultiLayerNetExtend(12, [6, 5], 4, backend=backend, seed=2, **kw)
    x, t = X[:7], T[:7] % 4
    net.gradient(x, t)  # running statistics exist, as in training
    np.random.seed(1)
    num = net.numerical_gradient(x, t)
    np.random.seed(1)
    bp = net.gradient(x, t)
    assert sorted(num) == sorted(net.params)
    for k in net.params:
        err = np.max(np.abs(num[k] - bp[k]) / np.maximum(1e-6, np.abs(num[k]) + np.abs(bp[k])))
        assert err < 1e-5, (k, err)


def test_numerical_gradient_leaves_the_net_and_the_generator_as_found():
    net = MultiLayerNetExtend(12, [6], 4, use_batchnorm=True, use_dropout=True, seed=0)
    net.gradient(X[:5], T[:5] % 4)
    bn = net.layers["BatchNorm1"]
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    before = [p.copy() for p in net.params.values()]
    np.random.seed(4)
    net.numerical_gradient(X[:5], T[:5] % 4)
    after_num = np.random.rand()
    np.random.seed(4)
    assert np.random.rand() == after_num
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    for a, b in zip(before, net.params.values()):
        np.testing.assert_array_equal(a, b)


def test_weight_decay_in_loss_and_layout():
    net = MultiLayerNet(12, [7], 5, weight_decay_lambda=0.5, seed=0)
    plain = MultiLayerNet(12, [7], 5, seed=0)
    extra = 0.25 * (np.sum(net.params["W1"] ** 2) + np.sum(net.params["W2"] ** 2))
    assert net.loss(X, T) == pytest.approx(plain.loss(X, T) + extra, rel=1e-12)
    assert list(net.layers) == ["Affine1", "Activation_function1", "Affine2"]
    assert list(net.params) == ["W1", "b1", "W2", "b2"]
    assert net.params["W1"] is net.layers["Affine1"].W
    assert net.lastLayer is net.last_layer


@pytest.mark.parametrize(
    "std, expect",
    [
        ("relu", np.sqrt(2 / 400)),
        ("he", np.sqrt(2 / 400)),
        ("sigmoid", np.sqrt(1 / 400)),
        ("xavier", np.sqrt(1 / 400)),
        (0.01, 0.01),
    ],
)
def test_weight_init_scales(std, expect):
    net = MultiLayerNet(400, [300], 10, weight_init_std=std, seed=0)
    assert np.std(net.params["W1"]) == pytest.approx(expect, rel=0.02)


def test_dtype_and_seed():
    a = MultiLayerNetExtend(12, [6], 4, use_batchnorm=True, dtype=np.float32, seed=3)
    b = MultiLayerNetExtend(12, [6], 4, use_batchnorm=True, dtype=np.float32, seed=3)
    assert all(p.dtype == np.float32 for p in a.params.values())
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.gradient(X.astype(np.float32), T % 4)["W1"].dtype == np.float32


@pytest.mark.parametrize(
    "kw, exc, words",
    [
        ({"hidden_size_list": [10, 0]}, ValueError, "hidden size must be a positive integer"),
        ({"hidden_size_list": 5}, TypeError, "hidden_size_list must be a list"),
        ({"activation": "tanh"}, ValueError, "activation must be 'relu' or 'sigmoid'"),
        ({"weight_init_std": "lecun"}, ValueError, "weight_init_std must be"),
        ({"weight_decay_lambda": -1}, ValueError, "weight_decay_lambda must be a finite number >= 0"),
        ({"use_dropout": True, "dropout_ration": 1.0}, ValueError, "Dropout"),
        ({"dropout_ration": 0.2, "dropout_ratio": 0.2}, TypeError, "not both"),
        ({"dtype": np.int32}, TypeError, "dtype must be a floating-point type"),
    ],
)
def test_constructor_errors(kw, exc, words):
    args = {"input_size": 12, "hidden_size_list": [6], "output_size": 4, **kw}
    with pytest.raises(exc, match=words):
        MultiLayerNetExtend(**args)


def test_book_spelling_and_ours_give_the_same_ratio():
    a = MultiLayerNetExtend(12, [6], 4, use_dropout=True, dropout_ration=0.2)
    b = MultiLayerNetExtend(12, [6], 4, use_dropout=True, dropout_ratio=0.2)
    assert a.layers["Dropout1"].dropout_ratio == b.layers["Dropout1"].dropout_ratio == 0.2
