"""scratchprop: the book's chapter-5 backprop layers, with a drop-in Numba backend.

``import scratchprop`` is cheap: it does not import numba. The Numba backend
(``scratchprop.numba``) is imported on demand.
"""
from .backends import BACKENDS, get_backend
from .gradcheck import GradcheckReport, gradcheck
from .net import TwoLayerNet

__version__ = "0.1.0"
__all__ = ["TwoLayerNet", "gradcheck", "GradcheckReport", "get_backend", "BACKENDS", "__version__"]
