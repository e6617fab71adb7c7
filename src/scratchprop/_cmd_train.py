"""``scratchprop train`` (:func:`cmd_train`): a new net from the flags or a resumed checkpoint,
trained with a progress bar, per-epoch checkpoints, a metrics file and a plot."""

import sys

from ._cli_common import CLIError, check_output, load_data, setup_backend, warm_up
from ._cli_nets import CONV_NETS, build_net, check_fits_data, check_resume_net, describe, net_choice
from .checkpoint import CONV_KINDS, CheckpointError
from .cli import OPTIMIZER_NAMES


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
    if ckpt:
        images = ckpt.kind in CONV_KINDS
    else:
        images = net_choice(args) in CONV_NETS  # the options fit the net: before the data is read
    (x_train, t_train), (x_test, t_test) = load_data(args.data, dataset, images=images)
    if ckpt:
        check_resume_net(args, ckpt)
        check_fits_data(args.resume, ckpt, x_train, dataset)
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
        default_hidden = [100, 100, 100] if net_choice(args) == "mlp" else [100]
        net = build_net(args, x_train.shape[1:], seed, default_hidden=default_hidden)
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
