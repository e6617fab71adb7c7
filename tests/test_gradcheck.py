"""scratchprop.gradcheck: the report, its printed form, and that it can fail."""

import importlib

import numpy as np
import pytest

import scratchprop
import scratchprop.tolerances  # noqa: F401
from scratchprop.data import load_mnist

gradcheck_mod = importlib.import_module("scratchprop._gradcheck")


def small_net(**kw):
    return scratchprop.TwoLayerNet(8, 6, 3, weight_init_std=0.5, seed=0, **kw)


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((3, 8)), np.array([0, 2, 1])


def test_report_passes_and_prints_notebook_lines():
    net = small_net()
    x, t = data()
    report = scratchprop.gradcheck(net, x, t)
    assert report.passed and report.params_restored
    assert report.loss_evaluations == 2 * (8 * 6 + 6 + 6 * 3 + 3)
    assert [p.name for p in report.params] == ["W1", "b1", "W2", "b2"]
    assert all(p.max_abs < 1e-8 for p in report.params)
    assert report.numerical_time > 0 and report.backprop_time > 0 and report.ratio > 1
    text = str(report)
    for line in ("numerical time: ", "backprop time: ", "W1: ", "b2: ", "gradient check PASSED"):
        assert line in text


def test_report_fails_on_a_wrong_gradient():
    net = small_net()
    x, t = data()
    real = net.gradient

    def broken(x, t):
        g = {k: v.copy() for k, v in real(x, t).items()}
        g["W2"][1, 2] += 1e-3
        return g

    net.gradient = broken
    report = scratchprop.gradcheck(net, x, t)
    assert not report.passed
    bad = {p.name: p for p in report.params}
    assert not bad["W2"].passed and bad["W2"].worst_index == (1, 2)
    assert bad["W1"].passed
    assert "gradient check FAILED" in str(report)


def test_report_notices_parameters_not_restored():
    net = small_net()
    x, t = data()
    real = net.numerical_gradient

    def sloppy(x, t):
        g = real(x, t)
        net.params["b1"][0] += 1e-12
        return g

    net.numerical_gradient = sloppy
    report = scratchprop.gradcheck(net, x, t)
    assert not report.params_restored and not report.passed


def test_float32_uses_its_own_tolerance():
    net = small_net(dtype=np.float32)
    x, t = data()
    report = scratchprop.gradcheck(net, x.astype(np.float32), t)
    assert report.dtype == "float32" and report.rtol > 1e-3
    assert report.passed


def test_warmup_calls_both_gradients_before_timing():
    net = small_net()
    x, t = data()
    calls = []
    real_num, real_grad = net.numerical_gradient, net.gradient
    net.numerical_gradient = lambda x, t: calls.append("num") or real_num(x, t)
    net.gradient = lambda x, t: calls.append("grad") or real_grad(x, t)
    report = scratchprop.gradcheck(net, x, t, warmup=True)
    assert calls == ["num", "grad", "num", "grad"]
    assert report.passed and "warm-up" in str(report)


# ----------------------------------------------------------------- kinks


def kinked_net(backend="numpy", dtype=np.float64):
    """A net whose hidden unit 0 sits 3e-5 from its ReLU kink for sample 0 (h = 1e-4 crosses it)."""
    rng = np.random.default_rng(1)
    x, t = rng.random((3, 20)), np.array([0, 2, 1])
    net = scratchprop.TwoLayerNet(20, 8, 3, weight_init_std=0.5, seed=0, backend=backend, dtype=dtype)
    W1, b1 = net.params["W1"], net.params["b1"]
    b1[0] = 3e-5 - x[0] @ W1[:, 0]
    return net, x.astype(dtype), t


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_kink_is_reported_and_left_out_of_the_verdict(backend):
    net, x, t = kinked_net(backend)
    report = scratchprop.gradcheck(net, x, t)
    assert report.passed and report.kinks_checked
    p = {q.name: q for q in report.params}
    assert p["b1"].kinks == 1 and p["b1"].kink_at == ((0,),)
    assert p["W1"].kinks >= 1 and all(ix[1] == 0 for ix in p["W1"].kink_at)
    assert p["W2"].kinks == 0 and p["b2"].kinks == 0
    # the raw numbers stay honest: at the kink the central difference is no derivative
    assert p["b1"].kink_max_abs > 1e-3
    text = str(report)
    assert "kinks: b1 has 1 entry whose +-h perturbation moves a ReLU input across 0" in text
    # without the kink mask the same gradients fail: the check used to cry wolf here
    num, bp = net.numerical_gradient(x, t), net.gradient(x, t)
    tol = scratchprop.tolerances.gradcheck(np.float64)
    assert not gradcheck_mod.compare("b1", num["b1"], bp["b1"], tol["rtol"], tol["floor"]).passed


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(1, 16))
def test_a_correct_backprop_passes_at_every_seed(seed, dtype):
    # the CLI's check (784-100-10, the first 3 digits): seeds 1, 3, 4, 7, 12, 14 and 15 failed
    # before kink detection, on both backends
    (x, t), _ = load_mnist()
    net = scratchprop.TwoLayerNet(784, 100, 10, backend="numba", seed=seed, dtype=dtype)
    report = scratchprop.gradcheck(net, x[:3].astype(dtype), t[:3])
    assert report.passed, str(report)


def test_the_reference_backend_passes_where_it_failed():
    (x, t), _ = load_mnist()
    net = scratchprop.TwoLayerNet(784, 100, 10, backend="numpy", seed=1)
    report = scratchprop.gradcheck(net, x[:3].astype(np.float64), t[:3])
    assert report.passed and sum(p.kinks for p in report.params) > 0


@pytest.mark.parametrize("bug", ["dropped bias gradient", "rows of dW2 reversed", "dW1 halved"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_real_bug_still_fails(backend, bug):
    net, x, t = kinked_net(backend)
    real = net.gradient

    def broken(x, t):
        g = {k: v.copy() for k, v in real(x, t).items()}
        if bug == "dropped bias gradient":
            g["b1"][:] = 0
        elif bug == "rows of dW2 reversed":
            g["W2"] = g["W2"][::-1].copy()
        else:
            g["W1"] *= 0.5
        return g

    net.gradient = broken
    report = scratchprop.gradcheck(net, x, t)
    assert not report.passed and "gradient check FAILED" in str(report)


def test_an_unknown_structure_is_not_checked_for_kinks():
    net = small_net()
    net.layers["Relu2"] = net.layers.pop("Affine2")  # not the Affine -> Relu -> Affine chain
    assert gradcheck_mod.kink_masks(net, data()[0], 1e-4) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_reference_backend_passes_at_every_seed(dtype):
    # the NumPy reference's per-element loop is slow: 20 hidden units instead of 100
    (x, t), _ = load_mnist()
    kinks = 0
    for seed in range(1, 16):
        net = scratchprop.TwoLayerNet(784, 20, 10, backend="numpy", seed=seed, dtype=dtype)
        report = scratchprop.gradcheck(net, x[:3].astype(dtype), t[:3])
        assert report.passed, (seed, str(report))
        kinks += sum(p.kinks for p in report.params)
    assert kinks > 0  # some seed did put a unit within h of its kink


# ------------------------------------------------- the chapter-6 nets


def mlp_data(n=5, d=20):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), np.array([0, 1, 2, 1, 0][:n])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_an_mlp_with_batchnorm_and_dropout_passes(backend):
    net = scratchprop.MultiLayerNetExtend(
        20, [8, 8], 3, weight_decay_lambda=0.1, use_dropout=True, dropout_ratio=0.3,
        use_batchnorm=True, backend=backend, seed=1,
    )  # fmt: skip
    x, t = mlp_data()
    np.random.seed(0)
    report = scratchprop.gradcheck(net, x, t, warmup=backend == "numba")
    assert report.passed, str(report)
    assert report.kinks_checked and report.kink_method == "masks"
    assert [p.name for p in report.params] == list(net.params)
    assert "kinks: found by comparing every ReLU layer's mask" in str(report)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_kink_in_a_deeper_relu_layer_is_found(backend):
    # hidden unit 0 of the SECOND ReLU layer sits 3e-5 from its kink for sample 0
    net = scratchprop.MultiLayerNet(20, [8, 8], 3, backend=backend, seed=5)  # no unit near 0 otherwise
    x, t = mlp_data()
    h1 = np.maximum(x @ net.params["W1"] + net.params["b1"], 0)
    net.params["b2"][0] = 3e-5 - h1[0] @ net.params["W2"][:, 0]
    report = scratchprop.gradcheck(net, x, t)
    assert report.passed, str(report)
    p = {q.name: q for q in report.params}
    assert p["b2"].kinks == 1 and p["b2"].kink_at == ((0,),) and p["b2"].kink_max_abs > 1e-3
    assert p["W3"].kinks == 0 and p["b3"].kinks == 0  # after the last ReLU: never
    num, bp = net.numerical_gradient(x, t), net.gradient(x, t)
    tol = scratchprop.tolerances.gradcheck(np.float64)
    assert not gradcheck_mod.compare("b2", num["b2"], bp["b2"], tol["rtol"], tol["floor"]).passed


def test_kink_detection_leaves_the_net_and_np_random_as_they_were():
    net = scratchprop.MultiLayerNetExtend(20, [6], 3, use_dropout=True, use_batchnorm=True, seed=0)
    x, t = mlp_data()
    net.gradient(x, t)  # running statistics exist
    before = {k: v.copy() for k, v in net.params.items()}
    stats = (net.layers["BatchNorm1"].running_mean.copy(), net.layers["BatchNorm1"].running_var.copy())
    np.random.seed(3)
    state = np.random.get_state()[1].copy()
    masks = gradcheck_mod.kink_masks(net, x, 1e-4)
    assert set(masks) == set(net.params) and not masks["W2"].any()
    assert np.array_equal(np.random.get_state()[1], state)
    assert all(before[k].tobytes() == net.params[k].tobytes() for k in before)
    assert np.array_equal(net.layers["BatchNorm1"].running_mean, stats[0])
    assert np.array_equal(net.layers["BatchNorm1"].running_var, stats[1])


def test_a_sigmoid_mlp_has_no_kinks_and_a_bug_still_fails():
    net = scratchprop.MultiLayerNet(20, [6, 6], 3, activation="sigmoid", seed=0)
    x, t = mlp_data()
    report = scratchprop.gradcheck(net, x, t)
    assert report.passed and report.kinks_checked and sum(p.kinks for p in report.params) == 0
    real = net.gradient
    net.gradient = lambda x, t: {**real(x, t), "W2": real(x, t)["W2"] * 1.01}
    assert not scratchprop.gradcheck(net, x, t).passed


def pooling_tie_net(backend):
    """A 3x3-input SimpleConvNet whose one 2x2 pooling window holds 2 and 2 - 3e-5: moving ``W1[0, 0, 0,
    0]`` (or ``W1[0, 0, 0, 1]``) by h = 1e-4 changes which entry is the window's maximum."""
    conv = {"filter_num": 1, "filter_size": 2, "pad": 0, "stride": 1}
    net = scratchprop.SimpleConvNet((1, 3, 3), conv, hidden_size=2, output_size=2, backend=backend, seed=0)
    net.params["W1"][...] = 1.0
    net.params["W2"][...] = [[1.0, 0.5]]  # hidden units at 2 and 1: far from their ReLU kink
    x = np.array([[[[1.0, 0.0, 1.0], [0.5, 0.5, 0.5 - 3e-5], [0.0, 0.0, 0.0]]]])
    return net, x, np.array([0])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_max_pooling_switch_is_a_kink(backend, monkeypatch):
    net, x, t = pooling_tie_net(backend)
    report = scratchprop.gradcheck(net, x, t)
    assert report.passed, str(report)
    p = {q.name: q for q in report.params}
    assert p["W1"].kinks == 2 and p["W1"].kink_at == ((0, 0, 0, 0), (0, 0, 0, 1))
    assert p["W1"].kink_max_abs > 1e-4 and sum(q.kinks for q in report.params) == 2
    text = str(report)
    assert "every ReLU layer's mask and every Pooling layer's arg_max" in text
    assert "moves a ReLU input across 0 or a pooling window's maximum to another entry" in text
    monkeypatch.setattr(gradcheck_mod, "_is_pooling", lambda layer: False)  # ReLU masks only
    report = scratchprop.gradcheck(*pooling_tie_net(backend))
    assert not report.passed and not report.kink_pooling
