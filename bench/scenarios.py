"""The train step as users run it: with NumPy work, a pause or float32 images between steps.

A quiet loop of the same step back to back is the best case; a user's
process also runs NumPy between steps. Each case times one train step after
the scenario's work, which is not timed (pytest-benchmark's ``pedantic``
``setup``). The step is 784-100-10's (SGD, float64 weights: ``TwoLayerNet``
and the book's net), or, for cases whose ``sizes`` is ``SimpleConvNet``, the
book's ``train_convnet.py`` step (Adam, float64 weights: ``net`` is
:class:`scratchprop.SimpleConvNet`, ``book`` the book-style class of
``tests/booknet_conv.py``):

``back_to_back``  nothing between steps;
``alternate``     the other backend's step of the same net and batch between
                  steps (a notebook timing both nets in one loop); the numpy
                  case is therefore also the user's NumPy work next to ours;
``np_dot``        one ``np.dot`` (1000x784 @ 784x100) between steps;
``pause_10ms``    ``time.sleep(0.01)`` between steps;
``f32_images``    back to back, with float32 images (what ``load_mnist``
                  gives) and the book's float64 weights;
``user_dot``      the user's NumPy work itself: the ``np.dot`` above, timed
                  after a step of ``backend`` (``none``: after another dot).

Every case also records the worst of its 0.5 s windows (the median of the
rounds whose setup started in that window, highest over the windows) next
to the median of all rounds: a cliff that comes and goes shows there.
"""

import time

import numpy as np

from . import _env
from .cases import CONVNET, LR, SIZES, inputs

WINDOW_S = 0.5
#: Seconds of wall time per case (scenario work included): several 0.5 s windows.
CASE_S = 0.2 if _env.SMOKE else 2.5


def _step(api, backend, N, images, sizes=SIZES):
    """A train step callable of the fused ``TwoLayerNet`` or the book's own net, or a convnet's."""
    import scratchprop

    from .booknet import book_net

    if backend == "numba":
        _env.numba_backend()
    if sizes == CONVNET:
        return _conv_step(api, backend, N, images)
    x, t = inputs(N, images)
    if api == "TwoLayerNet":
        net = scratchprop.TwoLayerNet(784, 100, 10, backend=backend, seed=0)
        return lambda: net.train_step(x, t, LR)
    net = book_net(_env.backend_module(backend), 784, 100, 10, seed=0)

    def step():  # the notebook's loop body
        grad = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= LR * grad[key]
        return net.lastLayer.loss

    return step


def _conv_step(api, backend, N, images):
    from .convnets import LR as CONV_LR
    from .convnets import images as conv_images
    from .convnets import make_net

    net, M = make_net(CONVNET[0], api, backend, "float64")
    x, t = conv_images(N, images)
    opt = M.Adam(lr=CONV_LR)

    def step():
        opt.update(net.params, net.gradient(x, t))
        return net.last_layer.loss

    return step


def _user_dot():
    rng = np.random.default_rng(5)
    A, B = rng.random((1000, 784)), rng.random((784, 100))
    return lambda: np.dot(A, B)


def build(case):
    """``(timed, between)`` for a scenario case (see the module docstring)."""
    N, name = case.batch, case.case
    if name == "user_dot":
        if case.backend == "none":
            between = _user_dot()
        else:
            between = _step(case.api, case.backend, N, "float64", case.sizes)
        return _user_dot(), between
    images = "float32" if name == "f32_images" else "float64"
    timed = _step(case.api, case.backend, N, images, case.sizes)
    if name in ("back_to_back", "f32_images"):
        between = None
    elif name == "alternate":
        between = _step(case.api, "numpy" if case.backend == "numba" else "numba", N, images, case.sizes)
    elif name == "np_dot":
        between = _user_dot()
    elif name == "pause_10ms":

        def between():
            time.sleep(0.01)
    else:
        raise ValueError(f"unknown scenario {name!r}")
    return timed, between


def windows(starts, durations, width=WINDOW_S):
    """Median duration per ``width``-second window of start times: ``[(start, median, n)]``."""
    out, lo, chunk = [], None, []
    for s, d in zip(starts, durations):
        if lo is None:
            lo = s
        if s - lo >= width and chunk:
            out.append((lo, float(np.median(chunk)), len(chunk)))
            lo, chunk = s, []
        chunk.append(d)
    if chunk:
        out.append((lo, float(np.median(chunk)), len(chunk)))
    return out


def run(benchmark, case):
    """Warm up, time ``ROUNDS`` steps each after the scenario's work, record the windows."""
    timed, between = build(case)
    benchmark.group = f"scenario {case.case} batch={case.batch}"
    for _ in range(3):  # JIT, workspaces
        if between is not None:
            between()
        timed()
    t0 = time.perf_counter()
    for _ in range(5):  # a round's wall time, scenario work included: how many fit CASE_S
        if between is not None:
            between()
        timed()
    per_round = (time.perf_counter() - t0) / 5
    rounds = max(20, min(5000, int(CASE_S / per_round)))
    starts, durations = [], []

    def setup():
        if between is not None:
            between()
        starts.append(time.perf_counter())

    def fn():
        t0 = time.perf_counter()
        out = timed()
        durations.append(time.perf_counter() - t0)
        return out

    benchmark.extra_info.update(case.info())
    benchmark.extra_info.update(_env.thread_info())
    benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=0)
    wins = windows(starts, durations)
    worst = max(w[1] for w in wins)
    benchmark.extra_info.update(
        rounds=rounds,
        window_s=WINDOW_S,
        windows=len(wins),
        median_s=float(np.median(durations)),
        worst_window_s=worst,
        timing=f"pedantic rounds={rounds}, scenario work untimed in setup",
    )


def run_train(benchmark, backend):
    """``scratchprop train``'s loop end to end (bundled data, defaults, 5 epochs; 1 in smoke)."""
    import scratchprop
    from scratchprop.data import load_mnist
    from scratchprop.train import train

    if backend == "numba":
        _env.numba_backend()
    (x, t), (xt, tt) = load_mnist()
    epochs = 1 if _env.SMOKE else 5
    warm = scratchprop.TwoLayerNet(784, 100, 10, backend=backend, seed=0)
    train(warm, (x[:200], t[:200]), (xt[:100], tt[:100]), iters=2, seed=0)  # JIT, imports
    results = []

    def run():
        net = scratchprop.TwoLayerNet(784, 100, 10, backend=backend, seed=0)
        results.append(train(net, (x, t), (xt, tt), epochs=epochs, batch_size=100, lr=0.1, seed=0))

    benchmark.group = "scenario train end to end"
    benchmark.extra_info.update(
        group="scenario",
        case="train",
        api="TwoLayerNet",
        backend=backend,
        dtype="float64",
        batch=100,
        sizes="784-100-10",
        threads=0,
        epochs=epochs,
        smoke=_env.SMOKE,
    )
    benchmark.extra_info.update(_env.thread_info())
    benchmark.pedantic(run, rounds=1 if _env.SMOKE else 3, iterations=1)
    r = min(results, key=lambda r: r.seconds)  # the quickest run's split
    wall = r.seconds - r.first_step_seconds - r.prepare_seconds
    benchmark.extra_info.update(
        samples_per_wall_s=r.samples / r.seconds,
        wall_s=r.seconds,
        step_share=(r.step_seconds - r.first_step_seconds) / wall,
        eval_share=r.eval_seconds / wall,
        other_share=r.other_seconds / wall,
        split=r.split(),
    )
