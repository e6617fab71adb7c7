"""The ``scratchprop`` command line: train, gradcheck, evaluate, info, download.

Exit status: 0 success; 1 a failed gradient check or download; 2 bad
arguments, bad data or a bad checkpoint (one ``scratchprop: error:`` line on
stderr, no traceback); 130 interrupted.
"""

import argparse
import sys

# Nothing heavy at import: NumPy and the rest load inside main(), where Ctrl-C is one line.


class Parser(argparse.ArgumentParser):
    def error(self, message):
        from .commands import CLIError

        raise CLIError(message)


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < float("inf"):
            label = "integer" if kind is int else "number"
            raise argparse.ArgumentTypeError(f"must be a positive {label}, got {text!r}")
        return value

    return parse


def seed(text):
    """A seed: an integer >= 0 (NumPy's generators take no negative seed)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def hidden_sizes(text):
    """``--hidden``: one positive integer, or several separated by commas (``100,100,100``)."""
    parts = text.split(",")
    sizes = []
    for part in parts:
        try:
            value = int(part.strip())
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"must be a positive integer or comma-separated positive integers, got {text!r}"
            )
        sizes.append(value)
    return sizes


def weight_init(text):
    """``--weight-init``: relu, he, sigmoid, xavier or a positive number (the std)."""
    if text.lower() in ("relu", "he", "sigmoid", "xavier"):
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"must be relu, he, sigmoid, xavier or a positive number, got {text!r}"
        )
    return value


def ratio(text):
    """``--dropout``: a ratio in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), got {text!r}")
    return value


def non_negative(text):
    """``--weight-decay``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


def net_args(s, hidden_help):
    """The flags that choose and shape the net (train and gradcheck)."""
    s.add_argument(
        "--net",
        choices=("two-layer", "mlp", "simple-convnet", "deep-convnet"),
        help="two-layer: the chapter-5 TwoLayerNet; mlp: the chapter-6 MultiLayerNet (with --batchnorm "
        "or --dropout, MultiLayerNetExtend); simple-convnet, deep-convnet: the chapter-7 SimpleConvNet "
        "and the chapter-8 DeepConvNet with the book's defaults, on the images as 1xHxW "
        "(default: two-layer, or mlp when an mlp option is given)",
    )
    s.add_argument("--hidden", type=hidden_sizes, metavar="H[,H...]", help=hidden_help)
    s.add_argument("--activation", choices=("relu", "sigmoid"), help="mlp: hidden activation (default: relu)")
    s.add_argument(
        "--weight-init",
        type=weight_init,
        metavar="INIT",
        help="mlp: relu/he (sqrt(2/n)), sigmoid/xavier (sqrt(1/n)) or a number, the std "
        "(default: the activation's, relu or sigmoid)",
    )
    s.add_argument(
        "--weight-decay", type=non_negative, metavar="LAMBDA", help="mlp: L2 weight decay lambda (default: 0)"
    )
    s.add_argument(
        "--batchnorm",
        action="store_true",
        default=None,
        help="mlp: BatchNormalization after every hidden Affine (MultiLayerNetExtend)",
    )
    s.add_argument(
        "--dropout",
        type=ratio,
        metavar="RATIO",
        help="mlp: Dropout with this ratio after every hidden activation (MultiLayerNetExtend)",
    )


def build_parser():
    from ._cli_nets import GRADCHECK_FILTERS, GRADCHECK_HIDDEN
    from .backends import BACKENDS
    from .data import DATASETS

    p = Parser(
        prog="scratchprop",
        description="The 'Deep Learning from Scratch' nets on NumPy or Numba: the chapter-5 "
        "two-layer net, the chapter-6 multi-layer nets (batch norm, dropout, weight decay, the "
        "book's optimizers) and the chapter-7/8 convnets: train them, check their gradients, evaluate "
        "checkpoints.",
        epilog="Without --data, the bundled 10,000-digit real MNIST subset is used "
        "(8,330 train / 1,670 test).",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"scratchprop {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_args(s, backend=True, dataset_default="mnist"):
        if backend:
            s.add_argument(
                "--backend",
                choices=tuple(BACKENDS),
                default="numba",
                help="layer implementation (default: numba)",
            )
        s.add_argument(
            "--data",
            metavar="DIR",
            help="directory with the four IDX files, e.g. a "
            "'scratchprop download' root (default: the bundled MNIST subset; for "
            "fashion-mnist, Debian's /usr/share/datasets/fashion-mnist)",
        )
        s.add_argument(
            "--dataset",
            choices=tuple(DATASETS),
            default=None,
            help=f"which dataset (default: {dataset_default})",
        )

    t = sub.add_parser(
        "train",
        help="train a net with mini-batches (the notebook's loop)",
        description="Train a net with the notebook's loop: random mini-batches, "
        "SGD or another of the book's optimizers, train/test accuracy on the whole sets after "
        "each epoch (iter_per_epoch = max(train_size / batch_size, 1)).",
        epilog="With --resume, the net options (--net, --hidden, --activation, ...), --optimizer, "
        "--dtype, --batch-size, --seed and --dataset default to the checkpoint's (a different "
        "value is an error), --lr may change, --epochs/--iters count further epochs/iterations, "
        "epoch numbers and histories continue, and the batch RNG, the optimizer's state and "
        "Dropout's random state continue exactly where they stopped.",
    )
    data_args(t, dataset_default="mnist, or the checkpoint's")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=positive(int), metavar="N", help="train N (more) epochs")
    g.add_argument(
        "--iters",
        type=positive(int),
        metavar="N",
        help="train N (more) iterations (default: 10000, the notebook's iters_num)",
    )
    t.add_argument(
        "--batch-size",
        type=positive(int),
        metavar="N",
        help="mini-batch size (default: 100, as the notebook)",
    )
    t.add_argument(
        "--lr",
        type=positive(float),
        metavar="LR",
        help="learning rate (default: 0.1 for sgd, as the notebook; the book's class default for "
        "the other optimizers: 0.01, adam 0.001)",
    )
    t.add_argument("--optimizer", choices=OPTIMIZER_NAMES, help="the book's optimizers (default: sgd)")
    net_args(
        t,
        "hidden units: H for two-layer (default: 100, as the notebook); H1,H2,... for mlp "
        "(default: 100,100,100)",
    )
    t.add_argument("--dtype", choices=("float32", "float64"), help="parameter dtype (default: float64)")
    t.add_argument(
        "--seed",
        type=seed,
        help="seed for the weights, the batches and Dropout's masks (default: random, printed)",
    )
    t.add_argument(
        "--threads", type=int, metavar="N", help="numba threads, 1..NUMBA_NUM_THREADS (--backend numba only)"
    )
    t.add_argument("--save", metavar="FILE.npz", help="write a checkpoint after every epoch (atomically)")
    t.add_argument("--resume", metavar="FILE.npz", help="continue training from a checkpoint")
    t.add_argument("--metrics", metavar="FILE", help="write per-epoch metrics to a .json or .csv file")
    t.add_argument("--plot", metavar="FILE.png", help="write loss/accuracy curves (needs matplotlib)")
    t.add_argument("--quiet", action="store_true", help="no progress bar, no per-epoch lines")

    gc = sub.add_parser(
        "gradcheck",
        help="compare backprop with numerical gradients on real data",
        description="The notebook's gradient check on the first --batch training "
        "samples: numerical vs backprop times and per-parameter differences. Exit "
        "status 1 if a parameter is outside the tolerance. The convnets are checked with the book's "
        f"layers, filter sizes, pads and strides but {GRADCHECK_FILTERS} filters per convolution and "
        f"{GRADCHECK_HIDDEN} hidden units "
        "(the book's have 433,890 and 123,552 parameters, each costing 2 loss evaluations), as the "
        "book's own ch07 gradient check uses a small SimpleConvNet.",
    )
    data_args(gc)
    gc.add_argument(
        "--batch", type=positive(int), default=3, metavar="N", help="first N training samples (default: 3)"
    )
    net_args(
        gc,
        "hidden units: H for two-layer (default: 100), H1,H2,... for mlp (default: 20,20); "
        "the numerical gradient costs 2 loss evaluations per parameter",
    )
    gc.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float64",
        help="parameter dtype (default: float64)",
    )
    gc.add_argument("--seed", type=seed, help="weight seed (default: random, printed)")

    e = sub.add_parser(
        "evaluate",
        help="train/test loss and accuracy of a checkpoint",
        description="Load a checkpoint and print its loss and accuracy on the whole training and test sets.",
    )
    e.add_argument("--model", required=True, metavar="FILE.npz", help="checkpoint written by train --save")
    data_args(e, dataset_default="the checkpoint's")

    sub.add_parser(
        "info",
        help="versions, numba threading, BLAS, CPU",
        description="Print the versions of Python, numpy, numba, scipy, the numba "
        "threading layer and threads, the BLAS in use and the CPU.",
    )

    d = sub.add_parser(
        "download",
        help="download MNIST or Fashion-MNIST (verified by checksum)",
        description="Download the four .gz files into ROOT/MNIST/raw (or "
        "ROOT/FashionMNIST/raw), verifying checksums; exit status 1 if that fails "
        "(e.g. offline).",
    )
    d.add_argument("--dataset", choices=tuple(DATASETS), default="mnist", help="(default: mnist)")
    d.add_argument("--root", required=True, metavar="DIR", help="where to store it (then pass --data DIR)")
    d.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to try instead of the defaults (repeatable)",
    )
    d.add_argument(
        "--timeout",
        type=positive(float),
        default=30.0,
        metavar="SECONDS",
        help="socket timeout (default: 30)",
    )
    return p


def main(argv=None):
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    try:
        return _main(argv)
    except (KeyboardInterrupt, SystemError) as exc:
        if not interrupted(exc):
            raise
        print("scratchprop: interrupted", file=sys.stderr)
        return 130


def interrupted(exc):
    """Whether ``exc`` is a Ctrl-C: a KeyboardInterrupt, or the SystemError a compiled kernel
    returns when the interrupt arrives while it runs ("returned a result with an exception set")."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _main(argv):
    from .checkpoint import CheckpointError
    from .commands import CLIError, one_line
    from .data import DataError

    try:
        args = build_parser().parse_args(argv)
        from . import commands

        return getattr(commands, "cmd_" + args.command)(args)
    except (CLIError, DataError, CheckpointError) as exc:
        print(f"scratchprop: error: {one_line(exc)}", file=sys.stderr)
        return getattr(exc, "code", 2)
    except OSError as exc:  # e.g. writing --metrics / --plot failed
        print(f"scratchprop: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
