"""A Numba net's Conv + Relu + Pooling in one pass per block (``Convolution.forward_relu_pool`` /
``backward_relu_pool``): the bits and the layers' state of the three layers run one by one,
whatever is read or set in between."""

import numpy as np
import pytest

from scratchprop import _numba_conv as nb
from scratchprop import _numba_layers as nb_layers

POOLS = [(2, 2, 2), (3, 3, 3), (2, 2, 3), (2, 3, 3)]  # (pool_h, pool_w, stride): windows apart


def _layers(W, b, pool):
    return nb.Convolution(W, b, 1, 1), nb_layers.Relu(), nb.Pooling(*pool)


def _case(dt, seed=0, N=5, H=9):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 2, H, H)).astype(dt)
    x[0, 0, 0, :3] = np.nan  # NaN goes through the ReLU and wins its windows, as in the layers
    W, b = rng.standard_normal((4, 2, 3, 3)).astype(dt), rng.standard_normal(4).astype(dt)
    return rng, x, W, b


def _one_by_one(x, W, b, pool, dpool, need_dx):
    conv, relu, pl = _layers(W, b, pool)
    out = pl.forward(relu.forward(conv.forward(x)))
    d = relu.backward(pl.backward(dpool))
    dx = conv.backward(d) if need_dx else conv.backward_params(d)
    return [out, conv.dW, conv.db] + ([dx] if need_dx else []), (conv, relu, pl)


def _bits(a, b):
    assert len(a) == len(b)
    for g, w in zip(a, b):
        assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_fused_gives_the_bits_and_state_of_the_layers_one_by_one(dt, pool, need_dx):
    rng, x, W, b = _case(dt)
    conv, relu, pl = _layers(W, b, pool)
    assert conv.fuses_with([relu, pl]) == 2 and conv.fuses_with([relu]) == 1 and not conv.fuses_with([pl])
    out = conv.forward_fused(x, [relu, pl])
    dpool = rng.standard_normal(out.shape).astype(dt)
    want, (c0, r0, p0) = _one_by_one(x, W, b, pool, dpool, need_dx)
    dx = conv.backward_fused(dpool, [relu, pl], need_dx=need_dx)
    assert (dx is None) == (not need_dx)
    assert pl._x is None and relu._out is None  # the fused passes ran: the ReLU's output never made
    _bits([out, conv.dW, conv.db] + ([dx] if need_dx else []), want)
    # the state the three forwards leave, made when read
    _bits([relu.mask, pl.x, pl.arg_max, conv.col], [r0.mask, p0.x, p0.arg_max, c0.col])


@pytest.mark.parametrize("read", ["mask", "x", "arg_max", "set arg_max", "relu forward"])
def test_state_read_or_set_after_the_forward_takes_the_layers_own_backwards(read):
    dt, pool = np.float64, (2, 2, 2)
    rng, x, W, b = _case(dt, seed=1)
    conv, relu, pl = _layers(W, b, pool)
    out = conv.forward_fused(x, [relu, pl])
    dpool = rng.standard_normal(out.shape)
    want, (c0, r0, p0) = _one_by_one(x, W, b, pool, dpool, True)
    if read == "set arg_max":  # every window's first value: the set indices count, as in the reference
        pl.arg_max = np.zeros_like(pl.arg_max)
        p0.arg_max = np.zeros_like(p0.arg_max)
        d = r0.backward(p0.backward(dpool))
        want = [out, None, None, c0.backward(d)]
        want[1:3] = c0.dW, c0.db
    elif read == "relu forward":  # another forward of the Relu: its own mask from then on
        y = c0.forward(x)
        relu.forward(y)
        want = [out, *_one_by_one(x, W, b, pool, dpool, True)[0][1:]]
    else:
        getattr(relu if read == "mask" else pl, read.split()[-1])
    dx = conv.backward_fused(dpool, [relu, pl])
    _bits([out, conv.dW, conv.db, dx], want)


def test_the_relu_output_read_later_is_the_forwards_not_the_updated_filters():
    rng, x, W, b = _case(np.float64, seed=2)
    conv, relu, pl = _layers(W, b, (2, 2, 2))
    conv.forward_fused(x, [relu, pl])
    c0, r0, p0 = _layers(W.copy(), b.copy(), (2, 2, 2))
    p0.forward(r0.forward(c0.forward(x)))
    W -= 1.0  # an optimizer's step, in place, before anything reads the state
    b += 1.0
    _bits([pl.x, relu.mask], [p0.x, r0.mask])


def test_overlapping_or_padded_windows_are_not_fused_and_give_the_layers_values():
    rng, x, W, b = _case(np.float64, seed=3)
    for pool in ((2, 2, 1), (3, 3, 2)):
        conv, relu, pl = _layers(W, b, pool)
        assert conv.fuses_with([relu, pl]) == 1
    conv, relu, pl = nb.Convolution(W, b, 1, 1), nb_layers.Relu(), nb.Pooling(2, 2, 2, 1)
    assert conv.fuses_with([relu, pl]) == 1
    out = conv.forward_relu_pool(x, relu, pl)  # called anyway: the layers one by one
    dpool = rng.standard_normal(out.shape)
    dx = conv.backward_relu_pool(dpool, relu, pl)
    c0, r0, p0 = nb.Convolution(W, b, 1, 1), nb_layers.Relu(), nb.Pooling(2, 2, 2, 1)
    want = p0.forward(r0.forward(c0.forward(x)))
    _bits([out, dx, conv.dW], [want, c0.backward(r0.backward(p0.backward(dpool))), c0.dW])


def test_a_bad_gradient_gets_the_poolings_error():
    rng, x, W, b = _case(np.float64, seed=4)
    conv, relu, pl = _layers(W, b, (2, 2, 2))
    out = conv.forward_fused(x, [relu, pl])
    with pytest.raises(ValueError, match="Pooling"):
        conv.backward_fused(np.ones(out.shape[:-1]), [relu, pl])
