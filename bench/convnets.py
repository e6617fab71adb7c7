"""Chapters 7-8 benchmarks: SimpleConvNet and DeepConvNet, one Adam training step and accuracy.

* ``net``: :class:`scratchprop.SimpleConvNet` / :class:`scratchprop.DeepConvNet`,
  ``backend="numpy"`` / ``"numba"``, ``dtype`` the net's (float32 images for a float32 net);
* ``book``: the book-style classes of ``tests/booknet_conv.py`` (loaded by path: the code
  the tests check) on our NumPy or Numba layers and optimizer; the book's float64 weights,
  ``dtype`` is the images' (``load_mnist`` gives float32);
* ``torch``: the same net in PyTorch CPU eager (``conv2d``, ``max_pool2d``, ``addmm``,
  ``cross_entropy``, ``torch.optim.Adam``), weights and images in ``dtype``.

A step is the book's ``train_convnet.py`` step: ``grads = net.gradient(x, t)``,
``optimizer.update(net.params, grads)`` with Adam (lr 0.001), batch 100. Images are
the bundled MNIST digits as ``(N, 1, 28, 28)``.
"""

import importlib.util
from pathlib import Path

import numpy as np

from . import _env
from .builders import Built, _finite_loss
from .cases import inputs

_spec = importlib.util.spec_from_file_location(
    "scratchprop_tests_booknet_conv", Path(__file__).resolve().parent.parent / "tests" / "booknet_conv.py"
)
_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_book)

LR = 0.001
#: DeepConvNet's convolutions (filters, pad), as the book's (all 3x3, stride 1)
DEEP = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))


def images(n, dtype):
    x, t = inputs(n, dtype)
    return x.reshape(n, 1, 28, 28), t


def make_net(name, api, backend, dtype):
    """``(net, M)``: ``name``'s book-style class on ``M``'s layers (``api="book"``, the book's float64
    weights) or our class (``"net"``, weights in ``dtype``), and the backend's module ``M``."""
    M = _env.backend_module(backend)
    if api == "book":
        np.random.seed(0)
        make = _book.book_simple_convnet_class if name == "SimpleConvNet" else _book.book_deep_convnet_class
        return make(M)(), M
    import scratchprop

    cls = getattr(scratchprop, name)
    return cls(backend=backend, seed=0, dtype=np.dtype(dtype)), M


def _torch_net(name, dtype):
    """``(params, forward(x, train))``: the book's net in torch, He / 0.01 init like the book's."""
    torch = _env.torch()
    F = torch.nn.functional
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)

    def randn(*shape, std):
        return (std * torch.randn(*shape, generator=g, dtype=dt)).requires_grad_()

    def zeros(n):
        return torch.zeros(n, dtype=dt, requires_grad=True)

    if name == "SimpleConvNet":
        P = [randn(30, 1, 5, 5, std=0.01), zeros(30), randn(4320, 100, std=0.01), zeros(100)]
        P += [randn(100, 10, std=0.01), zeros(10)]

        def forward(x, train):
            h = F.max_pool2d(torch.relu(F.conv2d(x, P[0], P[1])), 2, 2)
            h = torch.relu(torch.addmm(P[3], h.reshape(x.shape[0], -1), P[2]))
            return torch.addmm(P[5], h, P[4])

        return P, forward
    P, fan_in = [], 1
    for filters, _ in DEEP:
        P += [randn(filters, fan_in, 3, 3, std=np.sqrt(2 / (fan_in * 9))), zeros(filters)]
        fan_in = filters
    P += [randn(1024, 50, std=np.sqrt(2 / 1024)), zeros(50), randn(50, 10, std=np.sqrt(2 / 50)), zeros(10)]

    def forward(x, train):
        h = x
        for i, (_, pad) in enumerate(DEEP):
            h = torch.relu(F.conv2d(h, P[2 * i], P[2 * i + 1], padding=pad))
            if i % 2:
                h = F.max_pool2d(h, 2, 2)
        h = F.dropout(torch.relu(torch.addmm(P[13], h.reshape(x.shape[0], -1), P[12])), 0.5, train)
        return F.dropout(torch.addmm(P[15], h, P[14]), 0.5, train)

    return P, forward


def _torch_case(case):
    torch = _env.torch()
    name, what = case.case.split(".")
    P, forward = _torch_net(name, case.dtype)
    x_np, t_np = images(case.batch, case.dtype)
    x, t = torch.from_numpy(x_np.copy()), torch.from_numpy(t_np.copy())
    info = {"peer": "torch eager autograd, conv2d + max_pool2d + addmm"}
    if what == "accuracy":

        def accuracy():
            with torch.no_grad():
                hits = sum(
                    int((forward(x[i : i + 100], False).argmax(1) == t[i : i + 100]).sum())
                    for i in range(0, len(x), 100)
                )
            return hits / len(x)

        return Built(accuracy, info=info)
    opt = torch.optim.Adam(P, lr=LR)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(x, True), t)
        loss.backward()
        opt.step()
        return float(loss)

    return Built(step, check=_finite_loss, info=info)


def build_convnets(case):
    if case.api == "torch":
        return _torch_case(case)
    net, M = make_net(case.case.split(".")[0], case.api, case.backend, case.dtype)
    what = case.case.split(".")[1]
    x, t = images(case.batch, case.dtype)
    if what == "accuracy":
        return Built(lambda: net.accuracy(x, t, batch_size=100), info={"batch_size": 100})
    opt = M.Adam(lr=LR)
    np.random.seed(1)  # Dropout's masks

    def step():
        opt.update(net.params, net.gradient(x, t))
        return net.last_layer.loss

    return Built(step, check=_finite_loss, info={"optimizer": f"Adam(lr={LR})"})
