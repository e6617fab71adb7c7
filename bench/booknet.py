"""A user's own notebook net for the benchmarks: the book's ``TwoLayerNet``, verbatim.

The class itself is ``tests/booknet.py`` (the book's source with only its layer
import swapped), loaded here by path so that the tests and the benchmarks time
and check the very same code, and ``pytest bench`` does not need ``tests/`` to
be a package.
"""

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["book_net_class", "book_net"]

_spec = importlib.util.spec_from_file_location(
    "scratchprop_tests_booknet", Path(__file__).resolve().parent.parent / "tests" / "booknet.py"
)
_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_book)


def book_net_class(layers):
    """The book's ``TwoLayerNet`` importing its layers from module ``layers``."""
    return _book.book_net_class(layers.__name__)


def book_net(layers, input_size, hidden_size, output_size, *, dtype=np.float64, seed=0):
    """A book net on ``layers``, its weights drawn with ``np.random.seed(seed)``.

    The book's net is float64. For another ``dtype`` the parameters are cast
    and the two ``Affine`` layers re-pointed at the cast arrays, as a user
    would do by hand, so ``params`` and the layers still share memory (the
    training loop's ``params[key] -= lr * grad[key]`` must reach the layers).
    """
    np.random.seed(seed)
    net = book_net_class(layers)(input_size, hidden_size, output_size)
    dtype = np.dtype(dtype)
    if dtype != np.float64:
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] = net.params[key].astype(dtype)
        net.layers["Affine1"].W, net.layers["Affine1"].b = net.params["W1"], net.params["b1"]
        net.layers["Affine2"].W, net.layers["Affine2"].b = net.params["W2"], net.params["b2"]
    return net
