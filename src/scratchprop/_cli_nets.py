"""The net flags of the ``scratchprop`` commands: which net they choose, building it, describing it
in one line, and checking them against the checkpoint a run resumes."""

from ._cli_common import N_CLASSES, CLIError

MLP_OPTIONS = ("activation", "weight_init", "weight_decay", "batchnorm", "dropout")
KIND_NET = {
    "TwoLayerNet": "two-layer",
    "MultiLayerNet": "mlp",
    "MultiLayerNetExtend": "mlp",
    "SimpleConvNet": "simple-convnet",
    "DeepConvNet": "deep-convnet",
}
#: ``--net`` -> the convnet class it builds (the nets whose input is images ``(N, 1, H, W)``)
CONV_NETS = {"simple-convnet": "SimpleConvNet", "deep-convnet": "DeepConvNet"}
#: gradcheck's convnets: the book's layers with fewer filters and hidden units (its numerical gradient
#: costs two loss evaluations per parameter, and the book's nets have 433,890 and 123,552 of them)
GRADCHECK_FILTERS = 2
GRADCHECK_HIDDEN = 5


def flag_name(name):
    return "--" + name.replace("_", "-")


def hidden_text(sizes):
    return ",".join(str(h) for h in sizes)


def net_choice(args):
    """``--net``, or mlp when an mlp option is given; checks the options fit the net."""
    given = [name for name in MLP_OPTIONS if getattr(args, name) is not None]
    if args.net == "two-layer" and given:
        raise CLIError(f"{flag_name(given[0])} applies to --net mlp, not to the two-layer net")
    if args.net in CONV_NETS:
        if args.hidden is not None:
            raise CLIError(f"--hidden applies to --net two-layer and mlp, not to the {args.net} net")
        if given:
            raise CLIError(f"{flag_name(given[0])} applies to --net mlp, not to the {args.net} net")
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


def narrow_conv_config(net):
    """gradcheck's convnet for ``--net`` ``net``: the book's constructor arguments with
    :data:`GRADCHECK_FILTERS` filters in every convolution and :data:`GRADCHECK_HIDDEN` hidden units
    (the layers, filter sizes, pads and strides stay the book's)."""
    import inspect

    from . import convnet

    params = inspect.signature(getattr(convnet, CONV_NETS[net])).parameters
    cfg = {
        name: {**p.default, "filter_num": GRADCHECK_FILTERS}
        for name, p in params.items()
        if name.startswith("conv_param")
    }
    return {**cfg, "hidden_size": GRADCHECK_HIDDEN}


def build_net(args, input_shape, seed, default_hidden, narrow=False):
    """The net the flags describe (new, seeded), for samples of ``input_shape``: ``(D,)``, or
    ``(C, H, W)`` for a convnet (``narrow``: gradcheck's smaller one, :func:`narrow_conv_config`)."""
    dtype = getattr(args, "dtype", None) or "float64"
    kind = net_choice(args)
    if kind in CONV_NETS:
        from . import convnet

        cfg = {"input_dim": tuple(input_shape), **(narrow_conv_config(kind) if narrow else {})}
        try:
            return getattr(convnet, CONV_NETS[kind])(**cfg, backend=args.backend, dtype=dtype, seed=seed)
        except (TypeError, ValueError) as exc:
            raise CLIError(str(exc)) from None
    (D,) = input_shape
    if kind == "two-layer":
        from .net import TwoLayerNet

        H = args.hidden[0] if args.hidden else default_hidden[0]
        return TwoLayerNet(D, H, N_CLASSES, backend=args.backend, dtype=dtype, seed=seed)
    from . import multilayer

    kind, cfg = mlp_config(args, D, default_hidden)
    try:
        return getattr(multilayer, kind)(**cfg, backend=args.backend, dtype=dtype, seed=seed)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def _init_text(init):
    return f"init {init}" if isinstance(init, str) else f"init std {init:g}"


def _joined(values):
    """``3`` when every value is 3, else ``3-3-5``."""
    values = [str(v) for v in values]
    return values[0] if len(set(values)) == 1 else "-".join(values)


def describe_conv(kind, cfg):
    """``SimpleConvNet 1x28x28 (conv 30 5x5, pad 0, stride 1, pool 2x2, hidden 100, 10 outputs, init
    std 0.01)``: a convnet's ``config()`` in one line."""
    convs = [cfg["conv_param"]] if kind == "SimpleConvNet" else [cfg[f"conv_param_{i}"] for i in range(1, 7)]
    shape = "x".join(str(n) for n in cfg["input_dim"])
    size = _joined(p["filter_size"] for p in convs)
    parts = [
        f"conv {'-'.join(str(p['filter_num']) for p in convs)} {size}x{size}",
        f"pad {_joined(p['pad'] for p in convs)}",
        f"stride {_joined(p['stride'] for p in convs)}",
        "pool 2x2",
        f"hidden {cfg['hidden_size']}",
        f"{cfg['output_size']} outputs",
    ]
    if kind == "SimpleConvNet":
        parts.append(_init_text(cfg["weight_init_std"]))
    else:
        parts += ["init he", "dropout 0.5"]
    return f"{kind} {shape} ({', '.join(parts)})"


def describe(net):
    """``TwoLayerNet 784-100-10``, ``MultiLayerNetExtend 784-100-100-10 (relu, init relu, ...)`` or a
    convnet's :func:`describe_conv`."""
    from .checkpoint import CONV_KINDS, net_kind

    kind = net_kind(net)
    if kind == "TwoLayerNet":
        return f"{kind} {'-'.join(str(n) for n in net.sizes)}"
    if kind in CONV_KINDS:
        return describe_conv(kind, net.config())
    cfg = net.config()
    sizes = [cfg["input_size"], *cfg["hidden_size_list"], cfg["output_size"]]
    parts = [cfg["activation"], _init_text(cfg["weight_init_std"])]
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
    if kind in CONV_NETS.values():
        given = [name for name in ("hidden", *MLP_OPTIONS) if getattr(args, name) is not None]
        if given:
            raise CLIError(f"{flag_name(given[0])} does not apply to {where} (a {label} net)")
        return
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


def check_fits_data(path, ckpt, x, dataset):
    """The checkpoint's net takes ``x``'s samples (``(N, D)`` rows, or ``(N, 1, H, W)`` images for a
    convnet) and has one output per class (one line naming ``path`` otherwise)."""
    sizes = ckpt.sizes
    if ckpt.kind in CONV_NETS.values():
        shape = "x".join(str(n) for n in ckpt.input_shape)
        if (ckpt.input_shape, sizes[-1]) != (x.shape[1:], N_CLASSES):
            raise CLIError(
                f"checkpoint {path} is a {ckpt.kind} for {shape} images and {sizes[-1]} classes but the "
                f"{dataset} data has {'x'.join(str(n) for n in x.shape[1:])} images and {N_CLASSES} classes"
            )
    elif (sizes[0], sizes[-1]) != (x.shape[1], N_CLASSES):
        raise CLIError(
            f"checkpoint {path} is a {'-'.join(str(n) for n in sizes)} net but the {dataset} data "
            f"has {x.shape[1]} features and {N_CLASSES} classes"
        )
