"""The ``scratchprop`` commands behind :mod:`scratchprop.cli` (one ``cmd_*`` per sub-command).

Each takes the parsed arguments and returns the exit status; user errors are
raised as :class:`CLIError` (or ``DataError`` / ``CheckpointError``) and
printed by :func:`scratchprop.cli.main` as one line. ``cmd_train`` lives in
``_cmd_train``, the shared helpers in ``_cli_common`` and the net flags in
``_cli_nets``; all are importable from here.
"""

import sys

from ._cli_common import (
    N_CLASSES,
    CLIError,
    check_output,
    deferred_interrupt,
    load_data,
    one_line,
    setup_backend,
    warm_up,
)
from ._cli_nets import (
    CONV_NETS,
    KIND_NET,
    MLP_OPTIONS,
    build_net,
    check_fits_data,
    check_resume_net,
    describe,
    flag_name,
    hidden_text,
    mlp_config,
    narrow_conv_config,
    net_choice,
)
from ._cmd_train import cmd_train

__all__ = [
    "cmd_train",
    "cmd_gradcheck",
    "cmd_evaluate",
    "cmd_info",
    "cmd_download",
    "CLIError",
    "one_line",
    "deferred_interrupt",
    "warm_up",
    "setup_backend",
    "load_data",
    "check_output",
    "N_CLASSES",
    "MLP_OPTIONS",
    "KIND_NET",
    "CONV_NETS",
    "flag_name",
    "hidden_text",
    "net_choice",
    "mlp_config",
    "narrow_conv_config",
    "build_net",
    "describe",
    "check_resume_net",
    "check_fits_data",
]


def cmd_gradcheck(args):
    from ._gradcheck import gradcheck

    setup_backend(args.backend)
    kind = net_choice(args)
    dataset = args.dataset or "mnist"
    (x_train, t_train), _ = load_data(args.data, dataset, images=kind in CONV_NETS)
    if args.batch > len(x_train):
        raise CLIError(f"--batch {args.batch} exceeds the {len(x_train)} training samples")
    from .train import new_seed, seed_global_random

    seed = args.seed if args.seed is not None else new_seed()  # printed: a failure can be rerun
    default_hidden = [20, 20] if kind == "mlp" else [100]
    net = build_net(args, x_train.shape[1:], seed, default_hidden=default_hidden, narrow=True)
    if kind != "two-layer":
        seed_global_random(seed)  # Dropout's masks
    x = x_train[: args.batch].astype(net.dtype)
    print(
        f"gradient check: {describe(net)}, first {args.batch} "
        f"{dataset} training samples, backend {net.backend_name}, {net.dtype}, seed {seed}",
        flush=True,
    )
    # a JIT backend's first call loads or compiles its kernels: time the second (the NumPy
    # reference's numerical gradient takes seconds, and has nothing to warm up). A chapter-6 to 8
    # net's numerical gradient runs its layers per entry (no fused kernel): a tiny net warms them up.
    twice = net.backend_name != "numpy" and kind == "two-layer"
    if kind != "two-layer":
        warm_up(net)
    report = gradcheck(net, x, t_train[: args.batch], warmup=twice, seed=seed)
    print(report)
    return 0 if report.passed else 1


def cmd_evaluate(args):
    from .checkpoint import CONV_KINDS, load_checkpoint
    from .train import evaluate

    ckpt = load_checkpoint(args.model)
    setup_backend(args.backend)
    meta = ckpt.meta
    dataset = args.dataset or meta.get("dataset") or "mnist"
    images = ckpt.kind in CONV_KINDS
    (x_train, t_train), (x_test, t_test) = load_data(args.data, dataset, images=images)
    check_fits_data(args.model, ckpt, x_train, dataset)
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
