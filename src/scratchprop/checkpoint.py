"""Checkpoints: a net's parameters, its BatchNorm statistics, the optimizer's state and training
metadata in one ``.npz``.

Layout of the archive (readable with ``np.load(path)``, no pickles), format version 2::

    W1 b1 W2 b2 ...             the parameters by their keys (gamma1, beta1, ... too),
                                float32 or float64, one dtype
    running_mean/BatchNorm1     a BatchNormalization layer's running statistics, (D,)
    running_var/BatchNorm1      (absent before its first training forward)
    opt/m/W1, opt/v/W1, ...     the optimizer's state arrays (``state_dict()``'s, under ``opt/``)
    loss     (n_iterations,) float64   the per-iteration training loss
    meta     0-d unicode array         JSON: format, format_version, net (the kind:
                                       TwoLayerNet, MultiLayerNet, MultiLayerNetExtend,
                                       SimpleConvNet, DeepConvNet), config (a chapter-6
                                       to 8 net's ``config()``), sizes (the layer widths; a
                                       convnet's: its input's C*H*W, hidden_size and
                                       output_size), dtype, backend, optimizer (its
                                       name) and optimizer_state (its numbers: lr,
                                       beta1, iter, ...), and the training metadata: epoch,
                                       iteration, accuracies, lr, batch size, seed, dataset,
                                       history, the batch RNG state, np_random_state

Version 1 (TwoLayerNet only: ``W1 b1 W2 b2 loss meta``, no ``net`` or
optimizer) is still read, as a TwoLayerNet trained with SGD.

Files are written atomically (a temporary file in the same directory, then
:func:`os.replace`), so a crash never leaves a partial file under the final
name. :func:`load_checkpoint` validates everything (the checks are in
``_checkpoint_checks``) and raises :class:`CheckpointError` naming the file.
"""

import inspect
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "net_kind", "NET_KINDS"]

FORMAT = "scratchprop-checkpoint"
FORMAT_VERSION = 2
PARAM_KEYS = ("W1", "b1", "W2", "b2")
NET_KINDS = ("TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet", "DeepConvNet")
#: the kinds whose input is images ``(N, C, H, W)`` (their config has ``input_dim``), not rows ``(N, D)``
CONV_KINDS = ("SimpleConvNet", "DeepConvNet")
RUNNING = ("running_mean", "running_var")
OPT_PREFIX = "opt/"
_DTYPES = ("float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, not a checkpoint or does not fit."""


def net_kind(net):
    """One of :data:`NET_KINDS`: ``"TwoLayerNet"``, ``"MultiLayerNet"``, ... (subclasses count)."""
    from .convnet import DeepConvNet, SimpleConvNet
    from .multilayer import MultiLayerNet, MultiLayerNetExtend
    from .net import TwoLayerNet

    for cls in (MultiLayerNetExtend, MultiLayerNet, TwoLayerNet, SimpleConvNet, DeepConvNet):
        if isinstance(net, cls):
            return cls.__name__
    raise TypeError(f"cannot checkpoint a {type(net).__name__}; expected one of {', '.join(NET_KINDS)}")


def _net_class(kind):
    from . import convnet, multilayer

    return getattr(convnet if kind in CONV_KINDS else multilayer, kind)


def _full_config(kind, config):
    """A convnet's ``config`` with the constructor's defaults for what it leaves out."""
    params = inspect.signature(_net_class(kind)).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return {**defaults, **config}


def config_sizes(kind, config):
    """The ``sizes`` a chapter-6 to 8 net's ``config`` gives: the layer widths ``[D, H1, ..., C]``; a
    convnet's ``[C*H*W of its input, hidden_size, output_size]``."""
    if kind in CONV_KINDS:
        cfg = _full_config(kind, config)
        return [int(np.prod(cfg["input_dim"])), cfg["hidden_size"], cfg["output_size"]]
    return [config["input_size"], *config["hidden_size_list"], config["output_size"]]


def _batchnorm_layers(net):
    """``{layer name: layer}`` of the layers with running statistics."""
    layers = getattr(net, "layers", None) or {}
    return {name: layer for name, layer in layers.items() if hasattr(layer, "running_mean")}


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: parameters, running statistics, optimizer state, metadata, loss."""

    path: Path
    params: dict
    meta: dict
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: ``{BatchNorm layer name: (running_mean, running_var)}`` of the layers that have them
    running: dict = field(default_factory=dict)
    #: the optimizer's ``state_dict()`` (numbers from the metadata, arrays from ``opt/...``), or None
    optimizer_state: dict = None

    @property
    def kind(self):
        """One of :data:`NET_KINDS`: ``"TwoLayerNet"``, ``"MultiLayerNet"``, ..."""
        return self.meta.get("net", "TwoLayerNet")

    @property
    def config(self):
        """The constructor arguments: a chapter-6 to 8 net's ``config()``; a TwoLayerNet's three sizes."""
        if self.kind == "TwoLayerNet":
            D, H, C = self.sizes
            return {"input_size": D, "hidden_size": H, "output_size": C}
        return dict(self.meta["config"])

    @property
    def optimizer(self):
        """The optimizer's name (``"sgd"`` for a version-1 file)."""
        return self.meta.get("optimizer") or "sgd"

    @property
    def sizes(self):
        """The layer widths: ``(D, H, C)`` for a TwoLayerNet, ``(D, H1, ..., C)`` for the chapter-6
        nets, ``(C*H*W, hidden_size, output_size)`` for a convnet."""
        if self.kind == "TwoLayerNet":
            D, H = self.params["W1"].shape
            return D, H, self.params["W2"].shape[1]
        return tuple(config_sizes(self.kind, self.meta["config"]))

    @property
    def input_shape(self):
        """The shape of one input sample: ``(D,)``, or ``(C, H, W)`` for a convnet."""
        if self.kind in CONV_KINDS:
            return tuple(_full_config(self.kind, self.meta["config"])["input_dim"])
        return (self.sizes[0],)

    @property
    def dtype(self):
        return self.params["W1"].dtype

    def make_net(self, backend="numpy"):
        """The net these parameters (and running statistics) belong to, on ``backend``."""
        if self.kind == "TwoLayerNet":
            from .net import TwoLayerNet

            D, H, C = self.sizes
            net = TwoLayerNet(D, H, C, backend=backend, dtype=self.dtype, seed=0)
        else:
            net = _net_class(self.kind)(**self.config, backend=backend, dtype=self.dtype, seed=0)
        net.load_params(self.params)
        for name, (mean, var) in self.running.items():
            layer = net.layers[name]
            layer.running_mean, layer.running_var = np.array(mean), np.array(var)
        return net


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def save_checkpoint(path, net, meta=None, loss=(), *, optimizer=None, optimizer_state=None):
    """Write ``net``'s parameters and BatchNorm statistics, ``meta`` (a JSON-able dict), the loss
    curve and the optimizer's state to ``path``.

    ``optimizer``: an optimizer object (its name and ``state_dict()`` are saved)
    or a name, with ``optimizer_state`` its ``state_dict()``; without it the
    name is ``meta["optimizer"]`` (as :meth:`scratchprop.train.TrainState.to_meta`
    gives it). ``path`` is used as given (no ``.npz`` is appended). The net's
    kind, config, sizes, dtype, backend and the scratchprop version are filled
    in from ``net``. Returns the path.
    """
    from . import __version__
    from .train import optimizer_name

    path = Path(path)
    kind = net_kind(net)
    params = {k: np.ascontiguousarray(v) for k, v in net.params.items()}
    if kind == "TwoLayerNet":
        params = {k: params[k] for k in PARAM_KEYS}
        D, H = params["W1"].shape
        sizes, config = [D, H, params["W2"].shape[1]], None
    else:
        config = net.config()
        sizes = config_sizes(kind, config)
    arrays = dict(params)
    for name, layer in _batchnorm_layers(net).items():
        if layer.running_mean is not None:
            for stat in RUNNING:
                arrays[f"{stat}/{name}"] = np.ascontiguousarray(getattr(layer, stat))
    name = (meta or {}).get("optimizer")
    if optimizer is not None:
        if isinstance(optimizer, str):
            name = optimizer
        else:
            name = optimizer_name(optimizer)
            if optimizer_state is None and hasattr(optimizer, "state_dict"):
                optimizer_state = optimizer.state_dict()
    if optimizer_state is not None and not name:
        raise ValueError("save_checkpoint: optimizer_state given without the optimizer's name")
    numbers = {}
    for key, value in (optimizer_state or {}).items():
        if isinstance(value, np.ndarray):
            arrays[OPT_PREFIX + str(key)] = np.ascontiguousarray(value)
        else:
            numbers[str(key)] = value
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scratchprop_version": __version__,
        "net": kind,
        "sizes": sizes,
        "dtype": str(params["W1"].dtype),
        "backend": getattr(net, "backend_name", "numpy"),
    }
    full.update(meta or {})
    full.update(net=kind, sizes=sizes, format_version=FORMAT_VERSION)
    if config is not None:
        full["config"] = config
    if name:
        full["optimizer"] = name
    if optimizer_state is not None:
        full["optimizer_state"] = numbers
    text = json.dumps(_jsonable(full), allow_nan=True)
    try:
        with atomic_write(path) as fh:
            np.savez(fh, meta=np.array(text), loss=np.asarray(loss, dtype=np.float64), **arrays)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc.strerror or exc})") from None
    return path


def load_checkpoint(path):
    """Read and validate a checkpoint written by :func:`save_checkpoint` (format version 1 or 2).

    Raises
    ------
    CheckpointError
        Naming the file, if it is missing, not an ``.npz``, truncated or
        corrupt, lacks a key, has an unknown one (version 2), or holds
        inconsistent shapes, dtypes, running statistics or optimizer state.
    """
    from ._checkpoint_checks import _check_layer_net, _check_optimizer, _check_running, _check_two_layer

    path = Path(path)

    def bad(why):
        return CheckpointError(f"{path}: {why}")

    if not path.is_file():
        raise bad("no such checkpoint file" if not path.exists() else "not a regular file")
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PK\x03\x04":
                raise bad("not a checkpoint (.npz) file")
        with np.load(path, allow_pickle=False) as npz:
            files = list(npz.files)
            if "meta" not in files:
                missing = [k for k in (*PARAM_KEYS, "meta") if k not in files]
                raise bad(
                    f"not a scratchprop checkpoint: missing {', '.join(missing)} "
                    f"(has {', '.join(files) or 'nothing'})"
                )
            meta_text = npz["meta"]
            try:
                meta = json.loads(str(meta_text[()]))
            except (ValueError, TypeError, IndexError) as exc:
                raise bad(f"corrupt metadata ({exc})") from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise bad("not a scratchprop checkpoint (metadata lacks its format tag)")
            version = meta.get("format_version", 1)
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise bad(f"format_version must be an integer >= 1, got {version!r}")
            if version > FORMAT_VERSION:
                raise bad(
                    f"written in checkpoint format version {version} by a newer scratchprop; "
                    f"this one reads versions 1 to {FORMAT_VERSION}"
                )
            if version == 1:  # only the four parameters: other members are not read
                missing = [k for k in PARAM_KEYS if k not in files]
                if missing:
                    raise bad(
                        f"not a scratchprop checkpoint: missing {', '.join(missing)} "
                        f"(has {', '.join(files) or 'nothing'})"
                    )
                files = [*PARAM_KEYS, *(["loss"] if "loss" in files else [])]
            arrays = {k: npz[k] for k in files if k != "meta"}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError) as exc:
        # truncated archives, CRC errors, bad .npy headers, pickled members, ...
        raise bad(f"corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from None
    loss = arrays.pop("loss", np.zeros(0))
    if loss.ndim != 1:
        raise bad(f"loss history must be 1-D, got shape {loss.shape}")
    kind = meta.get("net", "TwoLayerNet")
    if version == 1 and "net" in meta and kind != "TwoLayerNet":
        raise bad(f"a version-1 checkpoint holds a TwoLayerNet, not a {kind!r}")
    if kind not in NET_KINDS:
        raise bad(f"unknown net {kind!r}; expected one of {', '.join(NET_KINDS)}")
    running = {k: arrays.pop(k) for k in [k for k in arrays if k.split("/")[0] in RUNNING]}
    opt_arrays = {
        k[len(OPT_PREFIX) :]: arrays.pop(k) for k in [k for k in arrays if k.startswith(OPT_PREFIX)]
    }
    if kind == "TwoLayerNet":
        params = _check_two_layer(bad, arrays, meta)
        net = None
    else:
        params, net = _check_layer_net(bad, kind, arrays, meta)
    running = _check_running(bad, running, net, params["W1"].dtype)
    optimizer_state = _check_optimizer(bad, meta, opt_arrays, params)
    return Checkpoint(
        path=path,
        params=params,
        meta=meta,
        loss=loss.astype(np.float64),
        running=running,
        optimizer_state=optimizer_state,
    )
