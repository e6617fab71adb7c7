"""The book's convolutional nets: ``SimpleConvNet`` (chapter 7) and ``DeepConvNet`` (chapter 8), on any backend.

Same constructor signatures and defaults, parameter keys (``W1``, ``b1``,
...), layer order and pickle files (``save_params`` / ``load_params``: a
dict of arrays keyed ``W1``, ``b1``, ...) as the book; the walking of the
layers is :class:`scratchprop.layernet.LayerNet`'s. Added, as for
:class:`scratchprop.MultiLayerNet`: ``backend=``, ``dtype=`` and ``seed=``
(weights from ``np.random.default_rng(seed)``; the book draws them from the
global ``np.random``), ``numerical_gradient`` for both nets, and ``config()``.

Layer names: ``SimpleConvNet`` has the book's (``Conv1, Relu1, Pool1,
Affine1, Relu2, Affine2``). The book keeps ``DeepConvNet``'s layers in a
plain list; here they are named in order ``Conv1, Relu1, Conv2, Relu2,
Pool1, Conv3, Relu3, Conv4, Relu4, Pool2, Conv5, Relu5, Conv6, Relu6, Pool3,
Affine1, Relu7, Dropout1, Affine2, Dropout2`` (``W1``-``W6`` are held by
``Conv1``-``Conv6``, ``W7`` by ``Affine1``, ``W8`` by ``Affine2``). Both end in
``last_layer`` (SoftmaxWithLoss).

``DeepConvNet.loss(x, t)`` trains by default (Dropout on), as the book's
``loss`` always does; ``train_flg=False`` gives the test-mode loss.

Fixed relative to the book (each has a test):

* ``accuracy`` counts every sample: the book skips a last partial batch
  but still divides by N (so 150 samples at batch 100 score at most 2/3).
* Non-square inputs work (the book sizes both axes from ``input_dim[1]``),
  and so do conv outputs of odd size (the book's ``W2`` / ``W7`` rows then
  miss the pooled size, e.g. ``int(30 * 12.5 * 12.5)`` for 25x25, and the
  first Affine crashes): sizes follow the layers' own arithmetic.
* ``DeepConvNet`` takes its He scales and ``W7``'s rows from its
  ``conv_param_*`` and ``input_dim`` (the book hard-codes them for 1x28x28
  and the default filters; the defaults give the same numbers).
* ``load_params`` copies into the net's arrays in place (the layers and an
  optimizer keep seeing them) after checking every key and shape.
* ``save_params`` writes atomically (a temporary file, then a rename).
"""

import contextlib
import pickle
from collections.abc import Mapping

import numpy as np

from . import _validate as check
from . import threads
from ._atomic import atomic_write
from .backends import get_backend
from .layernet import LayerNet
from .multilayer import _init_scale, _size

__all__ = ["SimpleConvNet", "DeepConvNet"]

_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")


def _conv_param(where, name, param):
    """A conv_param dict as ``{filter_num, filter_size, pad, stride}`` of ints."""
    if not isinstance(param, Mapping):
        raise TypeError(f"{where}: {name} must be a dict with keys {', '.join(_CONV_KEYS)}, got {param!r}")
    missing = [k for k in _CONV_KEYS if k not in param]
    if missing:
        raise ValueError(f"{where}: {name} lacks {', '.join(map(repr, missing))} (got {dict(param)!r})")
    out = {k: param[k] for k in _CONV_KEYS}
    for k in _CONV_KEYS:
        v = out[k]
        least = 0 if k == "pad" else 1
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < least:
            raise ValueError(f"{where}: {name}[{k!r}] must be an integer >= {least}, got {v!r}")
        out[k] = int(v)
    return out


def _window_out(where, what, hw, size, stride, pad):
    """``(H, W)`` after a ``size x size`` window ``stride`` apart with ``pad`` (whole windows only)."""
    out = []
    for n in hw:
        if n + 2 * pad < size:
            raise ValueError(
                f"{where}: the input is too small for {what}: a {size}x{size} window does not fit "
                f"{hw[0]}x{hw[1]} (pad {pad})"
            )
        out.append((n + 2 * pad - size) // stride + 1)
    return tuple(out)


class _ConvNet(LayerNet):
    """What both nets share: setup, batched ``accuracy``, the book's pickle files."""

    def _setup(self, input_dim, hidden_size, output_size, backend, dtype, seed):
        where = type(self).__name__
        try:
            dims = tuple(input_dim)
        except TypeError:
            dims = ()
        if len(dims) != 3:
            raise ValueError(f"{where}: input_dim must be 3 sizes (C, H, W), got {input_dim!r}")
        self.input_dim = tuple(_size(where, "an input_dim size", d) for d in dims)
        self.hidden_size = _size(where, "hidden_size", hidden_size)
        self.output_size = _size(where, "output_size", output_size)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"{where}: dtype must be a floating-point type, got {self.dtype}")
        self.backend = get_backend(backend)
        missing = [n for n in ("Convolution", "Pooling", "Dropout") if not hasattr(self.backend, n)]
        if missing:
            raise TypeError(f"{where}: backend {self.backend_name!r} lacks {', '.join(missing)}")
        self._rng = np.random.default_rng(seed)
        self.params = {}
        self._new_layers()

    def _weight(self, key, scale, shape):
        self.params[key] = (scale * self._rng.standard_normal(shape)).astype(self.dtype)
        return self.params[key]

    def _add_conv(self, i, name, p, channels, hw, scale):
        """``Conv{name}`` with ``W{i}, b{i}`` and a ``Relu``; returns the output's ``(channels, (H, W))``."""
        fs = p["filter_size"]
        W = self._weight(f"W{i}", scale, (p["filter_num"], channels, fs, fs))
        b = self.params[f"b{i}"] = np.zeros(p["filter_num"], self.dtype)
        self.layers[f"Conv{name}"] = self.backend.Convolution(W, b, p["stride"], p["pad"])
        self.owner(f"Conv{name}", W=f"W{i}", b=f"b{i}")
        self.layers[f"Relu{name}"] = self.backend.Relu()
        where = type(self).__name__
        oh, ow = _window_out(where, f"Conv{name}", hw, fs, p["stride"], p["pad"])
        return p["filter_num"], (oh, ow)

    def _add_pool(self, name, hw):
        self.layers[f"Pool{name}"] = self.backend.Pooling(pool_h=2, pool_w=2, stride=2)
        return _window_out(type(self).__name__, f"Pool{name}", hw, 2, 2, 0)

    def _add_affine(self, i, name, scale, rows, cols):
        W = self._weight(f"W{i}", scale, (rows, cols))
        b = self.params[f"b{i}"] = np.zeros(cols, self.dtype)
        self.layers[f"Affine{name}"] = self.backend.Affine(W, b)
        self.owner(f"Affine{name}", W=f"W{i}", b=f"b{i}")

    def _blas_for_step(self):
        """NumPy's BLAS held at one thread for a step of a Numba net (rule 4 of
        :mod:`scratchprop.threads`: its long products run across our threads); else nothing."""
        if self.backend_name == "numba":
            return threads.one_thread_blas()
        return contextlib.nullcontext()

    def predict(self, x, train_flg=False):
        """Scores ``x (N, C, H, W) -> (N, C)``; ``train_flg`` goes to Dropout."""
        with self._blas_for_step():
            return super().predict(x, train_flg)

    def gradient(self, x, t):
        """Backprop gradient of ``loss(x, t, train_flg=True)``: a dict keyed like ``params``."""
        with self._blas_for_step():
            return super().gradient(x, t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of samples whose arg-max score (``train_flg=False``) is the label, ``batch_size`` at a time.

        ``t`` is labels ``(N,)`` / ``(N, 1)`` or one-hot rows ``(N, C)``. Every
        sample counts, the last partial batch too.
        """
        where = f"{type(self).__name__}.accuracy"
        batch_size = _size(where, "batch_size", batch_size)
        x = check.as_numeric(where, "x", x)
        if x.ndim != 4:
            raise ValueError(f"{where}: x must be 4-D (N, C, H, W), got {check._desc(x)}")
        N = x.shape[0]
        if N == 0:
            raise ValueError(f"{where}: the batch is empty")
        labels, T = check.targets(where, t, N, self.output_size, self.dtype)
        if T is not None:
            labels = np.argmax(T, axis=1)
        correct = 0
        for start in range(0, N, batch_size):
            y = self.predict(x[start : start + batch_size], train_flg=False)
            correct += int(np.sum(np.argmax(y, axis=1) == labels[start : start + batch_size]))
        return correct / N

    def save_params(self, file_name="params.pkl"):
        """Pickle ``{key: array}`` to ``file_name``, as the book does; written atomically."""
        params = {key: val for key, val in self.params.items()}
        with atomic_write(file_name, "wb") as f:
            pickle.dump(params, f)

    def load_params(self, file_name="params.pkl"):
        """Load the book's pickle (``{key: array}``), or take a mapping, into this net's arrays in place.

        Every key of ``params`` must be there with its shape; nothing is
        changed otherwise. Unpickling runs code: load only files you trust.
        """
        if isinstance(file_name, Mapping):
            return super().load_params(file_name)
        with open(file_name, "rb") as f:
            params = pickle.load(f)
        if not isinstance(params, Mapping):
            raise TypeError(
                f"{type(self).__name__}.load_params: {file_name} holds a {type(params).__name__}, "
                f"not a dict of arrays keyed {', '.join(self.params)}"
            )
        return super().load_params(params)


class SimpleConvNet(_ConvNet):
    """``Conv1 -> Relu1 -> Pool1 (2x2, stride 2) -> Affine1 -> Relu2 -> Affine2 -> SoftmaxWithLoss``.

    ``conv_param`` has ``filter_num``, ``filter_size``, ``pad`` and ``stride``;
    ``W1 (filter_num, C, size, size)``, ``W2 (pooled size, hidden_size)``,
    ``W3 (hidden_size, output_size)``. ``weight_init_std`` is a number (the
    std of every weight) or, as the book's docstring offers, ``"relu"`` /
    ``"he"`` or ``"sigmoid"`` / ``"xavier"`` (scaled by each layer's fan-in).
    """

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},  # noqa: B006 - never mutated
        hidden_size=100,
        output_size=10,
        weight_init_std=0.01,
        *,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        self._setup(input_dim, hidden_size, output_size, backend, dtype, seed)
        where = type(self).__name__
        self.conv_param = _conv_param(where, "conv_param", conv_param)
        self.weight_init_std = weight_init_std
        C, H, W = self.input_dim
        fs = self.conv_param["filter_size"]
        channels, hw = self._add_conv(
            1, "1", self.conv_param, C, (H, W), _init_scale(where, weight_init_std, C * fs * fs)
        )
        hw = self._add_pool("1", hw)
        pooled = channels * hw[0] * hw[1]
        scale = _init_scale(where, weight_init_std, pooled)
        self._add_affine(2, "1", scale, pooled, self.hidden_size)
        self.layers["Relu2"] = self.backend.Relu()
        scale = _init_scale(where, weight_init_std, self.hidden_size)
        self._add_affine(3, "2", scale, self.hidden_size, self.output_size)
        self.last_layer = self.backend.SoftmaxWithLoss()

    def config(self):
        """The constructor's arguments (without ``backend``, ``dtype`` and ``seed``), JSON-ready."""
        return {
            "input_dim": list(self.input_dim),
            "conv_param": dict(self.conv_param),
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            "weight_init_std": self.weight_init_std,
        }


class DeepConvNet(_ConvNet):
    """``[Conv -> Relu -> Conv -> Relu -> Pool] x 3 -> Affine -> Relu -> Dropout -> Affine -> Dropout -> SoftmaxWithLoss``.

    He initialisation (``sqrt(2 / fan_in)``) for every weight; both Dropouts
    have ratio 0.5 (the last one acts on the scores, as in the book).
    ``W7`` is ``(64*4*4, hidden_size)`` for the defaults.
    """

    def __init__(
        self,
        input_dim=(1, 28, 28),
        conv_param_1={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006 - never mutated
        conv_param_2={"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_3={"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_4={"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},  # noqa: B006
        conv_param_5={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        conv_param_6={"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},  # noqa: B006
        hidden_size=50,
        output_size=10,
        *,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        self._setup(input_dim, hidden_size, output_size, backend, dtype, seed)
        where = type(self).__name__
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        self.conv_params = [_conv_param(where, f"conv_param_{i}", p) for i, p in enumerate(given, 1)]
        channels, hw = self.input_dim[0], self.input_dim[1:]
        for i, p in enumerate(self.conv_params, 1):
            fan_in = channels * p["filter_size"] ** 2
            channels, hw = self._add_conv(i, str(i), p, channels, hw, np.sqrt(2.0 / fan_in))
            if i % 2 == 0:
                hw = self._add_pool(str(i // 2), hw)
        flat = channels * hw[0] * hw[1]
        self._add_affine(7, "1", np.sqrt(2.0 / flat), flat, self.hidden_size)
        self.layers["Relu7"] = self.backend.Relu()
        self.layers["Dropout1"] = self.backend.Dropout(0.5)
        self._add_affine(8, "2", np.sqrt(2.0 / self.hidden_size), self.hidden_size, self.output_size)
        self.layers["Dropout2"] = self.backend.Dropout(0.5)
        self.last_layer = self.backend.SoftmaxWithLoss()

    def loss(self, x, t, train_flg=True):
        """Mean softmax cross-entropy of ``predict(x, train_flg)``; trains (Dropout on) by default, as the book."""
        return super().loss(x, t, train_flg)

    def config(self):
        """The constructor's arguments (without ``backend``, ``dtype`` and ``seed``), JSON-ready."""
        cfg = {"input_dim": list(self.input_dim)}
        cfg.update({f"conv_param_{i}": dict(p) for i, p in enumerate(self.conv_params, 1)})
        cfg.update(hidden_size=self.hidden_size, output_size=self.output_size)
        return cfg
