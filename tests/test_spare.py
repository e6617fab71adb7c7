"""Layers reuse their output arrays only when nothing else holds them (``_dispatch.spare``)."""

import numpy as np

import scratchprop.numba as nb
from scratchprop import _dispatch as d


def test_spare_reuses_only_unheld_arrays():
    held = []
    a = d.spare(held, (3,), d.F64)
    b = d.spare(held, (3,), d.F64)
    assert b is not a  # `a` is still ours to read
    del a
    assert d.spare(held, (3,), d.F64) is held[0]
    view = held[0][1:]  # a view holds its base
    assert d.spare(held, (3,), d.F64) is held[1]
    del view, b
    assert d.spare(held, (2,), d.F64) is held[-1]  # another shape: a new one, the oldest dropped
    assert len(held) == 2 and held[-1].shape == (2,)


def test_spare_may_replace_the_attribute_it_is_given():
    class Layer:
        pass

    held, layer = [], Layer()
    layer.dW = d.spare(held, (4,), d.F32)
    # (outside the asserts: pytest's rewriting keeps references to what an assert evaluates)
    again = d.spare(held, (4,), d.F32, layer.dW) is layer.dW
    assert again
    kept = layer.dW  # the caller's own reference
    other = d.spare(held, (4,), d.F32, layer.dW) is kept
    assert not other


def _step(layer, x, dout):
    return layer.forward(x), layer.backward(dout), layer.dW, layer.db


def test_affine_keeps_what_the_caller_holds():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((50, 30)), rng.standard_normal(30)
    layer = nb.Affine(W, b)
    xs = [rng.standard_normal((200, 50)) for _ in range(4)]
    douts = [rng.standard_normal((200, 30)) for _ in range(4)]
    kept = [_step(layer, x, dout) for x, dout in zip(xs, douts)]  # every step's arrays held
    for (out, dx, dW, db), x, dout in zip(kept, xs, douts):
        np.testing.assert_allclose(out, x @ W + b, rtol=1e-12)
        np.testing.assert_allclose(dx, dout @ W.T, rtol=1e-12)
        np.testing.assert_allclose(dW, x.T @ dout, rtol=1e-12)
        np.testing.assert_allclose(db, dout.sum(0), rtol=1e-12)


def test_affine_alternates_two_gradients_in_the_books_loop():
    rng = np.random.default_rng(1)
    layer = nb.Affine(rng.standard_normal((50, 30)), rng.standard_normal(30))
    x, dout = rng.standard_normal((200, 50)), rng.standard_normal((200, 30))
    grads, first_two = None, None
    for step in range(6):
        layer.forward(x)
        layer.backward(dout)  # `grads = net.gradient(...)`: the last step's gradients still held
        fresh = layer.dW is not (grads["W"] if grads else None)
        assert fresh
        grads = {"W": layer.dW}
        if step == 1:
            first_two = [id(a) for a in layer._made[2]]  # stable ids: the layer holds both
    made = [id(a) for a in layer._made[2]]
    assert made == first_two and len(made) == 2


def test_fused_two_layer_gradient_keeps_what_the_caller_holds():
    import scratchprop
    from scratchprop._numba_net import _MADE_DW1

    rng = np.random.default_rng(2)
    net = scratchprop.TwoLayerNet(20, 8, 3, backend="numba", seed=0)
    ref = scratchprop.TwoLayerNet(20, 8, 3, backend="numpy", seed=0)
    xs = [rng.standard_normal((16, 20)) for _ in range(4)]
    ts = [rng.integers(0, 3, 16) for _ in range(4)]
    kept = [net.gradient(x, t) for x, t in zip(xs, ts)]  # every step's gradients held
    assert len({id(g["W1"]) for g in kept}) == 4
    for g, x, t in zip(kept, xs, ts):
        want = ref.gradient(x, t)
        for k in want:
            np.testing.assert_allclose(g[k], want[k], rtol=1e-10, atol=1e-12)
    del kept, g, want  # (the loop variables hold the last step too)
    grads = net.gradient(xs[0], ts[0])
    again = net.gradient(xs[1], ts[1])  # `grads` still held: the other array
    other = again["W1"] is not grads["W1"]  # (outside the assert, as above)
    assert other
    del grads
    made = [id(a) for a in _MADE_DW1[net]]  # ids stay unique while the net holds the arrays
    third = net.gradient(xs[2], ts[2])["W1"]
    reused = third is net.layers["Affine1"].dW and id(third) in made and third is not again["W1"]
    assert reused


def test_convolution_keeps_what_the_caller_holds():
    # its outputs, input gradients and the fused Conv + Relu + Pooling's pooled output and indices
    import scratchprop.numpy as ref

    rng = np.random.default_rng(2)
    W, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    conv, fused, relu, pool = (
        nb.Convolution(W, b, pad=1),
        nb.Convolution(W, b, pad=1),
        nb.Relu(),
        nb.Pooling(2, 2, 2),
    )
    xs = [rng.standard_normal((6, 2, 8, 8)) for _ in range(4)]
    douts = [rng.standard_normal((6, 4, 8, 8)) for _ in range(4)]
    kept = []
    for x, dout in zip(xs, douts):
        out, dx = conv.forward(x), conv.backward(dout)
        pooled = fused.forward_relu_pool(x, relu, pool)
        kept.append((out, dx, conv.dW, pooled, pool.arg_max))
    for (out, dx, dW, pooled, arg), x, dout in zip(kept, xs, douts):
        want, wpool = ref.Convolution(W, b, pad=1), ref.Pooling(2, 2, 2)
        np.testing.assert_allclose(out, want.forward(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, want.backward(dout), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dW, want.dW, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(pooled, wpool.forward(np.maximum(want.forward(x), 0)))
        np.testing.assert_array_equal(arg, wpool.arg_max)
