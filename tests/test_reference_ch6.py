"""The chapter-6 reference: bit for bit against the book's code, finite differences, errors.

The ``Book*`` classes below are copies of the book's ``common/layers.py``,
``common/functions.py`` and ``common/optimizer.py`` (oreilly-japan/
deep-learning-from-scratch, MIT licence), kept as the book writes them.
"""

import copy

import numpy as np
import pytest
from fd import fd_grad

from scratchprop import optimizers
from scratchprop.numpy import (
    SGD,
    AdaGrad,
    Adam,
    BatchNormalization,
    Dropout,
    Momentum,
    Nesterov,
    RMSprop,
    Sigmoid,
    identity_function,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax_loss,
    step_function,
)

rng = np.random.default_rng(6)

# --- the book's code ------------------------------------------------------------------------------


def book_sigmoid(x):
    return 1 / (1 + np.exp(-x))


class BookSigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        out = book_sigmoid(x)
        self.out = out
        return out

    def backward(self, dout):
        dx = dout * (1.0 - self.out) * self.out
        return dx


class BookDropout:
    def __init__(self, dropout_ratio=0.5):
        self.dropout_ratio = dropout_ratio
        self.mask = None

    def forward(self, x, train_flg=True):
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio
            return x * self.mask
        else:
            return x * (1.0 - self.dropout_ratio)

    def backward(self, dout):
        return dout * self.mask


class BookBatchNormalization:
    def __init__(self, gamma, beta, momentum=0.9, running_mean=None, running_var=None):
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        self.input_shape = None
        self.running_mean = running_mean
        self.running_var = running_var
        self.batch_size = None
        self.xc = None
        self.std = None
        self.dgamma = None
        self.dbeta = None

    def forward(self, x, train_flg=True):
        self.input_shape = x.shape
        if x.ndim != 2:
            N, C, H, W = x.shape
            x = x.reshape(N, -1)
        out = self.__forward(x, train_flg)
        return out.reshape(*self.input_shape)

    def __forward(self, x, train_flg):
        if self.running_mean is None:
            N, D = x.shape
            self.running_mean = np.zeros(D)
            self.running_var = np.zeros(D)
        if train_flg:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc**2, axis=0)
            std = np.sqrt(var + 10e-7)
            xn = xc / std
            self.batch_size = x.shape[0]
            self.xc = xc
            self.xn = xn
            self.std = std
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            xn = xc / (np.sqrt(self.running_var + 10e-7))
        out = self.gamma * xn + self.beta
        return out

    def backward(self, dout):
        if dout.ndim != 2:
            N, C, H, W = dout.shape
            dout = dout.reshape(N, -1)
        dx = self.__backward(dout)
        dx = dx.reshape(*self.input_shape)
        return dx

    def __backward(self, dout):
        dbeta = dout.sum(axis=0)
        dgamma = np.sum(self.xn * dout, axis=0)
        dxn = self.gamma * dout
        dxc = dxn / self.std
        dstd = -np.sum((dxn * self.xc) / (self.std * self.std), axis=0)
        dvar = 0.5 * dstd / self.std
        dxc += (2.0 / self.batch_size) * self.xc * dvar
        dmu = np.sum(dxc, axis=0)
        dx = dxc - dmu / self.batch_size
        self.dgamma = dgamma
        self.dbeta = dbeta
        return dx


class BookSGD:
    def __init__(self, lr=0.01):
        self.lr = lr

    def update(self, params, grads):
        for key in params.keys():
            params[key] -= self.lr * grads[key]


class BookMomentum:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] = self.momentum * self.v[key] - self.lr * grads[key]
            params[key] += self.v[key]


class BookNesterov:
    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None

    def update(self, params, grads):
        if self.v is None:
            self.v = {}
            for key, val in params.items():
                self.v[key] = np.zeros_like(val)
        for key in params.keys():
            self.v[key] *= self.momentum
            self.v[key] -= self.lr * grads[key]
            params[key] += self.momentum * self.momentum * self.v[key]
            params[key] -= (1 + self.momentum) * self.lr * grads[key]


class BookAdaGrad:
    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] += grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookRMSprop:
    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None

    def update(self, params, grads):
        if self.h is None:
            self.h = {}
            for key, val in params.items():
                self.h[key] = np.zeros_like(val)
        for key in params.keys():
            self.h[key] *= self.decay_rate
            self.h[key] += (1 - self.decay_rate) * grads[key] * grads[key]
            params[key] -= self.lr * grads[key] / (np.sqrt(self.h[key]) + 1e-7)


class BookAdam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None

    def update(self, params, grads):
        if self.m is None:
            self.m, self.v = {}, {}
            for key, val in params.items():
                self.m[key] = np.zeros_like(val)
                self.v[key] = np.zeros_like(val)
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params.keys():
            self.m[key] += (1 - self.beta1) * (grads[key] - self.m[key])
            self.v[key] += (1 - self.beta2) * (grads[key] ** 2 - self.v[key])
            params[key] -= lr_t * self.m[key] / (np.sqrt(self.v[key]) + 1e-7)


PAIRS = [
    (SGD, BookSGD, {"lr": 0.1}),
    (Momentum, BookMomentum, {"lr": 0.1, "momentum": 0.8}),
    (Nesterov, BookNesterov, {"lr": 0.1, "momentum": 0.8}),
    (AdaGrad, BookAdaGrad, {"lr": 0.5}),
    (RMSprop, BookRMSprop, {"lr": 0.05, "decay_rate": 0.9}),
    (Adam, BookAdam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.99}),
]
PAIR_IDS = [p[0].__name__ for p in PAIRS]

# --- functions ------------------------------------------------------------------------------------


def test_functions_equal_the_book():
    x = rng.standard_normal((5, 4)) * 5
    x[0, :3] = [0.0, -0.0, 1e-300]
    np.testing.assert_array_equal(sigmoid(x), book_sigmoid(x))
    np.testing.assert_array_equal(sigmoid_grad(x), (1.0 - book_sigmoid(x)) * book_sigmoid(x))
    np.testing.assert_array_equal(relu(x), np.maximum(0, x))
    expected = np.zeros_like(x)
    expected[x >= 0] = 1
    np.testing.assert_array_equal(relu_grad(x), expected)
    assert relu_grad(np.array([0.0, -0.0]))[0] == 1  # the book's x >= 0, unlike Relu's mask
    np.testing.assert_array_equal(step_function(x), np.array(x > 0, dtype=int))
    assert step_function(x).dtype == np.dtype(int)
    assert identity_function(x) is x


def test_softmax_loss_is_cross_entropy_of_softmax():
    X = np.array([[0.0, np.log(3.0)], [np.log(2.0), np.log(2.0)]])  # y = [.25 .75], [.5 .5]
    expected = -(np.log(0.75 + 1e-7) + np.log(0.5 + 1e-7)) / 2
    assert softmax_loss(X, np.array([1, 0])) == pytest.approx(expected, rel=1e-14)


def test_sigmoid_large_negative_is_zero_without_warning():
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow is ignored by default
        out = sigmoid(np.array([-1000.0, -750.0, 0.0, 1000.0]))
        np.testing.assert_array_equal(out, [0.0, 0.0, 0.5, 1.0])
        assert Sigmoid().forward(np.float32([-200.0]))[0] == 0


def test_sigmoid_dtypes():
    assert sigmoid(np.float32([1.0, -3.0])).dtype == np.float32
    assert Sigmoid().forward(np.array([1, 2])).dtype == np.float64
    np.testing.assert_array_equal(sigmoid(np.array([True, False])), book_sigmoid(np.array([1.0, 0.0])))


# --- Sigmoid --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_layer_equals_the_book(dtype):
    x = (rng.standard_normal((6, 7)) * 4).astype(dtype)
    dout = rng.standard_normal((6, 7)).astype(dtype)
    ours, book = Sigmoid(), BookSigmoid()
    out = ours.forward(x)
    np.testing.assert_array_equal(out, book.forward(x))
    assert out.dtype == dtype and ours.out is out
    dx = ours.backward(dout)
    np.testing.assert_array_equal(dx, book.backward(dout))
    assert dx.dtype == dtype


def test_sigmoid_backward_against_finite_differences():
    x = rng.standard_normal((3, 5)) * 2
    R = rng.standard_normal((3, 5))
    layer = Sigmoid()
    layer.forward(x)
    dx = layer.backward(R)
    np.testing.assert_allclose(dx, fd_grad(lambda: np.sum(R * Sigmoid().forward(x)), x, h=1e-5), rtol=1e-6)


# --- Dropout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.0, 0.9])
def test_dropout_masks_equal_the_books_under_one_seed(ratio):
    x = rng.standard_normal((8, 9))
    dout = rng.standard_normal((8, 9))
    ours, book = Dropout(ratio), BookDropout(ratio)
    for seed in (0, 1, 2):
        np.random.seed(seed)
        out = ours.forward(x)
        np.random.seed(seed)
        np.testing.assert_array_equal(out, book.forward(x))
        np.testing.assert_array_equal(ours.mask, book.mask)
        np.testing.assert_array_equal(ours.backward(dout), book.backward(dout))
    np.testing.assert_array_equal(ours.forward(x, train_flg=False), book.forward(x, train_flg=False))
    assert ours.dropout_ratio == ratio


def test_dropout_is_not_inverted():
    x = np.ones((2, 3))
    np.testing.assert_array_equal(Dropout(0.25).forward(x, train_flg=False), np.full((2, 3), 0.75))
    np.random.seed(0)
    out = Dropout(0.25).forward(x)
    assert set(np.unique(out)) <= {0.0, 1.0}  # kept units are not scaled up


def test_dropout_float32_stays_float32():
    x = rng.standard_normal((4, 5)).astype(np.float32)
    layer = Dropout(np.float64(0.3))  # a NumPy float64 ratio must not promote float32 either
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones((4, 5), np.float32)).dtype == np.float32
    assert layer.forward(x, train_flg=False).dtype == np.float32


def test_dropout_backward_against_finite_differences():
    x = rng.standard_normal((4, 6))
    R = rng.standard_normal((4, 6))

    def f():
        np.random.seed(11)  # the same mask every call
        return np.sum(R * Dropout(0.4).forward(x))

    np.random.seed(11)
    layer = Dropout(0.4)
    layer.forward(x)
    assert 0 < layer.mask.sum() < layer.mask.size
    np.testing.assert_allclose(layer.backward(R), fd_grad(f, x, h=1e-5), rtol=1e-6, atol=1e-9)


def test_dropout_zero_dim_input():
    np.random.seed(0)
    layer = Dropout(0.5)
    out = layer.forward(np.float64(3.0))
    assert layer.mask.shape == () and out in (0.0, 3.0)
    assert layer.backward(np.float64(1.0)) == float(layer.mask)


# --- BatchNormalization ---------------------------------------------------------------------------


def _bn_pair(D, **kw):
    gamma = rng.standard_normal(D) + 1.0
    beta = rng.standard_normal(D)
    return BatchNormalization(gamma, beta, **kw), BookBatchNormalization(gamma, beta, **kw)


@pytest.mark.parametrize("shape", [(7, 5), (4, 2, 3, 3)])
def test_batchnorm_equals_the_book_over_several_steps(shape):
    D = int(np.prod(shape[1:]))
    ours, book = _bn_pair(D, momentum=0.8)
    for step in range(4):
        x = rng.standard_normal(shape) * (step + 1) + step
        dout = rng.standard_normal(shape)
        out = ours.forward(x)
        np.testing.assert_array_equal(out, book.forward(x))
        assert out.shape == shape and ours.input_shape == shape
        for name in ("xc", "xn", "std", "running_mean", "running_var"):
            np.testing.assert_array_equal(getattr(ours, name), getattr(book, name), err_msg=name)
        assert ours.batch_size == book.batch_size == shape[0]
        dx = ours.backward(dout)
        np.testing.assert_array_equal(dx, book.backward(dout))
        assert dx.shape == shape
        np.testing.assert_array_equal(ours.dgamma, book.dgamma)
        np.testing.assert_array_equal(ours.dbeta, book.dbeta)
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(ours.forward(x, train_flg=False), book.forward(x, train_flg=False))


def test_batchnorm_running_stats_hand_computed():
    layer = BatchNormalization(np.ones(2), np.zeros(2), momentum=0.5)
    layer.forward(np.array([[1.0, 10.0], [3.0, 10.0]]))  # mean [2, 10], var [1, 0]
    np.testing.assert_array_equal(layer.running_mean, [1.0, 5.0])
    np.testing.assert_array_equal(layer.running_var, [0.5, 0.0])
    old = layer.running_mean
    layer.forward(np.array([[0.0, 2.0], [0.0, 2.0]]))  # mean [0, 2], var [0, 0]
    np.testing.assert_array_equal(layer.running_mean, [0.5, 3.5])
    np.testing.assert_array_equal(layer.running_var, [0.25, 0.0])
    assert layer.running_mean is not old  # rebound, as the book does
    np.testing.assert_array_equal(old, [1.0, 5.0])


def test_batchnorm_train_and_test_mode():
    gamma, beta = np.array([2.0, 0.5]), np.array([1.0, -1.0])
    x = np.array([[1.0, 4.0], [3.0, 8.0]])
    layer = BatchNormalization(gamma, beta)
    out = layer.forward(x)
    std = np.sqrt(np.array([1.0, 4.0]) + 1e-6)
    np.testing.assert_allclose(out, gamma * (x - [2.0, 6.0]) / std + beta, rtol=1e-15)
    running_mean, running_var = layer.running_mean.copy(), layer.running_var.copy()
    out = layer.forward(x, train_flg=False)
    np.testing.assert_array_equal(out, gamma * ((x - running_mean) / np.sqrt(running_var + 10e-7)) + beta)
    np.testing.assert_array_equal(layer.running_mean, running_mean)  # test mode leaves them alone


def test_batchnorm_given_running_stats_and_momentum_one_freezes_them():
    mean, var = np.array([1.0, 2.0]), np.array([4.0, 9.0])
    layer = BatchNormalization(np.ones(2), np.zeros(2), momentum=1, running_mean=mean, running_var=var)
    layer.forward(rng.standard_normal((5, 2)))
    np.testing.assert_array_equal(layer.running_mean, mean)
    np.testing.assert_array_equal(layer.running_var, var)
    np.testing.assert_allclose(layer.forward(np.array([[3.0, 8.0]]), False), [[1.0, 2.0]], rtol=1e-6)


def test_batchnorm_float32_stays_float32():
    g32, b32 = np.ones(6, np.float32), np.zeros(6, np.float32)
    layer = BatchNormalization(g32, b32)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.running_mean.dtype == layer.running_var.dtype == np.float32
    assert layer.backward(np.ones((5, 6), np.float32)).dtype == np.float32
    assert layer.dgamma.dtype == layer.dbeta.dtype == np.float32
    assert layer.forward(x, train_flg=False).dtype == np.float32
    # float32 x with float64 gamma: promoted as NumPy does (and as the book's float64 stats do)
    layer64 = BatchNormalization(np.ones(6), np.zeros(6))
    assert layer64.forward(x).dtype == np.float64 and layer64.running_mean.dtype == np.float64


def test_batchnorm_any_ndim_and_no_mutation():
    layer = BatchNormalization(np.ones(12), np.zeros(12))
    x = rng.standard_normal((3, 4, 3))  # 3-D: the book would fail to unpack N, C, H, W
    x0 = x.copy()
    out = layer.forward(x)
    assert out.shape == x.shape
    np.testing.assert_array_equal(x, x0)
    assert layer.backward(np.ones_like(x)).shape == x.shape


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 2, 2)])
def test_batchnorm_backward_against_finite_differences(shape):
    D = int(np.prod(shape[1:]))
    gamma = rng.standard_normal(D) + 1.0
    beta = rng.standard_normal(D)
    x = rng.standard_normal(shape)
    R = rng.standard_normal(shape)

    def f():
        return np.sum(R * BatchNormalization(gamma, beta).forward(x))

    layer = BatchNormalization(gamma, beta)
    layer.forward(x)
    dx = layer.backward(R)
    np.testing.assert_allclose(dx, fd_grad(f, x, h=1e-5), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.dgamma, fd_grad(f, gamma, h=1e-5), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.dbeta, fd_grad(f, beta, h=1e-5), rtol=1e-6, atol=1e-8)


def test_batchnorm_holds_gamma_by_reference():
    gamma, beta = np.ones(3), np.zeros(3)
    layer = BatchNormalization(gamma, beta)
    gamma *= 2.0  # an optimizer updates in place
    out = layer.forward(np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]))
    np.testing.assert_allclose(np.abs(out), 2.0, rtol=1e-5)


# --- optimizers -----------------------------------------------------------------------------------


def _params(dtype=np.float64):
    return {
        "W1": rng.standard_normal((4, 3)).astype(dtype),
        "b1": rng.standard_normal(3).astype(dtype),
        "gamma1": np.ones(3, dtype),
    }


def _grads(params):
    return {
        key: rng.standard_normal(np.shape(val)).astype(np.asarray(val).dtype) for key, val in params.items()
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("ours_cls", "book_cls", "hyper"), PAIRS, ids=PAIR_IDS)
def test_optimizer_equals_the_book_in_place(ours_cls, book_cls, hyper, dtype):
    params = _params(dtype)
    book_params = copy.deepcopy(params)
    ids = {key: id(val) for key, val in params.items()}
    ours, book = ours_cls(**hyper), book_cls(**hyper)
    for _ in range(5):
        grads = _grads(params)
        ours.update(params, grads)
        book.update(book_params, grads)
        for key in params:
            np.testing.assert_array_equal(params[key], book_params[key], err_msg=key)
            assert params[key].dtype == dtype
    assert {key: id(val) for key, val in params.items()} == ids  # updated in place, never rebound


@pytest.mark.parametrize(("ours_cls", "book_cls", "hyper"), PAIRS, ids=PAIR_IDS)
def test_optimizer_python_float_params(ours_cls, book_cls, hyper):
    # ch06/optimizer_compare_naive.py: f(x, y) = x**2 / 20 + y**2 with plain float params
    params, book_params = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    ours, book = ours_cls(**hyper), book_cls(**hyper)
    for _ in range(10):
        ours.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
        book.update(book_params, {"x": book_params["x"] / 10.0, "y": 2.0 * book_params["y"]})
        assert params == book_params
    assert abs(params["x"]) < 7.0


@pytest.mark.parametrize(("ours_cls", "book_cls", "hyper"), PAIRS, ids=PAIR_IDS)
def test_optimizer_state_dict_round_trip(ours_cls, book_cls, hyper):
    params = _params()
    first = ours_cls(**hyper)
    for _ in range(3):
        first.update(params, _grads(params))
    saved = first.state_dict()
    restored = ours_cls()
    restored.load_state_dict(saved)
    assert restored.state_dict().keys() == saved.keys()
    for val in saved.values():
        if isinstance(val, np.ndarray):
            val[...] = 0.0  # the optimizers hold copies, not the checkpoint's arrays
    twin = copy.deepcopy(params)
    for _ in range(3):
        grads = _grads(params)
        first.update(params, grads)
        restored.update(twin, grads)
        for key in params:
            np.testing.assert_array_equal(params[key], twin[key], err_msg=key)


def test_state_dict_contents():
    opt = Adam(lr=0.01)
    assert opt.state_dict() == {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "iter": 0}
    params = {"W1": np.ones((2, 2))}
    opt.update(params, {"W1": np.ones((2, 2))})
    d = opt.state_dict()
    assert sorted(d) == ["beta1", "beta2", "iter", "lr", "m/W1", "v/W1"] and d["iter"] == 1
    assert d["m/W1"] is not opt.m["W1"]
    np.testing.assert_array_equal(d["m/W1"], opt.m["W1"])
    assert SGD(0.5).state_dict() == {"lr": 0.5}


def test_load_state_dict_errors():
    with pytest.raises(ValueError, match=r"Adam.load_state_dict: missing \['iter'\]"):
        Adam().load_state_dict({"lr": 0.1, "beta1": 0.9, "beta2": 0.999})
    with pytest.raises(ValueError, match="Momentum.load_state_dict: unexpected key 'h/W1'"):
        Momentum().load_state_dict({"lr": 0.1, "momentum": 0.9, "h/W1": np.zeros(2)})
    with pytest.raises(ValueError, match="Adam.load_state_dict: iter must be an integer >= 0"):
        Adam().load_state_dict({"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "iter": -1})
    with pytest.raises(ValueError, match="name different parameters"):
        Adam().load_state_dict({"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "iter": 1, "m/W1": np.zeros(2)})
    with pytest.raises(ValueError, match="RMSprop: decay_rate must lie in"):
        RMSprop().load_state_dict({"lr": 0.1, "decay_rate": 1.5})


def test_optimizer_hyperparameter_errors():
    with pytest.raises(TypeError, match="SGD: lr must be one real number"):
        SGD(lr="0.1")
    with pytest.raises(ValueError, match="AdaGrad: lr must be finite"):
        AdaGrad(lr=float("nan"))
    with pytest.raises(ValueError, match=r"Momentum: momentum must lie in \[0, 1\), got 1.0"):
        Momentum(momentum=1.0)
    with pytest.raises(ValueError, match="Nesterov: momentum must lie in"):
        Nesterov(momentum=-0.1)
    with pytest.raises(ValueError, match="RMSprop: decay_rate must lie in"):
        RMSprop(decay_rate=float("nan"))
    with pytest.raises(TypeError, match="Adam: beta1 must be one real number"):
        Adam(beta1=True)
    with pytest.raises(ValueError, match="Adam: beta2 must lie in"):
        Adam(beta2=1.0)


def test_optimizer_update_errors_change_nothing():
    params = {"W1": np.ones((4, 3)), "b1": np.zeros(3)}
    opt = Adam()
    with pytest.raises(
        ValueError, match=r"Adam.update: grads\['W1'\] has shape \(3, 4\), params\['W1'\] has shape \(4, 3\)"
    ):
        opt.update(params, {"W1": np.ones((3, 4)), "b1": np.ones(3)})
    with pytest.raises(ValueError, match="SGD.update: grads has no entry 'b1'"):
        SGD().update(params, {"W1": np.ones((4, 3))})
    with pytest.raises(TypeError, match=r"Momentum.update: params\['W1'\] must be a floating-point array"):
        Momentum().update({"W1": np.ones(3, int)}, {"W1": np.ones(3)})
    with pytest.raises(TypeError, match=r"AdaGrad.update: grads\['b1'\] must be real numeric"):
        AdaGrad().update(params, {"W1": np.ones((4, 3)), "b1": np.array(["a", "b", "c"])})
    np.testing.assert_array_equal(params["W1"], 1.0)  # checked before anything was updated
    np.testing.assert_array_equal(params["b1"], 0.0)
    assert opt.iter == 0
    opt.update(params, {"W1": np.ones((4, 3)), "b1": np.ones(3)})
    with pytest.raises(
        ValueError, match=r"Adam.update: params\['W2'\] .* does not match the optimizer state"
    ):
        opt.update({"W2": np.ones(2)}, {"W2": np.ones(2)})


def test_get_optimizer():
    opt = optimizers.get_optimizer("ADAM", lr=0.1)
    assert isinstance(opt, Adam) and opt.lr == 0.1
    assert isinstance(optimizers.get_optimizer("rmsprop"), RMSprop)
    assert isinstance(optimizers.get_optimizer(Nesterov, momentum=0.5), Nesterov)
    mine = SGD()
    assert optimizers.get_optimizer(mine) is mine
    assert set(optimizers.OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'; choose one of \['adagrad', 'adam'"):
        optimizers.get_optimizer("adamw")
    with pytest.raises(TypeError, match="get_optimizer: expected a name"):
        optimizers.get_optimizer(3)
    with pytest.raises(ValueError, match="given with an optimizer object"):
        optimizers.get_optimizer(mine, lr=0.1)


# --- layer errors ---------------------------------------------------------------------------------


def test_layer_errors():
    with pytest.raises(
        TypeError, match="Sigmoid: x must be a real numeric array, got shape \\(\\) dtype <U3"
    ):
        Sigmoid().forward("abc")
    with pytest.raises(ValueError, match=r"Sigmoid: backward\(\) called before forward\(\)"):
        Sigmoid().backward(np.ones(3))
    s = Sigmoid()
    s.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Sigmoid: dout must have the forward output's shape \(2, 3\)"):
        s.backward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="sigmoid: x must be a real numeric array"):
        sigmoid(None)

    with pytest.raises(ValueError, match=r"Dropout: dropout_ratio must lie in \[0, 1\), got 1.0"):
        Dropout(1.0)
    with pytest.raises(TypeError, match="Dropout: dropout_ratio must be one real number"):
        Dropout("0.5")
    with pytest.raises(TypeError, match="Dropout: x must be a real numeric array"):
        Dropout().forward(np.array(["a"]))
    d = Dropout()
    with pytest.raises(ValueError, match=r"Dropout: backward\(\) called before forward\(x, train_flg=True\)"):
        d.backward(np.ones(3))
    d.forward(np.ones(3))
    d.forward(np.ones(3), train_flg=False)
    with pytest.raises(ValueError, match=r"Dropout: backward\(\) after a test-mode forward"):
        d.backward(np.ones(3))
    d.forward(np.ones(3))
    with pytest.raises(ValueError, match="Dropout: dout must have the forward output's shape"):
        d.backward(np.ones(4))


def test_batchnorm_errors():
    g, b = np.ones(3), np.zeros(3)
    with pytest.raises(
        TypeError, match="BatchNormalization: gamma must be a floating-point ndarray, got list"
    ):
        BatchNormalization([1.0, 1.0, 1.0], b)
    with pytest.raises(TypeError, match="BatchNormalization: beta must be a floating-point ndarray"):
        BatchNormalization(g, np.zeros(3, int))
    with pytest.raises(ValueError, match=r"BatchNormalization: gamma must be 1-D \(D,\)"):
        BatchNormalization(np.ones((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"BatchNormalization: beta must have gamma's shape \(3,\)"):
        BatchNormalization(g, np.zeros(4))
    with pytest.raises(ValueError, match="BatchNormalization: momentum must lie in"):
        BatchNormalization(g, b, momentum=1.5)
    with pytest.raises(ValueError, match="give both running_mean and running_var"):
        BatchNormalization(g, b, running_mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"BatchNormalization: running_var must have shape \(3,\)"):
        BatchNormalization(g, b, running_mean=np.zeros(3), running_var=np.ones(2))
    layer = BatchNormalization(g, b)
    with pytest.raises(
        ValueError, match=r"BatchNormalization: x must have D=3 features per sample, got shape \(2, 4\)"
    ):
        layer.forward(np.ones((2, 4)))
    with pytest.raises(ValueError, match="BatchNormalization: x must be \\(N, 3\\) or \\(N, ...\\)"):
        layer.forward(np.ones(3))
    with pytest.raises(ValueError, match="BatchNormalization: the batch is empty"):
        layer.forward(np.ones((0, 3)))
    assert layer.forward(np.ones((0, 3)), train_flg=False).shape == (0, 3)  # test mode: fine
    with pytest.raises(
        ValueError, match=r"BatchNormalization: backward\(\) called before forward\(x, train_flg=True\)"
    ):
        layer.backward(np.ones((2, 3)))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"BatchNormalization: dout must have the forward output's shape \(2, 3\)"
    ):
        layer.backward(np.ones((3, 3)))
    layer.forward(np.ones((2, 3)), train_flg=False)
    with pytest.raises(ValueError, match="BatchNormalization: backward\\(\\) after a test-mode forward"):
        layer.backward(np.ones((2, 3)))
    layer.gamma = np.ones(3, int)  # replaced after construction: checked again at forward
    with pytest.raises(TypeError, match="BatchNormalization: gamma must be a floating-point ndarray"):
        layer.forward(np.ones((2, 3)))
