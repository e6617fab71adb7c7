"""Chapter 6 benchmarks: MultiLayerNetExtend with BatchNorm, Dropout and Adam, three ways.

* ``MultiLayerNetExtend``: our class, ``backend="numpy"`` / ``"numba"``;
* ``book``: the book-style class of ``tests/booknet_extend.py`` (loaded by path, the
  same code the tests check) on our NumPy or Numba layers and optimizer;
* ``Adam``: the optimizer's update alone, for that net's parameters.

A step is what the book's Trainer does per batch: ``grads = net.gradient(x, t)``,
``optimizer.update(net.params, grads)``.
"""

import importlib.util
from pathlib import Path

import numpy as np

from . import _env
from .builders import Built
from .cases import inputs

_spec = importlib.util.spec_from_file_location(
    "scratchprop_tests_booknet_extend", Path(__file__).resolve().parent.parent / "tests" / "booknet_extend.py"
)
_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_book)

NET = {"use_batchnorm": True, "use_dropout": True}
LR = 0.001


def _net(case):
    D, hidden, C = case.sizes[0], list(case.sizes[1:-1]), case.sizes[-1]
    M = _env.backend_module(case.backend)
    if case.api == "book":
        np.random.seed(0)
        return _book.book_extend_class(M)(D, hidden, C, **NET), M
    import scratchprop

    return scratchprop.MultiLayerNetExtend(D, hidden, C, backend=case.backend, seed=0, **NET), M


def build_chapter6(case):
    net, M = _net(case)
    x, t = inputs(case.batch, case.dtype, case.sizes[0], case.sizes[-1])
    opt = M.Adam(lr=LR)
    np.random.seed(1)
    if case.api == "Adam":
        grads = net.gradient(x, t)
        return Built(lambda: opt.update(net.params, grads), info={"params": len(net.params)})

    def step():
        opt.update(net.params, net.gradient(x, t))
        return net.last_layer.loss

    def check(loss):
        assert np.isfinite(float(loss)), loss

    return Built(step, check=check, info={"net": "784-[100]x5-10 batchnorm dropout(0.5) adam"})
