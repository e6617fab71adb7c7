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
from .cli import OPTIMIZER_NAMES

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


def warm_up(net, optimizer=None):
    """Load (or compile) the kernels a run of ``net`` (and ``optimizer``, a name) uses, with Ctrl-C
    held (see above). ``np.random`` is left as it was (Dropout draws from it)."""
    if net.backend_name != "numba":
        return
    import numpy as np

    from .net import TwoLayerNet
    from .train import make_optimizer

    with deferred_interrupt():
        if isinstance(net, TwoLayerNet):
            tiny = TwoLayerNet(4, 3, 2, backend="numba", dtype=net.dtype, seed=0)
            x, t = np.zeros((2, 4), net.dtype), np.array([0, 1])
            tiny.train_step(x, t, 0.1)
            tiny.loss(x, t)
            if optimizer in (None, "sgd"):
                return
        else:  # arrays big enough for the kernels (small ones run NumPy code)
            cfg = {**net.config(), "input_size": 16, "hidden_size_list": [32], "output_size": 10}
            tiny = type(net)(**cfg, backend="numba", dtype=net.dtype, seed=0)
            x, t = np.zeros((32, 16), net.dtype), np.arange(32) % 10
        saved = np.random.get_state()
        try:
            grads = tiny.gradient(x, t)
            make_optimizer(tiny, optimizer).update(tiny.params, grads)
            tiny.predict(x)
        finally:
            np.random.set_state(saved)


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


MLP_OPTIONS = ("activation", "weight_init", "weight_decay", "batchnorm", "dropout")
KIND_NET = {"TwoLayerNet": "two-layer", "MultiLayerNet": "mlp", "MultiLayerNetExtend": "mlp"}


def flag_name(name):
    return "--" + name.replace("_", "-")


def hidden_text(sizes):
    return ",".join(str(h) for h in sizes)


def net_choice(args):
    """``--net``, or mlp when an mlp option is given; checks the options fit the net."""
    given = [name for name in MLP_OPTIONS if getattr(args, name) is not None]
    if args.net == "two-layer" and given:
        raise CLIError(f"{flag_name(given[0])} applies to --net mlp, not to the two-layer net")
    net = args.net or ("mlp" if given else "two-layer")
    if net == "two-layer" and args.hidden is not None and len(args.hidden) != 1:
        raise CLIError(
            f"--hidden {hidden_text(args.hidden)}: the two-layer net has one hidden layer; "
            "use --net mlp for more"
        )
    return net


def mlp_config(args, D, default_hidden):
    """``(kind, config)`` of the chapter-6 net the mlp options describe."""
    activation = args.activation or "relu"
    cfg = {
        "input_size": D,
        "hidden_size_list": list(args.hidden or default_hidden),
        "output_size": N_CLASSES,
        "activation": activation,
        "weight_init_std": args.weight_init if args.weight_init is not None else activation,
        "weight_decay_lambda": args.weight_decay or 0,
    }
    if not args.batchnorm and args.dropout is None:
        return "MultiLayerNet", cfg
    cfg.update(
        use_dropout=args.dropout is not None,
        dropout_ratio=0.5 if args.dropout is None else args.dropout,
        use_batchnorm=bool(args.batchnorm),
    )
    return "MultiLayerNetExtend", cfg


def build_net(args, D, seed, default_hidden):
    """The net the flags describe (new, seeded)."""
    dtype = getattr(args, "dtype", None) or "float64"
    if net_choice(args) == "two-layer":
        from .net import TwoLayerNet

        H = args.hidden[0] if args.hidden else default_hidden[0]
        return TwoLayerNet(D, H, N_CLASSES, backend=args.backend, dtype=dtype, seed=seed)
    from . import multilayer

    kind, cfg = mlp_config(args, D, default_hidden)
    try:
        return getattr(multilayer, kind)(**cfg, backend=args.backend, dtype=dtype, seed=seed)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def describe(net):
    """``TwoLayerNet 784-100-10`` or ``MultiLayerNetExtend 784-100-100-10 (relu, init relu, ...)``."""
    from .checkpoint import net_kind

    kind = net_kind(net)
    if kind == "TwoLayerNet":
        return f"{kind} {'-'.join(str(n) for n in net.sizes)}"
    cfg = net.config()
    sizes = [cfg["input_size"], *cfg["hidden_size_list"], cfg["output_size"]]
    init = cfg["weight_init_std"]
    parts = [cfg["activation"], f"init {init}" if isinstance(init, str) else f"init std {init:g}"]
    if cfg.get("use_batchnorm"):
        parts.append("batchnorm")
    if cfg.get("use_dropout"):
        parts.append(f"dropout {cfg['dropout_ratio']:g}")
    if cfg["weight_decay_lambda"]:
        parts.append(f"weight decay {cfg['weight_decay_lambda']:g}")
    return f"{kind} {'-'.join(str(n) for n in sizes)} ({', '.join(parts)})"


def _same_init(a, b):
    alias = {"he": "relu", "xavier": "sigmoid"}
    if isinstance(a, str) or isinstance(b, str):
        return (
            isinstance(a, str)
            and isinstance(b, str)
            and alias.get(a.lower(), a.lower()) == alias.get(b.lower(), b.lower())
        )
    return float(a) == float(b)


def check_resume_net(args, ckpt):
    """Every net option given must agree with the checkpoint's net (one line naming it otherwise)."""
    where = f"the checkpoint {args.resume}"
    kind = ckpt.kind
    label = KIND_NET[kind]
    if args.net is not None and args.net != label:
        raise CLIError(f"--net {args.net} differs from {where} ({label})")
    if kind == "TwoLayerNet":
        given = [name for name in MLP_OPTIONS if getattr(args, name) is not None]
        if given:
            raise CLIError(f"{flag_name(given[0])} does not apply to {where} (a two-layer net)")
        cH = ckpt.sizes[1]
        if args.hidden is not None and args.hidden != [cH]:
            raise CLIError(f"--hidden {hidden_text(args.hidden)} differs from {where} (hidden {cH})")
        return
    cfg = ckpt.config
    dropout = cfg["dropout_ratio"] if cfg.get("use_dropout") else None
    init = cfg["weight_init_std"]
    # option -> (the checkpoint's value, how to show it, how to show the given one)
    saved = {
        "hidden": (cfg["hidden_size_list"], hidden_text(cfg["hidden_size_list"]), hidden_text),
        "activation": (cfg["activation"], cfg["activation"], str),
        "weight_init": (init, init if isinstance(init, str) else f"{init:g}", lambda v: f"{v:g}"),
        "weight_decay": (cfg["weight_decay_lambda"], f"{cfg['weight_decay_lambda']:g}", lambda v: f"{v:g}"),
        "batchnorm": (bool(cfg.get("use_batchnorm")), "batchnorm" if cfg.get("use_batchnorm") else "no batchnorm",
                      lambda v: ""),
        "dropout": (dropout, "no dropout" if dropout is None else f"dropout {dropout:g}", lambda v: f"{v:g}"),
    }  # fmt: skip
    for name, (have, shown, show) in saved.items():
        given = getattr(args, name)
        if given is None:
            continue
        if not (_same_init(given, have) if name == "weight_init" else given == have):
            value = show(given) if not isinstance(given, str) else given
            raise CLIError(f"{flag_name(name)}{' ' + value if value else ''} differs from {where} ({shown})")


def cmd_train(args):
    import numpy as np

    from .checkpoint import load_checkpoint, save_checkpoint
    from .data import DEBIAN_FASHION_MNIST_DIR
    from .progress import ProgressBar
    from .train import TrainState, epoch_end, make_optimizer, new_seed, train, write_metrics

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
    if not ckpt:
        net_choice(args)  # the options fit the net: before the data is read
    (x_train, t_train), (x_test, t_test) = load_data(args.data, dataset)
    D = x_train.shape[1]
    if ckpt:
        check_resume_net(args, ckpt)
        sizes = ckpt.sizes
        if (sizes[0], sizes[-1]) != (D, N_CLASSES):
            raise CLIError(
                f"checkpoint {args.resume} is a {'-'.join(map(str, sizes))} net but the {dataset} data "
                f"has {D} features and {N_CLASSES} classes"
            )
        if args.dtype is not None and args.dtype != ckpt.dtype.name:
            raise CLIError(f"--dtype {args.dtype} differs from the checkpoint {args.resume} ({ckpt.dtype})")
        if args.optimizer is not None and args.optimizer != ckpt.optimizer.lower():
            raise CLIError(
                f"--optimizer {args.optimizer} differs from {ckpt.optimizer} in the checkpoint {args.resume}"
            )
        batch_size = pick("batch-size", args.batch_size, 100)
        pick("seed", args.seed, None)
        try:
            state = TrainState.from_meta(meta, ckpt.loss, optimizer_state=ckpt.optimizer_state)
        except (ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(f"{args.resume}: {exc}") from None
        if state.train_size != len(x_train):
            raise CLIError(
                f"checkpoint {args.resume} was trained on {state.train_size} samples but "
                f"the {dataset} training set has {len(x_train)}: resume on the same data"
            )
        opt_name = ckpt.optimizer.lower()
        if opt_name not in OPTIMIZER_NAMES:
            raise CLIError(
                f"checkpoint {args.resume} was trained with the optimizer {ckpt.optimizer!r}, which the "
                f"command line cannot rebuild (it knows {', '.join(OPTIMIZER_NAMES)})"
            )
        net = ckpt.make_net(args.backend)
        saved_lr = (ckpt.optimizer_state or {}).get("lr", meta.get("lr", 0.1))
        lr = args.lr if args.lr is not None else saved_lr
    else:
        batch_size = args.batch_size or 100
        seed = args.seed if args.seed is not None else new_seed()
        net = build_net(args, D, seed, default_hidden=[100, 100, 100] if net_choice(args) == "mlp" else [100])
        state = TrainState(seed=seed, batch_size=batch_size, train_size=len(x_train))
        opt_name = args.optimizer or "sgd"
        lr = make_optimizer(net, opt_name, lr=args.lr).lr
    warm_up(net, opt_name)
    epochs, iters = args.epochs, args.iters
    if epochs is None and iters is None:
        iters = 10000
    ipe = state.iters_per_epoch
    label = describe(net)
    say = (lambda *a, **k: None) if args.quiet else print
    source = str(args.data or ("bundled" if dataset == "mnist" else DEBIAN_FASHION_MNIST_DIR))
    say(
        f"{label} | backend {net.backend_name}, {net.dtype}, threads {threads} | "
        f"{dataset} ({source}): {len(x_train)} train / {len(x_test)} test"
    )
    if ckpt:
        say(f"resuming {args.resume} at epoch {state.epoch}, iteration {state.iteration}")
    plan = f"{iters} iterations" if iters else f"{epochs} epochs"
    say(
        f"optimizer {opt_name}, lr {lr:g}, batch size {batch_size}, seed {state.seed}, {plan} "
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
            save_checkpoint(args.save, net, info, loss=st.loss, optimizer_state=st.optimizer_state)
            saved_epoch.append(row["epoch"])
        if args.metrics:
            run = {k: v for k, v in info.items() if k not in ("history", "rng_state", "np_random_state")}
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
            optimizer=opt_name,
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
            title=f"{label.split(' (')[0]} on {dataset} ({net.backend_name}, {net.dtype})",
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
        f"throughput: {result.samples_per_second:,.0f} samples/s ({type(result.optimizer).__name__} steps "
        f"{result.step_seconds:.2f} s"
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

    setup_backend(args.backend)
    kind = net_choice(args)
    dataset = args.dataset or "mnist"
    (x_train, t_train), _ = load_data(args.data, dataset)
    if args.batch > len(x_train):
        raise CLIError(f"--batch {args.batch} exceeds the {len(x_train)} training samples")
    from .train import new_seed, seed_global_random

    seed = args.seed if args.seed is not None else new_seed()  # printed: a failure can be rerun
    net = build_net(args, x_train.shape[1], seed, default_hidden=[20, 20] if kind == "mlp" else [100])
    if kind == "mlp":
        seed_global_random(seed)  # Dropout's masks
    x = x_train[: args.batch].astype(net.dtype)
    print(
        f"gradient check: {describe(net)}, first {args.batch} "
        f"{dataset} training samples, backend {net.backend_name}, {net.dtype}, seed {seed}",
        flush=True,
    )
    # a JIT backend's first call loads or compiles its kernels: time the second (the NumPy
    # reference's numerical gradient takes seconds, and has nothing to warm up). A chapter-6 net's
    # numerical gradient runs its layers per entry (no fused kernel): a tiny net warms them up.
    twice = net.backend_name != "numpy" and kind == "two-layer"
    if kind == "mlp":
        warm_up(net)
    report = gradcheck(net, x, t_train[: args.batch], warmup=twice, seed=seed)
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
    sizes = ckpt.sizes
    shape = "-".join(str(n) for n in sizes)
    if (sizes[0], sizes[-1]) != (x_train.shape[1], N_CLASSES):
        raise CLIError(
            f"checkpoint {args.model} is a {shape} net but the {dataset} data has "
            f"{x_train.shape[1]} features and {N_CLASSES} classes"
        )
    net = ckpt.make_net(args.backend)
    warm_up(net)
    print(
        f"model {args.model}: {describe(net)}, {ckpt.dtype}, trained on "
        f"{meta.get('dataset', '?')} for {meta.get('epoch', '?')} epochs ({meta.get('iteration', '?')} "
        f"iterations, backend {meta.get('backend', '?')}, optimizer {ckpt.optimizer}); evaluating on "
        f"{dataset} with {net.backend_name}"
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
