"""Bad inputs fail in the Numba backend exactly as in the NumPy reference.

Same exception type, same message, raised in Python before any kernel runs
(never a Numba TypingError, never a SystemError out of a ``prange``).
"""

import numpy as np
import pytest

import scratchprop.numba as B
import scratchprop.numpy as P
from scratchprop import TwoLayerNet
from scratchprop.tolerances import equivalence, target_sum

rng = np.random.default_rng(3)
W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
X = rng.standard_normal((2, 4))


def outcome(fn, M):
    try:
        fn(M)
    except Exception as exc:  # noqa: BLE001 - comparing whatever each backend raises
        return type(exc), str(exc)
    return None, None


def assert_same_error(fn):
    want, got = outcome(fn, P), outcome(fn, B)
    assert want[0] is not None, "the reference accepted this input"
    assert got == want
    assert "numba" not in got[0].__module__


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


AFFINE_CASES = {
    "W_list": lambda M: M.Affine([[1.0]], np.zeros(1)),
    "W_int": lambda M: M.Affine(np.ones((4, 3), dtype=int), b),
    "W_1d": lambda M: M.Affine(np.ones(4), np.ones(4)),
    "b_shape": lambda M: M.Affine(W, np.zeros(4)),
    "b_2d": lambda M: M.Affine(W, np.zeros((1, 3))),
    "x_features": lambda M: M.Affine(W, b).forward(np.ones((2, 5))),
    "x_nd_features": lambda M: M.Affine(W, b).forward(np.ones((2, 2, 3))),
    "x_1d_features": lambda M: M.Affine(W, b).forward(np.ones(3)),
    "x_scalar": lambda M: M.Affine(W, b).forward(1.0),
    "x_str": lambda M: M.Affine(W, b).forward(np.array([["a"] * 4])),
    "x_complex": lambda M: M.Affine(W, b).forward(np.ones((2, 4), dtype=complex)),
    "x_object": lambda M: M.Affine(W, b).forward(np.array([[None] * 4])),
    "backward_first": lambda M: M.Affine(W, b).backward(np.ones((2, 3))),
    "dout_shape": lambda M: _fwd(M.Affine(W, b), X).backward(np.ones((2, 4))),
    "dout_batch": lambda M: _fwd(M.Affine(W, b), X).backward(np.ones((3, 3))),
    "dout_1d_sample": lambda M: _fwd(M.Affine(W, b), X[0]).backward(np.ones((1, 3))),
    "dout_str": lambda M: _fwd(M.Affine(W, b), X).backward(np.array([["x"] * 3] * 2)),
    "W_replaced_bad": lambda M: _replace_W(M.Affine(W, b)).forward(X),
}


def _fwd(layer, x):
    layer.forward(x)
    return layer


def _replace_W(layer):
    layer.W = np.ones((4, 2))  # b no longer matches
    return layer


@pytest.mark.parametrize("case", list(AFFINE_CASES))
def test_affine_errors(case):
    assert_same_error(AFFINE_CASES[case])


RELU_CASES = {
    "x_str": lambda M: M.Relu().forward(np.array(["a", "b"])),
    "x_complex": lambda M: M.Relu().forward(np.ones(3, dtype=complex)),
    "backward_first": lambda M: M.Relu().backward(np.ones(3)),
    "dout_shape": lambda M: _fwd(M.Relu(), np.ones((2, 3))).backward(np.ones((3, 2))),
    "dout_shape_big": lambda M: _fwd(M.Relu(), np.ones((40, 30))).backward(np.ones((30, 40))),
    "dout_object": lambda M: _fwd(M.Relu(), np.ones(2)).backward(np.array([None, None])),
}


@pytest.mark.parametrize("case", list(RELU_CASES))
def test_relu_errors(case):
    assert_same_error(RELU_CASES[case])


X3 = rng.standard_normal((3, 4))
SWL_CASES = {
    "x_3d": lambda M: M.SoftmaxWithLoss().forward(np.ones((2, 3, 4)), [0, 1]),
    "x_scalar": lambda M: M.SoftmaxWithLoss().forward(1.0, 0),
    "x_empty_batch": lambda M: M.SoftmaxWithLoss().forward(np.ones((0, 4)), np.zeros(0, int)),
    "x_no_classes": lambda M: M.SoftmaxWithLoss().forward(np.ones((2, 0)), [0, 0]),
    "x_str": lambda M: M.SoftmaxWithLoss().forward(np.array([["a"]]), [0]),
    "label_high": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0, 4, 1])),
    "label_negative": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0, -1, 1])),
    "label_uint_huge": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0, 2**63, 1], dtype=np.uint64)),
    "label_float": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0.0, 1.5, 1.0])),
    "label_nan": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0.0, np.nan, 1.0])),
    "label_bool": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([True, False, True])),
    "label_count": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([0, 1])),
    "t_wrong_classes": lambda M: M.SoftmaxWithLoss().forward(X3, np.eye(5)[:3]),
    "t_rows_not_one": lambda M: M.SoftmaxWithLoss().forward(X3, np.full((3, 4), 0.5)),
    "t_negative": lambda M: M.SoftmaxWithLoss().forward(X3, np.array([[1.5, -0.5, 0, 0]] * 3)),
    "t_nan": lambda M: M.SoftmaxWithLoss().forward(X3, np.full((3, 4), np.nan)),
    "t_one_nan": lambda M: M.SoftmaxWithLoss().forward(X3, _rows(nan=True)),
    "t_inf": lambda M: M.SoftmaxWithLoss().forward(X3, _rows(inf=True)),
    "t_last_row_off": lambda M: M.SoftmaxWithLoss().forward(X3, _rows(off=1.5)),
    "t_f32_row_off": lambda M: M.SoftmaxWithLoss().forward(
        X3.astype(np.float32), _rows(off=1.5, dt=np.float32)
    ),
    "t_f32_rows_f64_x": lambda M: M.SoftmaxWithLoss().forward(X3, _rows(off=1.5, dt=np.float32)),
    "t_fortran_off": lambda M: M.SoftmaxWithLoss().forward(X3, np.asfortranarray(_rows(off=1.5))),
    "t_str": lambda M: M.SoftmaxWithLoss().forward(X3, np.array(["a", "b", "c"])),
    "backward_first": lambda M: M.SoftmaxWithLoss().backward(),
    "failed_forward_then_backward": lambda M: _failed(M.SoftmaxWithLoss()).backward(),
}


def _rows(off=0.0, nan=False, inf=False, dt=np.float64):
    """One-hot rows for X3 whose last row sums to ``1 + off * tolerance``, or holds a NaN or inf."""
    T = np.eye(4, dtype=dt)[[0, 2, 1]]
    T[2, 1] += off * target_sum(np.dtype(dt))  # row 2 is class 1
    if nan:
        T[1, 0] = np.nan
    if inf:
        T[1, 0] = np.inf
    return T


@pytest.mark.parametrize("off", [-0.9, -0.6, -0.25, 0.25, 0.6, 0.9])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_rows_within_the_tolerance_are_accepted_like_the_reference(off, dt):
    # the kernel's pre-check flags rows past half the tolerance; NumPy's check then passes them
    x, T = X3.astype(dt), _rows(off, dt=dt)
    want = P.SoftmaxWithLoss().forward(x, T)
    got = B.SoftmaxWithLoss().forward(x, T)
    np.testing.assert_allclose(got, want, **equivalence(np.dtype(dt)))
    assert B.cross_entropy_error(P.softmax(x), T) == pytest.approx(P.cross_entropy_error(P.softmax(x), T))


def _failed(layer):
    try:
        layer.forward(X3, np.array([9, 9, 9]))
    except ValueError:
        pass
    return layer


@pytest.mark.parametrize("case", list(SWL_CASES))
def test_softmax_with_loss_errors(case):
    assert_same_error(SWL_CASES[case])


FUNCTION_CASES = {
    "softmax_scalar": lambda M: M.softmax(3.0),
    "softmax_str": lambda M: M.softmax(np.array(["a"])),
    "softmax_empty_axis": lambda M: M.softmax(np.ones((2, 0))),
    "ce_3d": lambda M: M.cross_entropy_error(np.ones((1, 2, 3)), [0]),
    "ce_label_high": lambda M: M.cross_entropy_error(np.full((2, 3), 1 / 3), [0, 3]),
    "ce_empty": lambda M: M.cross_entropy_error(np.ones((0, 3)), np.zeros(0, int)),
    "ce_onehot_off": lambda M: M.cross_entropy_error(np.full((3, 4), 0.25), _rows(off=-1.5)),
    "ce_bad_t_shape": lambda M: M.cross_entropy_error(np.full((2, 3), 1 / 3), np.ones((2, 2))),
    "numgrad_list": lambda M: M.numerical_gradient(lambda w: 0.0, [1.0, 2.0]),
    "numgrad_int": lambda M: M.numerical_gradient(lambda w: 0.0, np.ones(2, dtype=int)),
    "numgrad_readonly": lambda M: M.numerical_gradient(lambda w: 0.0, readonly([1.0, 2.0])),
}


@pytest.mark.parametrize("case", list(FUNCTION_CASES))
def test_function_errors(case):
    assert_same_error(FUNCTION_CASES[case])


def _net(M):
    return TwoLayerNet(4, 3, 2, backend="numpy" if M is P else "numba", seed=0)


def _readonly_params(M):
    net = _net(M)
    net.params["W2"].flags.writeable = False
    return net


XN = rng.standard_normal((3, 4))
NET_CASES = {
    "features": lambda M: _net(M).gradient(np.ones((3, 5)), [0, 1, 0]),
    "empty_batch": lambda M: _net(M).gradient(np.ones((0, 4)), np.zeros(0, int)),
    "label_high": lambda M: _net(M).gradient(XN, np.array([0, 2, 1])),
    "label_high_int8": lambda M: _net(M).train_step(XN, np.array([0, 1, -1], dtype=np.int8), 0.1),
    "label_count": lambda M: _net(M).train_step(XN, np.array([0, 1]), 0.1),
    "onehot_bad": lambda M: _net(M).train_step(XN, np.ones((3, 2)), 0.1),
    "onehot_negative": lambda M: _net(M).gradient(XN, np.array([[1.5, -0.5]] * 3)),
    "onehot_nan": lambda M: _net(M).loss(XN, np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]])),
    "x_str": lambda M: _net(M).gradient(np.array([["a"] * 4]), [0]),
    "x_scalar": lambda M: _net(M).train_step(2.0, [0], 0.1),
    "readonly_param": lambda M: _readonly_params(M).train_step(XN, np.array([0, 1, 1]), 0.1),
    "lr_str": lambda M: _net(M).train_step(XN, np.array([0, 1, 1]), "0.1"),
}


@pytest.mark.parametrize("case", list(NET_CASES))
def test_two_layer_net_hook_errors(case):
    assert_same_error(NET_CASES[case])


@pytest.mark.parametrize(
    "t", [np.array([0, 5, 1]), np.array([[1.0, 0.0], [0.5, 0.4], [0.0, 1.0]])], ids=["label", "onehot"]
)
def test_failed_fused_step_leaves_params_untouched(t):
    net = _net(B)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError):
        net.train_step(XN, t, 0.1)
    for k, v in before.items():
        np.testing.assert_array_equal(net.params[k], v)


@pytest.mark.parametrize(
    "bad", [np.array([0, 4, 1]), _rows(nan=True), _rows(off=3.0)], ids=["label", "nan", "sum"]
)
def test_a_rejected_target_leaves_the_loss_layer_as_its_last_forward_left_it(bad):
    # the common case checks its targets inside the forward's kernel call: a target it flags goes
    # to the reference's check, which raises before any attribute changes
    layer = B.SoftmaxWithLoss()
    t = np.array([0, 2, 1])
    loss = layer.forward(X3, t)
    y = layer.y
    with pytest.raises(ValueError):
        layer.forward(X3, bad)
    assert layer.y is y and layer.t is t and layer.loss == loss
    fresh = B.SoftmaxWithLoss()
    fresh.forward(X3, t)
    np.testing.assert_array_equal(layer.backward(), fresh.backward())
