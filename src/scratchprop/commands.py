"""The ``scratchprop`` commands behind :mod:`scratchprop.cli` (one ``cmd_*`` per sub-command).

Each takes the parsed arguments and returns the exit status; user errors are
raised as :class:`CLIError` (or ``DataError`` / ``CheckpointError``) and
printed by :func:`scratchprop.cli.main` as one line.
"""

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from .checkpoint import CheckpointError

N_CLASSES = 10


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status ``code``."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def one_line(text):
    """Join a multi-line message into one line."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C that arrives while Numba imports, compiles or loads kernels until that is done.

    Inside those, a KeyboardInterrupt can be swallowed (llvmlite's ctypes
    callbacks print "Exception ignored" and carry on) or turn into another
    error; held, it is raised here afterwards and ends the run with one line.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


def warm_up(net):
    """Load (or compile) the kernels a run of ``net`` uses, with Ctrl-C held (see above)."""
    if net.backend_name != "numba":
        return
    import numpy as np

    from .net import TwoLayerNet

    with deferred_interrupt():
        tiny = TwoLayerNet(4, 3, 2, backend="numba", dtype=net.dtype, seed=0)
        x, t = np.zeros((2, 4), net.dtype), np.array([0, 1])
        tiny.train_step(x, t, 0.1)
        tiny.loss(x, t)


_NUMBA_ENV = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")


def _start_numba():
    """Import Numba and start its threads now, so a bad environment is one line, not a traceback."""
    count = os.environ.get("NUMBA_NUM_THREADS")
    if count is not None and not (count.strip().isdigit() and int(count) > 0):
        raise CLIError(f"NUMBA_NUM_THREADS={count}: must be a positive integer; unset it or fix it")
    try:
        import numba

        from . import threads  # noqa: F401 - the threading-layer preference, before the launch

        numba.get_num_threads()  # launches Numba's threads: a bad count or layer fails here
    except ImportError as exc:
        raise CLIError(
            f"--backend numba needs numba, which is not importable ({exc}); try --backend numpy"
        ) from None
    except (ValueError, RuntimeError, OSError) as exc:
        env = [f"{k}={os.environ[k]}" for k in _NUMBA_ENV if k in os.environ]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if env:
            raise CLIError(
                f"{' '.join(env)}: Numba cannot start its threads with this setting "
                f"({first}); unset it or fix it"
            ) from None
        raise CLIError(f"Numba cannot start its threads ({first})") from None


def setup_backend(name, threads=None):
    """Check ``--threads``, import the chosen backend (only that one); returns a threads label."""
    from .backends import get_backend

    if threads is not None and name != "numba":
        raise CLIError(
            "--threads applies to --backend numba only (NumPy's BLAS follows "
            "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)"
        )
    if name == "numba":
        with deferred_interrupt():
            _start_numba()
    if threads is not None:
        import numba

        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= top:
            raise CLIError(f"--threads must be between 1 and {top} (NUMBA_NUM_THREADS), got {threads}")
    try:
        with deferred_interrupt():
            get_backend(name)
    except ImportError as exc:
        raise CLIError(f"backend {name!r} is not available ({exc}); try --backend numpy") from None
    from .sysinfo import blas_thread_label

    if name != "numba":
        return blas_thread_label()
    import numba

    from . import numba as backend
    from .sysinfo import kernels_blas

    if threads is not None:
        backend.set_num_threads(threads)
    name, _, kthreads = kernels_blas()
    blas = f"{name} {kthreads}" if kthreads else f"{name}, {blas_thread_label()}"
    return f"numba {numba.get_num_threads()}, kernels' BLAS {blas}"


def load_data(root, dataset):
    from .data import DEBIAN_FASHION_MNIST_DIR, load_mnist

    if root is None and dataset == "fashion-mnist" and not DEBIAN_FASHION_MNIST_DIR.is_dir():
        raise CLIError(
            "fashion-mnist is not bundled; get it with 'scratchprop download --dataset "
            "fashion-mnist --root DIR' and pass --data DIR, or install Debian's "
            f"dataset-fashion-mnist package ({DEBIAN_FASHION_MNIST_DIR})"
        )
    if root is not None and not Path(root).is_dir():
        raise CLIError(f"--data {root}: no such directory")
    (x, t), (xt, tt) = load_mnist(root, dataset=dataset)
    where = f"--data {root}" if root is not None else dataset
    for name, images in (("training", x), ("test", xt)):
        if len(images) == 0:
            raise CLIError(f"{where}: the {name} set has no images")
    if x.shape[1:] != xt.shape[1:]:
        raise CLIError(
            f"{where}: training images have {x.shape[1]} pixels but test images "
            f"{xt.shape[1]}: the two sets must have the same image size"
        )
    return (x, t), (xt, tt)


def check_output(option, path):
    """Before any work: ``path`` can be written (see ``_atomic.check_writable``); else exit 2."""
    from ._atomic import check_writable

    try:
        check_writable(path)
    except OSError as exc:
        raise CLIError(f"{option} {exc}") from None


def cmd_train(args):
    import numpy as np

    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import DEBIAN_FASHION_MNIST_DIR
    from .net import TwoLayerNet
    from .progress import ProgressBar
    from .train import TrainState, epoch_end, new_seed, train, write_metrics

    if args.metrics and not args.metrics.lower().endswith((".json", ".csv")):
        raise CLIError(f"--metrics {args.metrics}: the file name must end in .json or .csv")
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise CLIError(f"--plot {args.plot}: the file name must end in .png")
        from .plot import PlotUnavailable, require_matplotlib

        try:
            require_matplotlib()
        except PlotUnavailable as exc:
            raise CLIError(str(exc)) from None
    for option in ("save", "metrics", "plot"):
        if getattr(args, option):
            check_output("--" + option, getattr(args, option))
    threads = setup_backend(args.backend, args.threads)
    ckpt = load_checkpoint(args.resume) if args.resume else None
    meta = ckpt.meta if ckpt else {}

    def pick(name, given, default):
        saved = meta.get(name.replace("-", "_"))
        if ckpt and given is not None and saved is not None and given != saved:
            raise CLIError(f"--{name} {given} differs from {saved} in the checkpoint {args.resume}")
        return given if given is not None else saved if saved is not None else default

    dataset = pick("dataset", args.dataset, "mnist")
    (x_train, t_train), (x_test, t_test) = load_data(args.data, dataset)
    D = x_train.shape[1]
    if ckpt:
        cD, cH, cC = ckpt.sizes
        if args.hidden is not None and args.hidden != cH:
            raise CLIError(f"--hidden {args.hidden} differs from the checkpoint {args.resume} (hidden {cH})")
        if (cD, cC) != (D, N_CLASSES):
            raise CLIError(
                f"checkpoint {args.resume} is a {cD}-{cH}-{cC} net but the {dataset} data "
                f"has {D} features and {N_CLASSES} classes"
            )
        if args.dtype is not None and args.dtype != ckpt.dtype.name:
            raise CLIError(f"--dtype {args.dtype} differs from the checkpoint {args.resume} ({ckpt.dtype})")
        batch_size = pick("batch-size", args.batch_size, 100)
        pick("seed", args.seed, None)
        try:
            state = TrainState.from_meta(meta, ckpt.loss)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{args.resume}: {exc}") from None
        if state.train_size != len(x_train):
            raise CLIError(
                f"checkpoint {args.resume} was trained on {state.train_size} samples but "
                f"the {dataset} training set has {len(x_train)}: resume on the same data"
            )
        net = ckpt.make_net(args.backend)
        lr = args.lr if args.lr is not None else meta.get("lr", 0.1)
    else:
        batch_size = args.batch_size or 100
        seed = args.seed if args.seed is not None else new_seed()
        net = TwoLayerNet(
            D, args.hidden or 100, N_CLASSES, backend=args.backend, dtype=args.dtype or "float64", seed=seed
        )
        state = TrainState(seed=seed, batch_size=batch_size, train_size=len(x_train))
        lr = args.lr or 0.1
    warm_up(net)
    epochs, iters = args.epochs, args.iters
    if epochs is None and iters is None:
        iters = 10000
    ipe = state.iters_per_epoch
    D, H, C = net.sizes
    say = (lambda *a, **k: None) if args.quiet else print
    source = str(args.data or ("bundled" if dataset == "mnist" else DEBIAN_FASHION_MNIST_DIR))
    say(
        f"TwoLayerNet {D}-{H}-{C} | backend {net.backend_name}, {net.dtype}, threads {threads} | "
        f"{dataset} ({source}): {len(x_train)} train / {len(x_test)} test"
    )
    if ckpt:
        say(f"resuming {args.resume} at epoch {state.epoch}, iteration {state.iteration}")
    plan = f"{iters} iterations" if iters else f"{epochs} epochs"
    say(
        f"lr {lr:g}, batch size {batch_size}, seed {state.seed}, {plan} "
        f"(an epoch is {ipe:g} iterations), ending at iteration "
        f"{state.iteration + iters if iters else epoch_end(state.epoch + epochs, ipe)}",
        flush=True,
    )
    bar = ProgressBar(enabled=False if args.quiet else None)
    warned, saved_epoch = [], []
    run_meta = {"dataset": dataset, "data": source, "lr": lr, "backend": net.backend_name}

    def on_epoch(row, st):
        bar.clear()
        part = " (partial)" if row["partial"] else ""
        say(
            f"epoch {row['epoch']}{part}  iter {row['iteration']}  loss {row['loss']:.4f}  "
            f"train acc, test acc | {row['train_acc']:.4f}, {row['test_acc']:.4f}  "
            f"[{row['seconds']:.1f} s]",
            flush=True,
        )
        if not np.isfinite(row["loss"]) and not warned:
            warned.append(1)
            print(
                f"scratchprop: warning: the loss is not finite at epoch {row['epoch']} "
                f"(diverged? try a smaller --lr than {lr:g})",
                file=sys.stderr,
            )
        info = {**run_meta, **st.to_meta(), "train_acc": row["train_acc"], "test_acc": row["test_acc"]}
        if args.save:
            save_checkpoint(args.save, net, info, loss=st.loss)
            saved_epoch.append(row["epoch"])
        if args.metrics:
            run = {k: v for k, v in info.items() if k not in ("history", "rng_state")}
            write_metrics(args.metrics, st.history, run)

    def on_step(done, total, loss):
        bar.update(done, total, loss, prefix=f"epoch {state.epoch + 1} ")

    try:
        result = train(
            net,
            (x_train, t_train),
            (x_test, t_test),
            epochs=epochs,
            iters=iters,
            batch_size=batch_size,
            lr=lr,
            state=state,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    except (KeyboardInterrupt, SystemError) as exc:
        from .cli import interrupted

        if not interrupted(exc):
            raise
        bar.clear()
        saved = f"; {args.save} holds epoch {saved_epoch[-1]}" if saved_epoch else ""
        print(f"scratchprop: interrupted at iteration {state.iteration}{saved}", file=sys.stderr)
        return 130
    bar.clear()
    if args.plot:
        from .plot import plot_history

        plot_history(
            args.plot,
            state.history,
            state.loss,
            ipe,
            title=f"TwoLayerNet {D}-{H}-{C} on {dataset} ({net.backend_name}, {net.dtype})",
        )
    last = state.history[-1]
    print(
        f"done: epoch {last['epoch']}{' (partial)' if last['partial'] else ''}, iteration "
        f"{state.iteration}; this run {result.iterations} iterations ({result.samples:,} samples) "
        f"in {result.seconds:.2f} s wall"
    )
    print(
        f"final: train acc {last['train_acc']:.4f}, test acc {last['test_acc']:.4f}, "
        f"epoch loss {last['loss']:.4f}"
    )
    print(
        f"throughput: {result.samples_per_second:,.0f} samples/s (SGD steps {result.step_seconds:.2f} s"
        f", first {result.first_step_seconds:.3g} s not counted) | backend {net.backend_name}, "
        f"{net.dtype}, threads {threads}"
    )
    print(f"wall time after the first step: {result.split()}")
    wrote = [
        f"{what} {p}"
        for what, p in (("checkpoint", args.save), ("metrics", args.metrics), ("plot", args.plot))
        if p
    ]
    if wrote:
        print("wrote " + ", ".join(wrote))
    return 0


def cmd_gradcheck(args):
    from ._gradcheck import gradcheck
    from .net import TwoLayerNet

    setup_backend(args.backend)
    dataset = args.dataset or "mnist"
    (x_train, t_train), _ = load_data(args.data, dataset)
    if args.batch > len(x_train):
        raise CLIError(f"--batch {args.batch} exceeds the {len(x_train)} training samples")
    from .train import new_seed

    seed = args.seed if args.seed is not None else new_seed()  # printed: a failure can be rerun
    net = TwoLayerNet(
        x_train.shape[1], args.hidden, N_CLASSES, backend=args.backend, dtype=args.dtype, seed=seed
    )
    x = x_train[: args.batch].astype(net.dtype)
    print(
        f"gradient check: TwoLayerNet {x.shape[1]}-{args.hidden}-{N_CLASSES}, first {args.batch} "
        f"{dataset} training samples, backend {net.backend_name}, {net.dtype}, seed {seed}",
        flush=True,
    )
    # a JIT backend's first call loads or compiles its kernels: time the second (the NumPy
    # reference's numerical gradient takes seconds, and has nothing to warm up)
    report = gradcheck(net, x, t_train[: args.batch], warmup=net.backend_name != "numpy", seed=seed)
    print(report)
    return 0 if report.passed else 1


def cmd_evaluate(args):
    from .checkpoint import load_checkpoint
    from .train import evaluate

    ckpt = load_checkpoint(args.model)
    setup_backend(args.backend)
    meta = ckpt.meta
    dataset = args.dataset or meta.get("dataset") or "mnist"
    (x_train, t_train), (x_test, t_test) = load_data(args.data, dataset)
    D, H, C = ckpt.sizes
    if (D, C) != (x_train.shape[1], N_CLASSES):
        raise CLIError(
            f"checkpoint {args.model} is a {D}-{H}-{C} net but the {dataset} data has "
            f"{x_train.shape[1]} features and {N_CLASSES} classes"
        )
    net = ckpt.make_net(args.backend)
    warm_up(net)
    print(
        f"model {args.model}: TwoLayerNet {D}-{H}-{C}, {ckpt.dtype}, trained on "
        f"{meta.get('dataset', '?')} for {meta.get('epoch', '?')} epochs ({meta.get('iteration', '?')} "
        f"iterations, backend {meta.get('backend', '?')}); evaluating on {dataset} with {net.backend_name}"
    )
    for name, x, t in (("train", x_train, t_train), ("test", x_test, t_test)):
        loss, acc, correct = evaluate(net, x, t)
        print(f"{name + ':':<6} loss {loss:.4f}  accuracy {acc:.4f} ({correct}/{len(x)})")
    return 0


def cmd_info(args):
    from .sysinfo import collect, format_info

    try:  # the backend may choose numba's threading layer: report the one it gets
        from . import numba as _backend  # noqa: F401
    except Exception:  # noqa: BLE001 - info must work without (a working) backend
        try:
            import numba  # noqa: F401
        except ImportError:
            pass
    print(format_info(collect()))
    return 0


def cmd_download(args):
    from . import data

    try:
        paths = data.download(
            args.dataset,
            args.root,
            mirrors=args.mirror,
            timeout=args.timeout,
            log=lambda msg: print(msg, flush=True),
        )
    except data.DataError as exc:
        print(f"scratchprop: error: {one_line(exc)}", file=sys.stderr)
        return 1
    where = paths[0].parent if paths else args.root
    print(
        f"{args.dataset}: {len(paths)} files verified in {where}; use: --dataset {args.dataset} "
        f"--data {args.root}"
    )
    return 0
