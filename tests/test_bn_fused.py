"""A Numba net's BatchNormalization + Relu (+ Dropout) in one group (``forward_fused`` /
``backward_fused``): the bits, the layers' state and the ``np.random`` stream of the layers run
one by one, whatever is set in between."""

import numpy as np
import pytest

import scratchprop
from scratchprop import _numba_ch6 as ch6
from scratchprop import layernet
from scratchprop._numba_layers import Relu
from scratchprop.kernels import mt19937

# (N, D) over the kernels' threshold (the forward fused), under it (the backward only), and 4-D
SHAPES = [(64, 100), (3, 5), (8, 4, 16, 16)]


def _layers(D, dt, drop):
    rng = np.random.default_rng(1)
    gamma, beta = (1 + 0.1 * rng.standard_normal(D)).astype(dt), (0.1 * rng.standard_normal(D)).astype(dt)
    bn = ch6.BatchNormalization(gamma, beta)
    return bn, ([Relu(), ch6.Dropout(0.4)] if drop else [Relu()])


def _case(shape, dt):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dt)
    x.reshape(-1)[:3] = [np.nan, 0.0, -0.0]  # NaN through the ReLU and the Dropout, as in the layers
    return x, rng.standard_normal(shape).astype(dt)


def _one_by_one(bn, layers, x, dout, train_flg=True):
    out = bn.forward(x, train_flg)
    for layer in layers:
        out = layer.forward(out, train_flg) if isinstance(layer, ch6.Dropout) else layer.forward(out)
    d = dout
    for layer in reversed(layers):
        d = layer.backward(d)
    return out, bn.backward(d)


def _bits(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


def _state(bn, layers):
    return [bn.xc, bn.xn, bn.std, bn.running_mean, bn.running_var, bn.dgamma, bn.dbeta] + [
        layer.mask for layer in layers
    ]


@pytest.mark.parametrize("drop", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_fused_gives_the_bits_state_and_draws_of_the_layers_one_by_one(dt, shape, drop):
    x, dout = _case(shape, dt)
    D = int(np.prod(shape[1:]))
    bn0, layers0 = _layers(D, dt, drop)
    np.random.seed(5)
    want = _one_by_one(bn0, layers0, x, dout)
    draws = np.random.rand(3)
    bn, layers = _layers(D, dt, drop)
    assert bn.fuses_with(layers) == len(layers) and bn.fuses_with(layers[1:]) == 0
    np.random.seed(5)
    out = bn.forward_fused(x, layers)
    if x.size >= ch6._d.KERNEL_MIN_ELEMENTS:
        assert layers[0]._out is None  # the fused pass ran: the Relu holds only its mask
    got = out, bn.backward_fused(dout, layers)
    _bits(got, want)
    _bits(_state(bn, layers), _state(bn0, layers0))
    _bits(np.random.rand(3), draws)  # the same draws taken from np.random's stream


def test_backward_reads_the_masks_as_they_are_now():
    dt, shape = np.float64, (64, 100)
    x, dout = _case(shape, dt)
    bn, layers = _layers(100, dt, True)
    bn.forward_fused(x, layers)
    rng = np.random.default_rng(2)
    layers[0].mask = rng.random(shape) > 0.5
    layers[1].mask = rng.random(shape) > 0.2
    want = bn.backward(layers[0].backward(layers[1].backward(dout)))
    _bits([bn.backward_fused(dout, layers)], [want])


def test_test_mode_is_the_layers_own_and_backward_then_raises_as_they_do():
    dt, shape = np.float64, (64, 100)
    x, dout = _case(shape, dt)
    bn0, layers0 = _layers(100, dt, True)
    bn, layers = _layers(100, dt, True)
    for b, ls in ((bn0, layers0), (bn, layers)):  # running statistics from one training forward
        np.random.seed(0)
        _one_by_one(b, ls, x, dout)
    want = layers0[1].forward(layers0[0].forward(bn0.forward(x, False)), False)
    _bits([bn.forward_fused(x, layers, train_flg=False)], [want])
    with pytest.raises(ValueError) as fused:
        bn.backward_fused(dout, layers)
    with pytest.raises(ValueError) as one:
        layers0[1].backward(dout)
    assert str(fused.value) == str(one.value)


def test_a_generator_that_is_not_mt19937_draws_through_np_random(monkeypatch):
    dt, shape = np.float64, (64, 100)
    x, dout = _case(shape, dt)
    bn0, layers0 = _layers(100, dt, True)
    np.random.seed(3)
    want = _one_by_one(bn0, layers0, x, dout)

    def no_state():
        raise TypeError("not MT19937")

    monkeypatch.setattr(mt19937, "global_state", no_state)
    bn, layers = _layers(100, dt, True)
    np.random.seed(3)
    _bits([bn.forward_fused(x, layers), bn.backward_fused(dout, layers)], want)
    _bits(_state(bn, layers), _state(bn0, layers0))


def test_bad_input_raises_the_layers_error_and_draws_nothing():
    bn, layers = _layers(100, np.float64, True)
    np.random.seed(4)
    before = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="BatchNormalization"):
        bn.forward_fused(np.zeros((64, 99)), layers)
    assert np.array_equal(np.random.get_state()[1], before) and np.random.get_state()[2] == 624
    assert layers[0].mask is None and layers[1].mask is None


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_a_net_with_the_groups_gives_the_bits_of_its_layers_one_by_one(dt, monkeypatch):
    rng = np.random.default_rng(0)
    x, t = rng.random((64, 784)).astype(dt), rng.integers(0, 10, 64)

    def run():
        net = scratchprop.MultiLayerNetExtend(
            784, [100, 100], 10, backend="numba", seed=0, dtype=dt, use_batchnorm=True, use_dropout=True
        )
        np.random.seed(7)
        grads = net.gradient(x, t)
        masks = [layer.mask for layer in net.layers.values() if hasattr(layer, "mask")]
        return [grads[k] for k in sorted(grads)] + masks + [net.last_layer.loss, np.random.rand(2)]

    fused = run()
    net = scratchprop.MultiLayerNetExtend(
        784, [100], 10, backend="numba", use_batchnorm=True, use_dropout=True
    )
    assert (1, 2) in layernet._groups(list(net.layers.values()))  # BatchNorm1 takes the Relu and Dropout
    monkeypatch.setattr(layernet, "_groups", lambda layers: [(i, 0) for i in range(len(layers))])
    _bits(fused, run())
