"""scratchprop.gradcheck: the report, its printed form, and that it can fail."""
import numpy as np

import scratchprop


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
