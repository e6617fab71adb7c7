"""The notebook's training loop (mini-batches, any net, any of the book's optimizers), from Python.

Epochs follow the book: ``iter_per_epoch = max(train_size / batch_size, 1)``.
Because that is rarely a whole number, epoch ``k`` ends after
``ceil(k * iter_per_epoch)`` iterations in total, so epochs average exactly
``iter_per_epoch`` iterations. At the end of each epoch the net is evaluated
on the whole training and test sets.

Mini-batches are drawn as in the book, ``rng.choice(train_size, batch_size)``
with ``rng = np.random.default_rng(seed)``. The generator's state is part of
:class:`TrainState` (and of checkpoints), so a run resumed from a checkpoint
draws exactly the batches an uninterrupted run would have drawn.

Nets and optimizers: :class:`scratchprop.TwoLayerNet` and the chapter-6 nets
(:class:`scratchprop.MultiLayerNet`, :class:`scratchprop.MultiLayerNetExtend`)
with any optimizer of :mod:`scratchprop.optimizers`, taken from the net's
backend (``scratchprop.numba.Adam`` for a Numba net). The default is plain SGD
with ``lr``; for a TwoLayerNet with SGD a step is ``net.train_step(x, t, lr)``
(the fused kernel on the Numba backend), otherwise ``grads = net.gradient(x, t);
optimizer.update(net.params, grads)``. The loss recorded for an iteration is
the one of its gradient pass (before the update, with ``train_flg=True``:
``net.last_layer.loss + net.weight_decay()``), not the book's Trainer's second
forward pass after the update. Evaluation runs in test mode (``train_flg=False``).

Dropout draws its masks from the global ``np.random``: for a net with Dropout
layers a new run seeds it from the run seed, and its state is part of the
train state (``np_random_state``), so a resumed run draws the same masks. The
optimizer's name and ``state_dict()`` are part of it too.

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
    "make_optimizer",
    "optimizer_name",
    "seed_global_random",
    "METRIC_FIELDS",
]

#: Columns of a history row / metrics file.
METRIC_FIELDS = ("epoch", "iteration", "loss", "train_acc", "test_acc", "seconds")


def new_seed():
    """A fresh random seed (a 32-bit int, short enough to print and reuse)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def seed_global_random(seed):
    """Seed the global ``np.random`` (Dropout's masks) from a run seed (any integer >= 0)."""
    np.random.seed(np.random.SeedSequence(int(seed), spawn_key=(1,)).generate_state(4))


def _global_random_meta():
    """``np.random.get_state()`` as JSON: ``[name, key list, pos, has_gauss, cached_gaussian]``."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return [name, [int(k) for k in key], int(pos), int(has_gauss), float(gauss)]


def _global_random_state(meta):
    name, key, pos, has_gauss, gauss = meta
    return (name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss)


def _draws_from_global_random(net):
    """Whether ``net`` has layers that draw from ``np.random`` in training (Dropout)."""
    layers = getattr(net, "layers", None) or {}
    return any(
        "Dropout" in type(layer).__name__ or hasattr(layer, "dropout_ratio") for layer in layers.values()
    )


def optimizer_name(optimizer):
    """The name an optimizer (object or class) is saved under: ``"adam"`` for any ``Adam`` class of
    :data:`scratchprop.optimizers.OPTIMIZERS`' names, else the class name."""
    from .optimizers import OPTIMIZERS

    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    return cls.__name__.lower() if cls.__name__.lower() in OPTIMIZERS else cls.__name__


def _optimizer_class(net, name):
    from . import optimizers

    ref = optimizers.OPTIMIZERS.get(str(name).lower())
    if ref is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers.OPTIMIZERS)}")
    cls = getattr(getattr(net, "backend", None), ref.__name__, None)
    return cls if isinstance(cls, type) and callable(getattr(cls, "update", None)) else ref


def _hyper(lr, optimizer_param, where="train"):
    params = dict(optimizer_param or {})
    if lr is not None:
        if "lr" in params and params["lr"] != lr:
            raise ValueError(f"{where}: lr={lr!r} and optimizer_param lr={params['lr']!r} disagree")
        params["lr"] = lr
    return params


def make_optimizer(net, optimizer=None, optimizer_param=None, lr=None):
    """The optimizer :func:`train` uses for ``net``.

    ``optimizer``: None (SGD), a name of :data:`scratchprop.optimizers.OPTIMIZERS`
    (case-insensitive; the class comes from the net's backend, e.g.
    ``scratchprop.numba.Adam``, falling back to the reference), an optimizer
    class, or an object with ``update(params, grads)`` (returned as it is).
    ``optimizer_param`` and ``lr`` go to the constructor; without either, SGD
    gets the notebook's ``lr`` 0.1 and the others their own (the book's) defaults.
    """
    params = _hyper(lr, optimizer_param)
    if optimizer is not None and not isinstance(optimizer, (str, type)):
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(
                f"train: optimizer must be a name, an optimizer class or an object with an "
                f"update(params, grads) method; got {type(optimizer).__name__}"
            )
        if params:
            raise ValueError(
                f"train: {sorted(params)} given with an optimizer object; set them on the object"
            )
        return optimizer
    cls = optimizer if isinstance(optimizer, type) else _optimizer_class(net, optimizer or "sgd")
    if optimizer_name(cls) == "sgd" and "lr" not in params:
        params["lr"] = 0.1  # the notebook's learning_rate
    return cls(**params)


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
    float64 copy (:func:`train` converts its data sets once, up front). The
    net predicts in test mode (``train_flg=False``); the loss includes the net's
    weight decay, as ``net.loss(x, t)`` does.
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
    decay = net.weight_decay() if hasattr(net, "weight_decay") else 0
    return total_loss / n + float(decay), correct / n, correct


def train(
    net,
    train_data,
    test_data,
    *,
    epochs=None,
    iters=None,
    batch_size=100,
    lr=None,
    optimizer=None,
    optimizer_param=None,
    seed=None,
    state=None,
    eval_samples=None,
    on_step=None,
    on_epoch=None,
):
    """Train ``net`` on mini-batches for ``epochs`` more epochs or ``iters`` more iterations.

    Parameters
    ----------
    net : TwoLayerNet, MultiLayerNet or MultiLayerNetExtend
        Anything with ``params``, ``gradient``, ``predict`` and a loss layer
        (``last_layer`` / ``lastLayer``).
    train_data, test_data : (x, t) pairs
        Images ``(N, D)`` and labels ``(N,)`` (or one-hot ``(N, C)``).
    epochs, iters : int
        Exactly one: how many more epochs (to the end of epoch
        ``state.epoch + epochs``) or how many more iterations to run. A run
        that ends mid-epoch adds a ``partial`` history row.
    batch_size : int
        The book's ``batch_size``.
    lr : float, optional
        The learning rate (the optimizer's ``lr``). Default: 0.1 (the
        notebook's) for SGD, the optimizer's own default for the others, the
        state's when continuing one.
    optimizer : str, class or object, optional
        As the book's Trainer: a name (``"sgd"``, ``"momentum"``,
        ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``; the class
        comes from the net's backend), a class, or an optimizer object (used as
        it is, with its own state). Default: the state's optimizer, else SGD.
    optimizer_param : dict, optional
        Constructor arguments of the optimizer (e.g. ``{"lr": 0.01,
        "momentum": 0.9}``); when continuing a state they override its saved
        hyper-parameters.
    seed : int or None
        Seeds the batch RNG of a new run (None: a fresh random seed, recorded
        in ``state.seed``), and the global ``np.random`` for a net with
        Dropout. Ignored when ``state`` is given.
    state : TrainState, optional
        Continue this state (e.g. from a checkpoint) instead of starting anew:
        the batch RNG, the optimizer's state (unless an object is given) and
        the ``np.random`` state continue where they stopped. It is updated in place.
    eval_samples : int, optional
        Evaluate on the first ``eval_samples`` samples of each set only (the
        book's Trainer's ``evaluate_sample_num_per_epoch``); default all.
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
    if eval_samples is not None and (
        not isinstance(eval_samples, (int, np.integer)) or isinstance(eval_samples, bool) or eval_samples < 1
    ):
        raise ValueError(f"train: eval_samples must be a positive integer, got {eval_samples!r}")
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
    opt = _optimizer_for(net, state, optimizer, optimizer_param, lr)
    from .net import TwoLayerNet
    from .optimizers import SGD

    # TwoLayerNet + SGD: the net's own step (on Numba one fused kernel call), as before optimizers
    fused = isinstance(opt, SGD) and isinstance(net, TwoLayerNet)
    last_layer = getattr(net, "last_layer", None) or net.lastLayer
    decays = bool(getattr(net, "weight_decay_lambda", 0))
    rng = np.random.default_rng(state.seed)
    if state.rng_state is not None:
        rng.bit_generator.state = state.rng_state
    draws = _draws_from_global_random(net)
    if state.np_random_state is not None:
        np.random.set_state(_global_random_state(state.np_random_state))
    elif draws:
        seed_global_random(state.seed)
    ipe = state.iters_per_epoch
    start_iter = state.iteration
    target = epoch_end(state.epoch + epochs, ipe) if epochs is not None else start_iter + iters
    total = target - start_iter
    started = time.perf_counter()
    seconds0 = state.seconds
    step_seconds = first_step = eval_seconds = 0.0
    # Evaluation reads the sets in the net's dtype, converted once per run, never per epoch.
    # A TwoLayerNet's batches are gathered from the original when its first product promotes them
    # to its dtype anyway (float32 images, float64 weights: half the bytes to gather, the same bits).
    x_given = np.asarray(x_train)
    x_train, x_test = as_net_dtype(net, x_given), as_net_dtype(net, x_test)
    promotes = np.result_type(x_given.dtype, net.dtype) == net.dtype
    x_batches = x_given if isinstance(net, TwoLayerNet) and promotes else x_train
    n = eval_samples  # None: the whole sets
    prepare_seconds = time.perf_counter() - started

    def snapshot():
        state.rng_state = rng.bit_generator.state
        state.optimizer = optimizer_name(opt)
        state.optimizer_state = opt.state_dict() if hasattr(opt, "state_dict") else None
        if draws or state.np_random_state is not None:
            state.np_random_state = _global_random_meta()
        state.seconds = seconds0 + time.perf_counter() - started

    def record(partial):
        nonlocal eval_seconds
        first = epoch_end(state.epoch if partial else state.epoch - 1, ipe)
        losses = state.loss[first : state.iteration] or state.loss[-1:]
        t0 = time.perf_counter()
        _, train_acc, _ = evaluate(net, x_train[:n], t_train[:n])
        _, test_acc, _ = evaluate(net, x_test[:n], t_test[:n])
        eval_seconds += time.perf_counter() - t0
        snapshot()
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
    params = net.params
    while state.iteration < target:
        batch_mask = rng.choice(train_size, batch_size)
        x_batch = x_batches[batch_mask]
        t_batch = t_train[batch_mask]
        t0 = time.perf_counter()
        if fused:
            loss = float(net.train_step(x_batch, t_batch, opt.lr))
        else:
            grads = net.gradient(x_batch, t_batch)
            decay = net.weight_decay() if decays else 0  # of the parameters this pass saw
            opt.update(params, grads)
            loss = float(last_layer.loss + decay)
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
    snapshot()
    return TrainResult(
        state=state,
        iterations=total,
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
        first_step_seconds=first_step,
        eval_seconds=eval_seconds,
        prepare_seconds=prepare_seconds,
        optimizer=opt,
    )


def _optimizer_for(net, state, optimizer, optimizer_param, lr):
    """The run's optimizer: built (or taken) as :func:`make_optimizer` does, continuing ``state``'s."""
    if optimizer is not None and not isinstance(optimizer, (str, type)):
        opt = make_optimizer(net, optimizer, optimizer_param, lr)
    else:
        name = optimizer_name(optimizer) if isinstance(optimizer, type) else optimizer
        saved = state.optimizer
        if name is not None and saved is not None and str(name).lower() != saved.lower():
            raise ValueError(f"train: the state was made with optimizer {saved!r}; got {name!r}")
        if state.optimizer_state is None:
            opt = make_optimizer(net, optimizer if optimizer is not None else saved, optimizer_param, lr)
        else:
            cls = optimizer if isinstance(optimizer, type) else _optimizer_class(net, name or saved or "sgd")
            opt = cls()
            try:
                opt.load_state_dict({**state.optimizer_state, **_hyper(lr, optimizer_param)})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"train: the state's optimizer state does not fit: {exc}") from None
    name = optimizer_name(opt)
    if state.optimizer is not None and name.lower() != state.optimizer.lower():
        raise ValueError(f"train: the state was made with optimizer {state.optimizer!r}; got {name!r}")
    return opt


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
