"""The book's own convnets (written the book's way, ``tests/booknet_conv.py``) on our layers.

The drop-in promise for chapters 7-8: a reader's ``SimpleConvNet`` and
``DeepConvNet`` change only their import line (``common.layers`` ->
``scratchprop.numba``) and compute what they compute on the reference's
layers: the same loss, gradients, predictions and, with the same optimizer,
the same parameters after training steps (within
:mod:`scratchprop.tolerances`). float32 images with the book's float64
weights included.
"""

import numpy as np
import pytest
from booknet_conv import book_deep_convnet_class, book_simple_convnet_class

import scratchprop.numba as NB
import scratchprop.numpy as NP
from scratchprop import tolerances


def close(got, want):
    # per array, against its largest value (the tolerances' definition): the products sum in
    # another order, so an element near 0 carries the rounding of the array's scale
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = tolerances.equivalence(want.dtype)
    size = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=tol["rtol"] * size + tol["atol"])


def batch(N, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.random((N, 1, 28, 28)).astype(dtype), rng.integers(0, 10, N)


def twins(make_class, seed, **kw):
    nets = []
    for M in (NP, NB):
        np.random.seed(seed)
        nets.append(make_class(M)(**kw))
    return nets


def update_alike(opts, ref, got, ga, gb):
    # the gradients agree, then each net takes its optimizer's step
    for k in ga:
        close(gb[k], ga[k])
    opts[0].update(ref.params, ga)
    opts[1].update(got.params, gb)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_book_simple_convnet_trains_alike_on_both_backends(dtype):
    ref, got = twins(book_simple_convnet_class, 0, std=0.1)
    assert type(got.layers["Conv1"]).__module__ == "scratchprop._numba_conv"
    opts = [NP.Adam(lr=0.01), NB.Adam(lr=0.01)]
    for step in range(3):
        x, t = batch(8, step, dtype)
        close(got.loss(x, t), ref.loss(x, t))
        update_alike(opts, ref, got, ref.gradient(x, t), got.gradient(x, t))
    for k in ref.params:
        close(got.params[k], ref.params[k])
    x, t = batch(200, 9, dtype)
    close(got.predict(x), ref.predict(x))
    assert got.accuracy(x, t) == ref.accuracy(x, t)


def test_book_deep_convnet_trains_alike_on_both_backends():
    ref, got = twins(book_deep_convnet_class, 1)
    opts = [NP.Adam(), NB.Adam()]
    for step in range(2):
        x, t = batch(4, step)
        np.random.seed(100 + step)  # the same Dropout masks on both sides
        ga = ref.gradient(x, t)
        np.random.seed(100 + step)
        update_alike(opts, ref, got, ga, got.gradient(x, t))
    for k in ref.params:
        close(got.params[k], ref.params[k])
    x, t = batch(6, 7)
    close(got.predict(x), ref.predict(x))
    assert got.accuracy(x, t, batch_size=3) == ref.accuracy(x, t, batch_size=3)
