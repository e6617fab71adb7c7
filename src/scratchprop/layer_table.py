"""Every layer in one table: how to build it, feed it and break it.

One :class:`LayerSpec` per layer drives the equivalence, error-parity and
determinism tests (``tests/test_layer_table.py``) and the layer benchmarks
(``bench/cases.py``), on every backend. Adding a layer to the Numba backend
means adding its entry here; the tests and benchmarks follow.

Shapes are ``(N, ...)``; ``params`` and ``inputs`` take a NumPy
``Generator``, the dtype of the parameters / of the input, and the shape.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LayerSpec", "LAYERS", "spec"]


def _x(rng, dt, shape):
    return (rng.standard_normal(shape) * 2).astype(dt)


def _affine_params(rng, dt, shape):
    D = int(np.prod(shape[1:]))
    M = 100 if D == 784 else 7 if len(shape) > 2 else max(3, D // 2)  # 784 -> 100: the book's MNIST layer
    return {"W": (rng.standard_normal((D, M)) * 0.1).astype(dt), "b": rng.standard_normal(M).astype(dt)}


def _bn_params(rng, dt, shape):
    D = int(np.prod(shape[1:]))
    return {"gamma": (1 + 0.1 * rng.standard_normal(D)).astype(dt), "beta": rng.standard_normal(D).astype(dt)}


def _conv_params(rng, dt, shape):
    # 30 5x5 filters on a 28x28 image (SimpleConvNet's Conv1), else 4 3x3 filters
    FN, F = (30, 5) if shape[2:] == (28, 28) else (4, 3)
    W = (rng.standard_normal((FN, shape[1], F, F)) * 0.3).astype(dt)
    return {"W": W, "b": rng.standard_normal(FN).astype(dt)}


def _labels(rng, dt, shape):
    return (_x(rng, dt, shape), rng.integers(0, shape[-1], shape[0]))


@dataclass(frozen=True)
class LayerSpec:
    """One layer, as the tests and benchmarks see it.

    name         the class name in every backend module (``M.<name>``)
    params       ``(rng, dtype, shape) -> {constructor argument: array}`` (empty: none)
    inputs       ``(rng, dtype, shape) -> forward's positional arguments``
    shapes       input shapes the tests run (the benchmarks use ``bench_shape(N)``)
    bench_shape  ``N -> the input shape`` at batch ``N`` in the book's MNIST nets
    modes        keyword arguments of each forward mode tested (``train_flg``)
    state        attributes compared after forward and backward
    loss         ``backward`` takes ``dout=1`` (a loss layer), not an array
    random       ``forward`` draws from ``np.random`` (seeded alike on both sides)
    errors       name -> ``(make(M) -> callable that must raise)``; each runs on every
                 backend and must raise the same exception type and message
    options      extra constructor arguments
    """

    name: str
    inputs: object
    shapes: tuple
    bench_shape: object
    params: object = None
    modes: tuple = ({},)
    state: tuple = ()
    loss: bool = False
    random: bool = False
    errors: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def make(self, M, rng, dtype, shape):
        """A fresh layer from backend module ``M`` with parameters drawn for ``shape``."""
        params = self.params(rng, dtype, shape) if self.params else {}
        return getattr(M, self.name)(*params.values(), **self.options)


def _forward(spec, shape, *args, **kw):
    """An error case: build ``spec``'s layer for ``shape`` and call ``forward(*args)``."""

    def make(M):
        layer = spec.make(M, np.random.default_rng(0), np.float64, shape)
        return lambda: layer.forward(*args, **kw)

    return make


def _backward_first(spec):
    def make(M):
        layer = spec.make(M, np.random.default_rng(0), np.float64, spec.shapes[0])
        return lambda: layer.backward(1 if spec.loss else np.ones(spec.shapes[0]))

    return make


_SHAPES = ((1, 5), (3, 7), (64, 100), (257, 33), (8, 2, 3, 4))

LAYERS = [
    LayerSpec(
        "Affine",
        params=_affine_params,
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_SHAPES,
        bench_shape=lambda N: (N, 784),
        state=("x", "original_x_shape", "dW", "db"),
    ),
    LayerSpec(
        "Relu",
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_SHAPES,
        bench_shape=lambda N: (N, 100),
        state=("mask",),
    ),
    LayerSpec(
        "Sigmoid",
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_SHAPES,
        bench_shape=lambda N: (N, 100),
        state=("out",),
    ),
    LayerSpec(
        "Dropout",
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_SHAPES,
        bench_shape=lambda N: (N, 100),
        modes=({"train_flg": True}, {"train_flg": False}),
        state=("mask", "dropout_ratio"),
        random=True,
        options={"dropout_ratio": 0.3},
    ),
    LayerSpec(
        "BatchNormalization",
        params=_bn_params,
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape) + 3,),
        shapes=((2, 5), (3, 7), (64, 100), (257, 33), (8, 2, 3, 4)),
        bench_shape=lambda N: (N, 100),
        modes=({"train_flg": True}, {"train_flg": False}),
        state=("xc", "xn", "std", "batch_size", "running_mean", "running_var", "dgamma", "dbeta"),
    ),
    LayerSpec(
        "SoftmaxWithLoss",
        inputs=_labels,
        shapes=((1, 5), (3, 7), (64, 10), (257, 33)),
        bench_shape=lambda N: (N, 10),
        state=("loss", "y"),
        loss=True,
    ),
]

_IMAGES = ((2, 1, 8, 8), (3, 2, 7, 5), (1, 3, 4, 4), (8, 4, 12, 12))

LAYERS += [
    LayerSpec(
        "Convolution",
        params=_conv_params,
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_IMAGES,
        bench_shape=lambda N: (N, 1, 28, 28),
        state=("x", "col", "col_W", "dW", "db"),
        options={"stride": 1, "pad": 1},
    ),
    LayerSpec(
        "Pooling",
        inputs=lambda rng, dt, shape: (_x(rng, dt, shape),),
        shapes=_IMAGES,
        bench_shape=lambda N: (N, 30, 24, 24),  # SimpleConvNet's Pool1
        state=("x", "arg_max"),
        options={"pool_h": 2, "pool_w": 2, "stride": 2},
    ),
]

_BY_NAME = {s.name: s for s in LAYERS}


def spec(name):
    """The :class:`LayerSpec` called ``name``."""
    return _BY_NAME[name]


def _add_errors():
    # the cases every layer shares, then each layer's own
    for s in LAYERS:
        shape = s.shapes[1]
        s.errors["backward_before_forward"] = _backward_first(s)
        s.errors["string_input"] = _forward(
            s, shape, np.array(["a", "b"]), *s.inputs(np.random.default_rng(0), np.float64, shape)[1:]
        )
    aff = spec("Affine")
    aff.errors["wrong_features"] = _forward(aff, (3, 7), np.ones((3, 6)))
    bn = spec("BatchNormalization")
    bn.errors["wrong_features"] = _forward(bn, (3, 7), np.ones((3, 6)))
    bn.errors["empty_batch_training"] = _forward(bn, (3, 7), np.ones((0, 7)), train_flg=True)
    do = spec("Dropout")
    do.errors["bad_ratio"] = lambda M: lambda: M.Dropout(1.5)
    do.errors["backward_after_test_forward"] = _dropout_backward_after_test
    conv = spec("Convolution")  # shapes[1] is (3, 2, 7, 5): W expects 2 channels
    conv.errors["not_4d"] = _forward(conv, (3, 2, 7, 5), np.ones((3, 70)))
    conv.errors["channel_mismatch"] = _forward(conv, (3, 2, 7, 5), np.ones((3, 1, 7, 5)))
    conv.errors["stride_zero"] = lambda M: lambda: M.Convolution(np.ones((2, 1, 3, 3)), np.zeros(2), stride=0)
    conv.errors["filter_larger_than_input"] = _conv_too_small
    pool = spec("Pooling")
    pool.errors["not_4d"] = _forward(pool, (3, 2, 7, 5), np.ones((3, 7)))
    pool.errors["window_larger_than_input"] = _forward(pool, (3, 2, 7, 5), np.ones((1, 1, 1, 3)))
    pool.errors["pool_size_zero"] = lambda M: lambda: M.Pooling(0, 2)


def _dropout_backward_after_test(M):
    layer = M.Dropout(0.5)

    def call():
        layer.forward(np.ones((2, 3)), train_flg=False)
        layer.backward(np.ones((2, 3)))

    return call


def _conv_too_small(M):
    layer = M.Convolution(np.ones((2, 1, 5, 5)), np.zeros(2), pad=1)  # 2 + 2*1 < 5
    return lambda: layer.forward(np.ones((1, 1, 2, 3)))


_add_errors()
