"""Backend registry: a name maps to a module that provides the layers.

A backend is any module (or object) with ``Affine``, ``Relu``,
``SoftmaxWithLoss`` and ``numerical_gradient``. It may also define fast
paths that :class:`scratchprop.TwoLayerNet` uses when present:
``net_predict(net, x)``, ``net_gradient(net, x, t)``,
``net_train_step(net, x, t, lr)`` and ``net_numerical_gradient(net, x, t, h)``.
"""

import importlib

BACKENDS = {
    "numpy": "scratchprop.numpy",
    "numba": "scratchprop.numba",
}

REQUIRED = ("Affine", "Relu", "SoftmaxWithLoss", "numerical_gradient")


def get_backend(backend):
    """The backend module for a name in :data:`BACKENDS`, or ``backend`` itself if it is a module."""
    if isinstance(backend, str):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        return importlib.import_module(BACKENDS[backend])
    missing = [name for name in REQUIRED if not hasattr(backend, name)]
    if missing:
        raise TypeError(
            f"backend {backend!r} is neither a name ({', '.join(BACKENDS)}) nor a module "
            f"providing the layers; it lacks {', '.join(missing)}"
        )
    return backend


def backend_name(module):
    """The registry name of a backend module, else its ``__name__``."""
    for name, path in BACKENDS.items():
        if getattr(module, "__name__", None) == path:
            return name
    return getattr(module, "__name__", repr(module))
