"""The validators behind :func:`scratchprop.checkpoint.load_checkpoint`: parameters' keys, shapes
and dtypes, BatchNorm running statistics and the optimizer's state; each raises ``bad(why)``."""

import numpy as np

from .checkpoint import _DTYPES, OPT_PREFIX, PARAM_KEYS, RUNNING, _batchnorm_layers, _net_class, config_sizes


def _check_dtypes(bad, params):
    for k, a in params.items():
        if a.dtype.name not in _DTYPES:
            raise bad(f"{k} has dtype {a.dtype}; expected float32 or float64")
    if len({a.dtype for a in params.values()}) != 1:
        raise bad("parameters have mixed dtypes: " + ", ".join(f"{k} {a.dtype}" for k, a in params.items()))


def _check_two_layer(bad, arrays, meta):
    missing = [k for k in PARAM_KEYS if k not in arrays]
    if missing:
        raise bad(
            f"not a scratchprop checkpoint: missing {', '.join(missing)} (has {', '.join(arrays) or 'nothing'})"
        )
    extra = [k for k in arrays if k not in PARAM_KEYS]
    if extra:
        raise bad(f"unexpected member {extra[0]!r} for a TwoLayerNet")
    params = {k: arrays[k] for k in PARAM_KEYS}
    _check_dtypes(bad, params)
    W1, b1, W2, b2 = (params[k] for k in PARAM_KEYS)
    if W1.ndim != 2 or W2.ndim != 2 or b1.ndim != 1 or b2.ndim != 1:
        raise bad(
            "parameters must be W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); got "
            + ", ".join(f"{k} {a.shape}" for k, a in params.items())
        )
    D, H = W1.shape
    C = W2.shape[1]
    if b1.shape != (H,) or W2.shape[0] != H or b2.shape != (C,) or min(D, H, C) < 1:
        raise bad(
            "inconsistent parameter shapes: "
            + ", ".join(f"{k} {a.shape}" for k, a in params.items())
            + "; expected W1 (D, H), b1 (H,), W2 (H, C), b2 (C,)"
        )
    if list(meta.get("sizes", [D, H, C])) != [D, H, C]:
        raise bad(f"metadata sizes {meta.get('sizes')} disagree with the parameters ({D}, {H}, {C})")
    return params


def _check_layer_net(bad, kind, arrays, meta):
    config = meta.get("config")
    if not isinstance(config, dict):
        raise bad(f"a {kind} checkpoint needs its config in the metadata, got {config!r}")
    dtype = next((a.dtype for a in arrays.values() if a.dtype.name in _DTYPES), np.dtype(np.float64))
    try:  # the constructor checks the config and gives the parameters' keys and shapes
        net = _net_class(kind)(**config, backend="numpy", dtype=dtype, seed=0)
    except (TypeError, ValueError) as exc:
        raise bad(f"bad {kind} config ({exc})") from None
    expected = {k: v.shape for k, v in net.params.items()}
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise bad(f"{kind} parameters missing: {', '.join(missing)}")
    extra = [k for k in arrays if k not in expected]
    if extra:
        raise bad(f"unexpected member {extra[0]!r} for this {kind}")
    params = {k: arrays[k] for k in expected}
    _check_dtypes(bad, params)
    wrong = [
        f"{k} {params[k].shape} (expected {shape})"
        for k, shape in expected.items()
        if params[k].shape != shape
    ]
    if wrong:
        raise bad("inconsistent parameter shapes for the config: " + ", ".join(wrong))
    sizes = config_sizes(kind, config)
    if list(meta.get("sizes", sizes)) != sizes:
        raise bad(f"metadata sizes {meta.get('sizes')} disagree with the config ({sizes})")
    return params, net


def _check_running(bad, arrays, net, dtype):
    layers = _batchnorm_layers(net) if net is not None else {}
    out = {}
    for key in arrays:
        stat, _, name = key.partition("/")
        if name not in layers:
            raise bad(f"unexpected member {key!r}: the net has no BatchNorm layer {name!r}")
    for name, layer in layers.items():
        have = [f"{stat}/{name}" in arrays for stat in RUNNING]
        if not any(have):
            continue
        if not all(have):
            raise bad(f"{name} has one running statistic without the other")
        D = layer.gamma.size
        pair = tuple(arrays[f"{stat}/{name}"] for stat in RUNNING)
        for stat, a in zip(RUNNING, pair):
            if a.dtype.name not in _DTYPES or a.shape != (D,):
                raise bad(
                    f"{stat}/{name} must be float32 or float64 of shape ({D},), got {a.dtype} {a.shape}"
                )
        out[name] = pair
    return out


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_optimizer(bad, meta, arrays, params):
    from . import optimizers

    name = meta.get("optimizer")
    numbers = meta.get("optimizer_state")
    if name is None:
        if arrays or numbers is not None:
            raise bad("optimizer state without the optimizer's name")
        return None
    if not isinstance(name, str) or not name:
        raise bad(f"optimizer must be a name, got {name!r}")
    if numbers is None:
        numbers = {}
    if not isinstance(numbers, dict) or not all(_number(v) for v in numbers.values()):
        raise bad(f"optimizer_state must map names to numbers, got {numbers!r}")
    for key, a in arrays.items():
        slot, _, param = key.partition("/")
        if not slot or param not in params:
            raise bad(f"optimizer state {OPT_PREFIX}{key}: {param!r} is not a parameter")
        if a.dtype.kind != "f" or a.shape != params[param].shape:
            raise bad(
                f"optimizer state {OPT_PREFIX}{key} must be a float array of {param}'s shape "
                f"{params[param].shape}, got {a.dtype} {a.shape}"
            )
    state = {**numbers, **arrays}
    cls = optimizers.OPTIMIZERS.get(name.lower())
    if cls is None:  # someone's own optimizer: its state is its business
        return state
    try:
        cls().load_state_dict(state)
    except (ValueError, TypeError) as exc:
        raise bad(f"optimizer state does not fit {name} ({exc})") from None
    for slot in cls._slots:
        have = {key.partition("/")[2] for key in arrays if key.partition("/")[0] == slot}
        if have and have != set(params):
            raise bad(f"optimizer state {slot} covers {sorted(have)}, not every parameter {sorted(params)}")
        if not have and meta.get("iteration", 0):
            raise bad(f"optimizer {name} after {meta.get('iteration')} iterations lacks its {slot} arrays")
    return state
