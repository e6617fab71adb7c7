"""The notebook's training loop (mini-batch SGD on a TwoLayerNet), usable from Python.

Epochs follow the book: ``iter_per_epoch = max(train_size / batch_size, 1)``.
Because that is rarely a whole number, epoch ``k`` ends after
``ceil(k * iter_per_epoch)`` iterations in total, so epochs average exactly
``iter_per_epoch`` iterations. At the end of each epoch the net is evaluated
on the whole training and test sets.

Mini-batches are drawn as in the book, ``rng.choice(train_size, batch_size)``
with ``rng = np.random.default_rng(seed)``. The generator's state is part of
:class:`TrainState` (and of checkpoints), so a run resumed from a checkpoint
draws exactly the batches an uninterrupted run would have drawn.

Example::

    from scratchprop import TwoLayerNet
    from scratchprop.data import load_mnist
    from scratchprop.train import train

    (x, t), (xt, tt) = load_mnist()
    net = TwoLayerNet(784, 100, 10, backend="numpy", seed=0)
    result = train(net, (x, t), (xt, tt), epochs=3, seed=0)
    print(result.state.history[-1])
"""

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TrainState",
    "TrainResult",
    "train",
    "evaluate",
    "iters_per_epoch",
    "epoch_end",
    "write_metrics",
    "new_seed",
    "as_net_dtype",
    "METRIC_FIELDS",
]

#: Columns of a history row / metrics file.
METRIC_FIELDS = ("epoch", "iteration", "loss", "train_acc", "test_acc", "seconds")


def new_seed():
    """A fresh random seed (a 32-bit int, short enough to print and reuse)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def iters_per_epoch(train_size, batch_size):
    """The book's ``max(train_size / batch_size, 1)`` (a float)."""
    return max(train_size / batch_size, 1)


def epoch_end(k, ipe):
    """Total iterations done when epoch ``k`` (1-based) ends: ``ceil(k * ipe)``."""
    return int(math.ceil(k * ipe - 1e-9))


@dataclass
class TrainState:
    """Everything needed to continue a run: counters, histories, the batch RNG's state.

    ``history`` holds one dict per evaluation with :data:`METRIC_FIELDS` plus
    ``partial`` (True for a row written when ``iters`` ran out mid-epoch);
    ``loss`` the loss of every iteration; ``seconds`` the cumulative wall time.
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

    @property
    def iters_per_epoch(self):
        return iters_per_epoch(self.train_size, self.batch_size)

    def to_meta(self):
        """The JSON-able part of the state, for checkpoints."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "train_size": self.train_size,
            "iteration": self.iteration,
            "epoch": self.epoch,
            "history": self.history,
            "rng_state": self.rng_state,
            "seconds": self.seconds,
        }

    @classmethod
    def from_meta(cls, meta, loss=()):
        """Rebuild a state from checkpoint metadata (see :meth:`to_meta`) and the loss curve."""
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
        return cls(loss=loss, **{k: meta[k] for k in keys})


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

    @property
    def other_seconds(self):
        """Wall time outside ``train_step``, evaluation and data preparation: batch gathering,
        bookkeeping, checkpoints, progress output (the first step not counted either)."""
        return max(self.seconds - self.step_seconds - self.eval_seconds - self.prepare_seconds, 0.0)

    def split(self):
        """One line: where the wall time after the first step went."""
        wall = self.seconds - self.first_step_seconds - self.prepare_seconds
        if wall <= 0:
            return "no time measured"
        parts = (
            ("train_step", self.step_seconds - self.first_step_seconds),
            ("evaluation", self.eval_seconds),
            ("other", self.other_seconds),
        )
        return ", ".join(f"{name} {sec / wall:.0%}" for name, sec in parts)

    @property
    def samples(self):
        return self.iterations * self.state.batch_size

    @property
    def samples_per_second(self):
        """Training throughput: samples per second of ``train_step``, not counting the first
        step of the call (it may include JIT compilation) unless it was the only one."""
        steps, seconds = self.iterations, self.step_seconds
        if steps > 1:
            steps, seconds = steps - 1, seconds - self.first_step_seconds
        return steps * self.state.batch_size / seconds if seconds > 0 else float("nan")


def as_net_dtype(net, x, chunk=10000):
    """``x`` in the net's dtype: itself, or one converted copy made chunk by chunk."""
    x = np.asarray(x)
    dt = np.dtype(net.dtype)
    if x.dtype == dt:
        return x
    out = np.empty(x.shape, dt)
    for start in range(0, len(x), chunk):
        out[start : start + chunk] = x[start : start + chunk]
    return out


def evaluate(net, x, t, chunk=10000):
    """``(mean loss, accuracy, n_correct)`` of ``net`` on the whole set ``x, t``, in chunks.

    ``t`` holds labels ``(N,)`` or one-hot rows ``(N, C)``. ``x`` is cast to
    the net's dtype chunk by chunk, so a float32 dataset never needs a full
    float64 copy (:func:`train` converts its data sets once, up front).
    """
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: the data set is empty")
    total_loss = 0.0
    correct = 0
    for start in range(0, n, chunk):
        xc = np.asarray(x[start : start + chunk], dtype=net.dtype)
        tc = np.asarray(t[start : start + chunk])
        scores = net.predict(xc)
        labels = np.argmax(tc, axis=1) if tc.ndim == 2 else tc
        correct += int(np.sum(np.argmax(scores, axis=1) == labels))
        total_loss += float(net.lastLayer.forward(scores, tc)) * len(xc)
    return total_loss / n, correct / n, correct


def train(
    net,
    train_data,
    test_data,
    *,
    epochs=None,
    iters=None,
    batch_size=100,
    lr=0.1,
    seed=None,
    state=None,
    on_step=None,
    on_epoch=None,
):
    """Run mini-batch SGD on ``net`` for ``epochs`` more epochs or ``iters`` more iterations.

    Parameters
    ----------
    net : TwoLayerNet
    train_data, test_data : (x, t) pairs
        Images ``(N, D)`` and labels ``(N,)`` (or one-hot ``(N, C)``).
    epochs, iters : int
        Exactly one: how many more epochs (to the end of epoch
        ``state.epoch + epochs``) or how many more iterations to run. A run
        that ends mid-epoch adds a ``partial`` history row.
    batch_size, lr : int, float
        The book's ``batch_size`` and ``learning_rate``.
    seed : int or None
        Seeds the batch RNG of a new run (None: a fresh random seed, recorded
        in ``state.seed``). Ignored when ``state`` is given.
    state : TrainState, optional
        Continue this state (e.g. from a checkpoint) instead of starting anew.
        It is updated in place.
    on_step : callable, optional
        ``on_step(done, total, loss)`` after each iteration (e.g. a progress bar).
    on_epoch : callable, optional
        ``on_epoch(row, state)`` after each evaluation, once ``state`` is
        consistent (e.g. to save a checkpoint).

    Returns
    -------
    TrainResult
    """
    if (epochs is None) == (iters is None):
        raise ValueError("train: give exactly one of epochs and iters")
    count = epochs if epochs is not None else iters
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(
            f"train: {'epochs' if epochs is not None else 'iters'} must be a positive integer, got {count!r}"
        )
    x_train, t_train = train_data
    x_test, t_test = test_data
    train_size = len(x_train)
    if state is None:
        if seed is None:
            seed = new_seed()
        state = TrainState(seed=seed, batch_size=batch_size, train_size=train_size)
    elif (state.batch_size, state.train_size) != (batch_size, train_size):
        raise ValueError(
            f"train: the state was made with batch size {state.batch_size} on "
            f"{state.train_size} samples; got batch size {batch_size} on {train_size}"
        )
    if train_size < 1 or batch_size < 1:
        raise ValueError("train: need at least one training sample and a positive batch size")
    rng = np.random.default_rng(state.seed)
    if state.rng_state is not None:
        rng.bit_generator.state = state.rng_state
    ipe = state.iters_per_epoch
    start_iter = state.iteration
    target = epoch_end(state.epoch + epochs, ipe) if epochs is not None else start_iter + iters
    total = target - start_iter
    started = time.perf_counter()
    seconds0 = state.seconds
    step_seconds = first_step = eval_seconds = 0.0
    # Evaluation reads the sets in the net's dtype, converted once per run, never per epoch.
    # Batches are gathered from the original when the net's first product promotes them to its
    # dtype anyway (float32 images, float64 weights: half the bytes to gather, the same bits).
    x_batches = np.asarray(x_train)
    if np.result_type(x_batches.dtype, net.dtype) != net.dtype:
        x_batches = as_net_dtype(net, x_batches)
    x_train, x_test = as_net_dtype(net, x_train), as_net_dtype(net, x_test)
    prepare_seconds = time.perf_counter() - started

    def record(partial):
        nonlocal eval_seconds
        first = epoch_end(state.epoch if partial else state.epoch - 1, ipe)
        losses = state.loss[first : state.iteration] or state.loss[-1:]
        t0 = time.perf_counter()
        _, train_acc, _ = evaluate(net, x_train, t_train)
        _, test_acc, _ = evaluate(net, x_test, t_test)
        eval_seconds += time.perf_counter() - t0
        state.rng_state = rng.bit_generator.state
        state.seconds = seconds0 + time.perf_counter() - started
        row = {
            "epoch": state.epoch + 1 if partial else state.epoch,
            "iteration": state.iteration,
            "loss": float(np.mean(losses)),
            "train_acc": train_acc,
            "test_acc": test_acc,
            "seconds": state.seconds,
            "partial": partial,
        }
        state.history.append(row)
        if on_epoch is not None:
            on_epoch(row, state)

    next_end = epoch_end(state.epoch + 1, ipe)
    while state.iteration < target:
        batch_mask = rng.choice(train_size, batch_size)
        x_batch = x_batches[batch_mask]
        t_batch = t_train[batch_mask]
        t0 = time.perf_counter()
        loss = float(net.train_step(x_batch, t_batch, lr))
        took = time.perf_counter() - t0
        step_seconds += took
        if state.iteration == start_iter:
            first_step = took
        state.loss.append(loss)
        state.iteration += 1
        if on_step is not None:
            on_step(state.iteration - start_iter, total, loss)
        if state.iteration == next_end:
            state.epoch += 1
            next_end = epoch_end(state.epoch + 1, ipe)
            record(partial=False)
    if state.iteration != epoch_end(state.epoch, ipe):
        record(partial=True)
    state.rng_state = rng.bit_generator.state
    state.seconds = seconds0 + time.perf_counter() - started
    return TrainResult(
        state=state,
        iterations=total,
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
        first_step_seconds=first_step,
        eval_seconds=eval_seconds,
        prepare_seconds=prepare_seconds,
    )


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
