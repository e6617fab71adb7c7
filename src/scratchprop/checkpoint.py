"""Checkpoints: a TwoLayerNet's four parameters plus training metadata in one ``.npz``.

Layout of the archive (readable with ``np.load(path)``, no pickles)::

    W1 (D, H)  b1 (H,)  W2 (H, C)  b2 (C,)   the parameters, float32 or float64
    loss       (n_iterations,) float64         the per-iteration training loss
    meta       0-d unicode array               JSON: sizes, dtype, epoch, iteration,
                                               accuracies, backend, lr, batch size,
                                               seed, dataset, version, the per-epoch
                                               history and the batch RNG state

Files are written atomically (a temporary file in the same directory, then
:func:`os.replace`), so a crash never leaves a partial file under the final
name. :func:`load_checkpoint` validates everything and raises
:class:`CheckpointError` naming the file.
"""

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import atomic_write

__all__ = ["CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint"]

FORMAT = "scratchprop-checkpoint"
FORMAT_VERSION = 1
PARAM_KEYS = ("W1", "b1", "W2", "b2")
_DTYPES = ("float32", "float64")


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, truncated, not a checkpoint or does not fit."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: the parameters, the metadata and the loss curve."""

    path: Path
    params: dict
    meta: dict
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def sizes(self):
        """``(D, H, C)``."""
        D, H = self.params["W1"].shape
        return D, H, self.params["W2"].shape[1]

    @property
    def dtype(self):
        return self.params["W1"].dtype

    def make_net(self, backend="numpy"):
        """A :class:`scratchprop.TwoLayerNet` holding these parameters."""
        from .net import TwoLayerNet

        D, H, C = self.sizes
        net = TwoLayerNet(D, H, C, backend=backend, dtype=self.dtype, seed=0)
        net.load_params(self.params)
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


def save_checkpoint(path, net, meta=None, loss=()):
    """Write ``net``'s parameters, ``meta`` (a JSON-able dict) and the loss curve to ``path``.

    ``path`` is used as given (no ``.npz`` is appended). Sizes, dtype, backend
    and the scratchprop version are filled in from ``net``. Returns the path.
    """
    from . import __version__

    path = Path(path)
    params = {k: np.ascontiguousarray(net.params[k]) for k in PARAM_KEYS}
    D, H = params["W1"].shape
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scratchprop_version": __version__,
        "sizes": [D, H, params["W2"].shape[1]],
        "dtype": str(params["W1"].dtype),
        "backend": getattr(net, "backend_name", "numpy"),
    }
    full.update(meta or {})
    text = json.dumps(_jsonable(full), allow_nan=True)
    try:
        with atomic_write(path) as fh:
            np.savez(fh, meta=np.array(text), loss=np.asarray(loss, dtype=np.float64), **params)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc.strerror or exc})") from None
    return path


def load_checkpoint(path):
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        Naming the file, if it is missing, not an ``.npz``, truncated or
        corrupt, lacks a key, or holds inconsistent shapes or dtypes.
    """
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
            missing = [k for k in (*PARAM_KEYS, "meta") if k not in npz.files]
            if missing:
                raise bad(
                    f"not a scratchprop checkpoint: missing {', '.join(missing)} "
                    f"(has {', '.join(npz.files) or 'nothing'})"
                )
            arrays = {k: npz[k] for k in (*PARAM_KEYS, "meta")}
            loss = npz["loss"] if "loss" in npz.files else np.zeros(0)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, RuntimeError) as exc:
        # truncated archives, CRC errors, bad .npy headers, pickled members, ...
        raise bad(f"corrupt or truncated checkpoint ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (ValueError, TypeError, IndexError) as exc:
        raise bad(f"corrupt metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad("not a scratchprop checkpoint (metadata lacks its format tag)")
    params = arrays
    for k, a in params.items():
        if a.dtype.name not in _DTYPES:
            raise bad(f"{k} has dtype {a.dtype}; expected float32 or float64")
    if len({a.dtype for a in params.values()}) != 1:
        raise bad("parameters have mixed dtypes: " + ", ".join(f"{k} {a.dtype}" for k, a in params.items()))
    W1, b1, W2, b2 = (params[k] for k in PARAM_KEYS)
    if W1.ndim != 2 or W2.ndim != 2 or b1.ndim != 1 or b2.ndim != 1:
        raise bad(
            "parameters must be W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); got "
            + ", ".join(f"{k} {a.shape}" for k, a in params.items())
        )
    D, H = W1.shape
    C = W2.shape[1]
    if b1.shape != (H,) or W2.shape[0] != H or b2.shape != (C,) or min(D, H, C) < 1:
        raise bad(
            "inconsistent parameter shapes: "
            + ", ".join(f"{k} {a.shape}" for k, a in params.items())
            + "; expected W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)"
        )
    if list(meta.get("sizes", [D, H, C])) != [D, H, C]:
        raise bad(f"metadata sizes {meta.get('sizes')} disagree with the parameters ({D}, {H}, {C})")
    if loss.ndim != 1:
        raise bad(f"loss history must be 1-D, got shape {loss.shape}")
    return Checkpoint(path=path, params=params, meta=meta, loss=loss.astype(np.float64))
