"""The Affine -> Relu -> Affine forward pass in one call (``TwoLayerNet.predict``).

``x (N, D)``, ``W1 (D, H)``, ``b1 (H,)``, ``W2 (H, C)``, ``b2 (C,)``, all
C-contiguous, one float dtype, into the caller's ``h (N, H)`` and
``s (N, C)``::

    h = relu(x @ W1 + b1)      # the bias added and ReLU applied in one pass
    s = h @ W2 + b2

in the reference's order (the product, then the bias), as the forward half
of :func:`.two_layer.step`. Done by the layers one by one, the first
``Affine`` fills its output with the bias on one thread before the product
and ``Relu`` makes a second pass that also writes the mask. (One pass
fewer over ``h``; see ``bench/README.md`` for the inference timings.)
"""

from numba import njit

from .config import SERIAL, guard_cache
from .pair import HERE
from .two_layer import _bias_relu_rows, _first_times, _times

__all__ = ["predict", "predict_naive"]


@njit(**SERIAL)
def _bias_rows(s, b, lo, hi):
    """``s[i] += b`` for rows ``lo:hi``."""
    for i in range(lo, hi):
        for j in range(s.shape[1]):
            s[i, j] += b[j]


@njit(**SERIAL)
def predict(x, W1, b1, W2, b2, h, s, mode, fn, part):
    """``x (N, D) -> h (N, H), s (N, C)`` (see the module docstring); returns ``s``. ``mode``: the
    products on this thread (:func:`.gemm.product`), in BLAS, or the first paired (:mod:`.pair`,
    through ``fn``; ``part``: ``h``'s shape, the worker's half sum), as :func:`.two_layer.step`
    runs them."""
    N = x.shape[0]
    _first_times(x, W1, h, mode, fn, part)
    _bias_relu_rows(h, b1, 0, N)
    _times(h, W2, s, mode == HERE)
    _bias_rows(s, b2, 0, N)
    return s


def predict_naive(x, W1, b1, W2, b2):
    """Plain NumPy, the reference's order: ``x (N, D) -> (h (N, H), s (N, C))``."""
    h = x @ W1 + b1
    h[h <= 0] = 0
    return h, h @ W2 + b2


guard_cache(globals())
