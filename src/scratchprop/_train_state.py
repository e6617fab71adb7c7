"""The state of a :func:`scratchprop.train.train` run (:class:`TrainState`), its result
(:class:`TrainResult`), the book's epoch arithmetic and the metrics file writer."""

import csv
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from ._train_setup import _global_random_state

#: Columns of a history row / metrics file.
METRIC_FIELDS = ("epoch", "iteration", "loss", "train_acc", "test_acc", "seconds")


def iters_per_epoch(train_size, batch_size):
    """The book's ``max(train_size / batch_size, 1)`` (a float)."""
    return max(train_size / batch_size, 1)


def epoch_end(k, ipe):
    """Total iterations done when epoch ``k`` (1-based) ends: ``ceil(k * ipe)``."""
    return int(math.ceil(k * ipe - 1e-9))


@dataclass
class TrainState:
    """Everything needed to continue a run: counters, histories, the RNGs' and the optimizer's state.

    ``history`` holds one dict per evaluation with :data:`METRIC_FIELDS` plus
    ``partial`` (True for a row written when ``iters`` ran out mid-epoch);
    ``loss`` the loss of every iteration; ``seconds`` the cumulative wall time;
    ``optimizer`` the optimizer's name (see :func:`optimizer_name`) and
    ``optimizer_state`` its ``state_dict()`` (numbers and arrays, so not in
    :meth:`to_meta`; checkpoints store it apart); ``np_random_state`` the global
    ``np.random`` state as JSON (None unless the net has Dropout layers).
    """

    seed: int
    batch_size: int
    train_size: int
    iteration: int = 0
    epoch: int = 0
    history: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    rng_state: dict = None
    seconds: float = 0.0
    optimizer: str = None
    optimizer_state: dict = None
    np_random_state: list = None

    @property
    def iters_per_epoch(self):
        return iters_per_epoch(self.train_size, self.batch_size)

    def to_meta(self):
        """The JSON-able part of the state, for checkpoints (all but ``optimizer_state``)."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "train_size": self.train_size,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "history": self.history,
            "rng_state": self.rng_state,
            "seconds": self.seconds,
            "optimizer": self.optimizer,
            "np_random_state": self.np_random_state,
        }

    @classmethod
    def from_meta(cls, meta, loss=(), optimizer_state=None):
        """Rebuild a state from checkpoint metadata (see :meth:`to_meta`), the loss curve and the
        optimizer's ``state_dict()``. ``optimizer`` and ``np_random_state`` may be missing (version-1
        checkpoints: SGD, no Dropout)."""
        keys = ("seed", "batch_size", "train_size", "iteration", "epoch", "history", "rng_state", "seconds")
        missing = [k for k in keys if k not in meta]
        if missing:
            raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")

        def whole(name, low):
            v = meta[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"checkpoint metadata: {name} must be an integer >= {low}, got {v!r}")

        whole("seed", 0)
        whole("batch_size", 1)
        whole("train_size", 1)
        whole("iteration", 0)
        whole("epoch", 0)
        if not isinstance(meta["history"], list) or not all(isinstance(r, dict) for r in meta["history"]):
            raise ValueError("checkpoint metadata: history must be a list of rows")
        rng_state = meta["rng_state"]
        if rng_state is not None:
            try:  # exactly what train() will do with it, so a bad state fails here, on load
                np.random.default_rng(0).bit_generator.state = rng_state
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(
                    f"checkpoint metadata: rng_state is not a NumPy generator state "
                    f"({type(exc).__name__}: {exc})"
                ) from None
        seconds = meta["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"checkpoint metadata: seconds must be a number >= 0, got {seconds!r}")
        loss = [float(v) for v in loss]
        if len(loss) != meta["iteration"]:
            raise ValueError(f"loss history has {len(loss)} entries for {meta['iteration']} iterations")
        name = meta.get("optimizer")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"checkpoint metadata: optimizer must be a name, got {name!r}")
        if optimizer_state is not None and not isinstance(optimizer_state, dict):
            raise ValueError("checkpoint metadata: the optimizer state must be a dict")
        np_state = meta.get("np_random_state")
        if np_state is not None:
            try:  # what train() will do with it
                if not isinstance(np_state, list) or len(np_state) != 5:
                    raise ValueError("not a list of 5")
                np.random.RandomState().set_state(_global_random_state(np_state))
            except (TypeError, ValueError, KeyError, OverflowError) as exc:
                raise ValueError(
                    f"checkpoint metadata: np_random_state is not a np.random state "
                    f"({type(exc).__name__}: {exc})"
                ) from None
        return cls(
            loss=loss,
            optimizer=name,
            optimizer_state=None if optimizer_state is None else dict(optimizer_state),
            np_random_state=np_state,
            **{k: meta[k] for k in keys},
        )


@dataclass
class TrainResult:
    """What :func:`train` returns: the state, and this call's own counts and times."""

    state: TrainState
    iterations: int
    seconds: float
    step_seconds: float
    first_step_seconds: float = 0.0
    eval_seconds: float = 0.0  #: in :func:`evaluate` (the per-epoch forward passes)
    prepare_seconds: float = 0.0  #: converting the data sets once to the net's dtype
    optimizer: object = None  #: the optimizer the run used (its state is ``state.optimizer_state``)

    @property
    def other_seconds(self):
        """Wall time outside the steps, evaluation and data preparation: batch gathering,
        bookkeeping, checkpoints, progress output (the first step not counted either)."""
        return max(self.seconds - self.step_seconds - self.eval_seconds - self.prepare_seconds, 0.0)

    def split(self):
        """One line: where the wall time after the first step went."""
        wall = self.seconds - self.first_step_seconds - self.prepare_seconds
        if wall <= 0:
            return "no time measured"
        parts = (
            ("train_step", self.step_seconds - self.first_step_seconds),  # every step, any optimizer
            ("evaluation", self.eval_seconds),
            ("other", self.other_seconds),
        )
        return ", ".join(f"{name} {sec / wall:.0%}" for name, sec in parts)

    @property
    def samples(self):
        return self.iterations * self.state.batch_size

    @property
    def samples_per_second(self):
        """Training throughput: samples per second of the steps, not counting the first
        step of the call (it may include JIT compilation) unless it was the only one."""
        steps, seconds = self.iterations, self.step_seconds
        if steps > 1:
            steps, seconds = steps - 1, seconds - self.first_step_seconds
        return steps * self.state.batch_size / seconds if seconds > 0 else float("nan")


def _finite_or_none(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def write_metrics(path, history, run=None):
    """Write the history rows to ``path`` (``.json`` or ``.csv``), atomically.

    JSON: ``{"run": run, "epochs": [row, ...]}`` (non-finite numbers become
    null). CSV: a header of :data:`METRIC_FIELDS` plus ``partial``, one row per
    evaluation.
    """
    from ._atomic import atomic_write

    path = str(path)
    ext = path.lower().rsplit(".", 1)[-1] if "." in path else ""
    if ext == "json":
        doc = {
            "run": run or {},
            "epochs": [{k: _finite_or_none(v) for k, v in row.items()} for row in history],
        }
        text = json.dumps(doc, indent=1) + "\n"
    elif ext == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow((*METRIC_FIELDS, "partial"))
        for row in history:
            writer.writerow(
                [repr(row[k]) if isinstance(row[k], float) else row[k] for k in METRIC_FIELDS]
                + [int(bool(row.get("partial")))]
            )
        text = buf.getvalue()
    else:
        raise ValueError(f"{path}: metrics file must end in .json or .csv")
    with atomic_write(path, "w") as fh:
        fh.write(text)
