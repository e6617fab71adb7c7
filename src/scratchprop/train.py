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

Nets and optimizers: :class:`scratchprop.TwoLayerNet`, the chapter-6 nets
(:class:`scratchprop.MultiLayerNet`, :class:`scratchprop.MultiLayerNetExtend`)
and the chapter-7/8 convnets (:class:`scratchprop.SimpleConvNet`,
:class:`scratchprop.DeepConvNet`, on images ``(N, C, H, W)``, e.g. from
``load_mnist(flatten=False)``) with any optimizer of
:mod:`scratchprop.optimizers`, taken from the net's backend
(``scratchprop.numba.Adam`` for a Numba net). The default is plain SGD with
``lr``; for a TwoLayerNet with SGD a step is ``net.train_step(x, t, lr)``
(the fused kernel on the Numba backend), otherwise ``grads = net.gradient(x, t);
optimizer.update(net.params, grads)``. The loss recorded for an iteration is
the one of its gradient pass (before the update, with ``train_flg=True``:
``net.last_layer.loss + net.weight_decay()``), not the book's Trainer's second
forward pass after the update. Evaluation runs in test mode (``train_flg=False``).

Dropout draws its masks from the global ``np.random``: for a net with Dropout
layers a new run seeds it from the run seed, and its state is part of the
train state (``np_random_state``), so a resumed run draws the same masks. The
optimizer's name and ``state_dict()`` are part of it too.

The state, result and metrics file live in ``_train_state``, the optimizer and
random helpers in ``_train_setup``; their public names are importable from here.

Example::

    from scratchprop import TwoLayerNet
    from scratchprop.data import load_mnist
    from scratchprop.train import train

    (x, t), (xt, tt) = load_mnist()
    net = TwoLayerNet(784, 100, 10, backend="numpy", seed=0)
    result = train(net, (x, t), (xt, tt), epochs=3, seed=0)
    print(result.state.history[-1])
"""

import time

import numpy as np

from ._train_setup import (
    _draws_from_global_random,
    _global_random_meta,
    _global_random_state,
    _optimizer_for,
    make_optimizer,
    new_seed,
    optimizer_name,
    seed_global_random,
)
from ._train_state import (
    METRIC_FIELDS,
    TrainResult,
    TrainState,
    epoch_end,
    iters_per_epoch,
    write_metrics,
)

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


#: :func:`evaluate`'s default chunks: rows ``(N, D)``, and images ``(N, C, H, W)`` (a convnet's
#: im2col makes each chunk filter_size**2 * channels times bigger: the book's batch of 100)
EVAL_CHUNK = 10000
EVAL_CHUNK_IMAGES = 100


def evaluate(net, x, t, chunk=None):
    """``(mean loss, accuracy, n_correct)`` of ``net`` on the whole set ``x, t``, in chunks.

    ``t`` holds labels ``(N,)`` or one-hot rows ``(N, C)``. ``x`` is cast to
    the net's dtype chunk by chunk, so a float32 dataset never needs a full
    float64 copy (:func:`train` converts its data sets once, up front). The
    net predicts in test mode (``train_flg=False``); the loss includes the net's
    weight decay, as ``net.loss(x, t)`` does. ``chunk``: samples per forward
    pass (default :data:`EVAL_CHUNK` rows, :data:`EVAL_CHUNK_IMAGES` images).
    """
    n = len(x)
    if n == 0:
        raise ValueError("evaluate: the data set is empty")
    if chunk is None:
        chunk = EVAL_CHUNK_IMAGES if np.ndim(x) == 4 else EVAL_CHUNK
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
    net : TwoLayerNet, MultiLayerNet, MultiLayerNetExtend, SimpleConvNet or DeepConvNet
        Anything with ``params``, ``gradient``, ``predict`` and a loss layer
        (``last_layer`` / ``lastLayer``).
    train_data, test_data : (x, t) pairs
        Images ``(N, D)`` (a convnet's ``(N, C, H, W)``) and labels ``(N,)``
        (or one-hot ``(N, C)``).
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
