"""The book's chapter-6 nets: ``MultiLayerNet`` and ``MultiLayerNetExtend``, on any backend.

Same constructor signatures, parameter keys (``W1``, ``b1``, ``gamma1``,
``beta1``, ...) and layer names (``Affine1``, ``BatchNorm1``,
``Activation_function1``, ``Dropout1``, ``last_layer``) as the book; the
walking of the layers is :class:`scratchprop.layernet.LayerNet`'s. Added,
as for :class:`scratchprop.TwoLayerNet`: ``backend=``, ``dtype=`` and
``seed=`` (weights from ``np.random.default_rng(seed)``; the book draws them
from the global ``np.random``).
"""

from numbers import Real

import numpy as np

from .backends import get_backend
from .layernet import LayerNet

__all__ = ["MultiLayerNet", "MultiLayerNetExtend"]

_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid"}


def _size(where, name, value):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _init_scale(where, weight_init_std, n_prev):
    """The book's ``__init_weight``: He for ReLU, Xavier for sigmoid, or a fixed std."""
    if isinstance(weight_init_std, str):
        kind = weight_init_std.lower()
        if kind in ("relu", "he"):
            return np.sqrt(2.0 / n_prev)
        if kind in ("sigmoid", "xavier"):
            return np.sqrt(1.0 / n_prev)
        raise ValueError(
            f"{where}: weight_init_std must be 'relu'/'he', 'sigmoid'/'xavier' or a number, "
            f"got {weight_init_std!r}"
        )
    if not isinstance(weight_init_std, Real) or isinstance(weight_init_std, bool):
        raise TypeError(
            f"{where}: weight_init_std must be a string or a real number, got {weight_init_std!r}"
        )
    return float(weight_init_std)


class MultiLayerNet(LayerNet):
    """Fully connected net: ``(Affine -> activation) x len(hidden_size_list) -> Affine -> SoftmaxWithLoss``.

    ``activation`` is ``"relu"`` or ``"sigmoid"``; ``weight_init_std`` is
    ``"relu"``/``"he"`` (``sqrt(2 / n_prev)``), ``"sigmoid"``/``"xavier"``
    (``sqrt(1 / n_prev)``) or a number; ``weight_decay_lambda`` adds
    ``0.5 * lambda * sum(W ** 2)`` per weight matrix to the loss (and
    ``lambda * W`` to its gradient).
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
        *,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        self._setup(
            input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda,
            backend, dtype, seed,
        )  # fmt: skip
        self._build(use_batchnorm=False, use_dropout=False, dropout_ratio=0.5)

    def config(self):
        """The constructor's arguments (without ``backend`` and ``seed``), JSON-ready: a checkpoint
        rebuilds the net with ``type(net)(**config, backend=..., dtype=...)``."""
        cfg = {
            "input_size": self.input_size,
            "hidden_size_list": list(self.hidden_size_list),
            "output_size": self.output_size,
            "activation": self.activation,
            "weight_init_std": self.weight_init_std,
            "weight_decay_lambda": self.weight_decay_lambda,
        }
        if isinstance(self, MultiLayerNetExtend):
            cfg.update(
                use_dropout=self.use_dropout,
                dropout_ratio=self.dropout_ratio,
                use_batchnorm=self.use_batchnorm,
            )
        return cfg

    def _setup(self, input_size, hidden, output_size, activation, weight_init_std, lam, backend, dtype, seed):
        where = type(self).__name__
        self.input_size = _size(where, "input_size", input_size)
        self.output_size = _size(where, "output_size", output_size)
        try:
            hidden = list(hidden)
        except TypeError:
            raise TypeError(f"{where}: hidden_size_list must be a list of sizes, got {hidden!r}") from None
        self.hidden_size_list = [_size(where, "a hidden size", h) for h in hidden]
        self.hidden_layer_num = len(self.hidden_size_list)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{where}: activation must be 'relu' or 'sigmoid', got {activation!r}")
        self.activation = activation
        if not isinstance(lam, Real) or isinstance(lam, bool) or not (0 <= lam < float("inf")):
            raise ValueError(f"{where}: weight_decay_lambda must be a finite number >= 0, got {lam!r}")
        self.weight_decay_lambda = lam
        self.weight_init_std = weight_init_std
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"{where}: dtype must be a floating-point type, got {self.dtype}")
        self.backend = get_backend(backend)
        self._rng = np.random.default_rng(seed)

    def _build(self, use_batchnorm, use_dropout, dropout_ratio):
        where, B, dt, rng = type(self).__name__, self.backend, self.dtype, self._rng
        sizes = [self.input_size, *self.hidden_size_list, self.output_size]
        self.params = {}
        self._new_layers()
        n = self.hidden_layer_num + 1
        for i in range(1, n + 1):
            scale = _init_scale(where, self.weight_init_std, sizes[i - 1])
            W = (scale * rng.standard_normal((sizes[i - 1], sizes[i]))).astype(dt)
            self.params[f"W{i}"], self.params[f"b{i}"] = W, np.zeros(sizes[i], dt)
            self.layers[f"Affine{i}"] = B.Affine(W, self.params[f"b{i}"])
            self.owner(f"Affine{i}", W=f"W{i}", b=f"b{i}")
            if i == n:
                break
            if use_batchnorm:
                self.params[f"gamma{i}"] = np.ones(sizes[i], dt)
                self.params[f"beta{i}"] = np.zeros(sizes[i], dt)
                self.layers[f"BatchNorm{i}"] = B.BatchNormalization(
                    self.params[f"gamma{i}"], self.params[f"beta{i}"]
                )
                self.owner(f"BatchNorm{i}", gamma=f"gamma{i}", beta=f"beta{i}")
            self.layers[f"Activation_function{i}"] = getattr(B, _ACTIVATIONS[self.activation])()
            if use_dropout:
                self.layers[f"Dropout{i}"] = B.Dropout(dropout_ratio)
        self.last_layer = B.SoftmaxWithLoss()


class MultiLayerNetExtend(MultiLayerNet):
    """:class:`MultiLayerNet` with optional Dropout and BatchNormalization after each hidden Affine.

    Per hidden layer ``i``: ``Affine{i}``, ``BatchNorm{i}`` (``use_batchnorm``;
    ``gamma{i}`` ones, ``beta{i}`` zeros), ``Activation_function{i}``,
    ``Dropout{i}`` (``use_dropout``). The book spells the ratio
    ``dropout_ration``; ``dropout_ratio`` is accepted too (not both).
    """

    def __init__(
        self,
        input_size,
        hidden_size_list,
        output_size,
        activation="relu",
        weight_init_std="relu",
        weight_decay_lambda=0,
        use_dropout=False,
        dropout_ration=None,
        use_batchnorm=False,
        *,
        dropout_ratio=None,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        if dropout_ration is not None and dropout_ratio is not None:
            raise TypeError(
                "MultiLayerNetExtend: give dropout_ration (the book's spelling) or dropout_ratio, not both"
            )
        ratio = dropout_ratio if dropout_ration is None else dropout_ration
        ratio = 0.5 if ratio is None else ratio
        self._setup(
            input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda,
            backend, dtype, seed,
        )  # fmt: skip
        self.use_dropout, self.use_batchnorm = bool(use_dropout), bool(use_batchnorm)
        self.dropout_ratio = ratio
        self._build(use_batchnorm=self.use_batchnorm, use_dropout=self.use_dropout, dropout_ratio=ratio)
