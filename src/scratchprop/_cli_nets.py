"""The net flags of the ``scratchprop`` commands: which net they choose, building it, describing it
in one line, and checking them against the checkpoint a run resumes."""

from ._cli_common import N_CLASSES, CLIError

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
