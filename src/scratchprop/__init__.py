"""scratchprop: the book's chapter-5 backprop layers, with a drop-in Numba backend.

``import scratchprop`` is cheap: it imports neither NumPy nor Numba until a
name below is first used (so the command line answers Ctrl-C with one line
even while it starts). The Numba backend (``scratchprop.numba``) is imported
on demand.
"""

__version__ = "0.1.0"
__all__ = [
    "TwoLayerNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "SimpleConvNet",
    "DeepConvNet",
    "Trainer",
    "gradcheck",
    "GradcheckReport",
    "get_backend",
    "BACKENDS",
    "__version__",
]

_LAZY = {
    "TwoLayerNet": ".net",
    "MultiLayerNet": ".multilayer",
    "MultiLayerNetExtend": ".multilayer",
    "SimpleConvNet": ".convnet",
    "DeepConvNet": ".convnet",
    "Trainer": ".trainer",
    "gradcheck": "._gradcheck",
    "GradcheckReport": "._gradcheck",
    "get_backend": ".backends",
    "BACKENDS": ".backends",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scratchprop' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
