"""The optimizer and random-number helpers of :func:`scratchprop.train.train`: building (or
continuing) the run's optimizer, run seeds and the global ``np.random`` state Dropout draws from."""

import numpy as np


def new_seed():
    """A fresh random seed (a 32-bit int, short enough to print and reuse)."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def seed_global_random(seed):
    """Seed the global ``np.random`` (Dropout's masks) from a run seed (any integer >= 0)."""
    np.random.seed(np.random.SeedSequence(int(seed), spawn_key=(1,)).generate_state(4))


def _global_random_meta():
    """``np.random.get_state()`` as JSON: ``[name, key list, pos, has_gauss, cached_gaussian]``."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return [name, [int(k) for k in key], int(pos), int(has_gauss), float(gauss)]


def _global_random_state(meta):
    name, key, pos, has_gauss, gauss = meta
    return (name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss)


def _draws_from_global_random(net):
    """Whether ``net`` has layers that draw from ``np.random`` in training (Dropout)."""
    layers = getattr(net, "layers", None) or {}
    return any(
        "Dropout" in type(layer).__name__ or hasattr(layer, "dropout_ratio") for layer in layers.values()
    )


def optimizer_name(optimizer):
    """The name an optimizer (object or class) is saved under: ``"adam"`` for any ``Adam`` class of
    :data:`scratchprop.optimizers.OPTIMIZERS`' names, else the class name."""
    from .optimizers import OPTIMIZERS

    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    return cls.__name__.lower() if cls.__name__.lower() in OPTIMIZERS else cls.__name__


def _optimizer_class(net, name):
    from . import optimizers

    ref = optimizers.OPTIMIZERS.get(str(name).lower())
    if ref is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers.OPTIMIZERS)}")
    cls = getattr(getattr(net, "backend", None), ref.__name__, None)
    return cls if isinstance(cls, type) and callable(getattr(cls, "update", None)) else ref


def _hyper(lr, optimizer_param, where="train"):
    params = dict(optimizer_param or {})
    if lr is not None:
        if "lr" in params and params["lr"] != lr:
            raise ValueError(f"{where}: lr={lr!r} and optimizer_param lr={params['lr']!r} disagree")
        params["lr"] = lr
    return params


def make_optimizer(net, optimizer=None, optimizer_param=None, lr=None):
    """The optimizer :func:`train` uses for ``net``.

    ``optimizer``: None (SGD), a name of :data:`scratchprop.optimizers.OPTIMIZERS`
    (case-insensitive; the class comes from the net's backend, e.g.
    ``scratchprop.numba.Adam``, falling back to the reference), an optimizer
    class, or an object with ``update(params, grads)`` (returned as it is).
    ``optimizer_param`` and ``lr`` go to the constructor; without either, SGD
    gets the notebook's ``lr`` 0.1 and the others their own (the book's) defaults.
    """
    params = _hyper(lr, optimizer_param)
    if optimizer is not None and not isinstance(optimizer, (str, type)):
        if not callable(getattr(optimizer, "update", None)):
            raise TypeError(
                f"train: optimizer must be a name, an optimizer class or an object with an "
                f"update(params, grads) method; got {type(optimizer).__name__}"
            )
        if params:
            raise ValueError(
                f"train: {sorted(params)} given with an optimizer object; set them on the object"
            )
        return optimizer
    cls = optimizer if isinstance(optimizer, type) else _optimizer_class(net, optimizer or "sgd")
    if optimizer_name(cls) == "sgd" and "lr" not in params:
        params["lr"] = 0.1  # the notebook's learning_rate
    return cls(**params)


def _optimizer_for(net, state, optimizer, optimizer_param, lr):
    """The run's optimizer: built (or taken) as :func:`make_optimizer` does, continuing ``state``'s."""
    if optimizer is not None and not isinstance(optimizer, (str, type)):
        opt = make_optimizer(net, optimizer, optimizer_param, lr)
    else:
        name = optimizer_name(optimizer) if isinstance(optimizer, type) else optimizer
        saved = state.optimizer
        if name is not None and saved is not None and str(name).lower() != saved.lower():
            raise ValueError(f"train: the state was made with optimizer {saved!r}; got {name!r}")
        if state.optimizer_state is None:
            opt = make_optimizer(net, optimizer if optimizer is not None else saved, optimizer_param, lr)
        else:
            cls = optimizer if isinstance(optimizer, type) else _optimizer_class(net, name or saved or "sgd")
            opt = cls()
            try:
                opt.load_state_dict({**state.optimizer_state, **_hyper(lr, optimizer_param)})
            except (ValueError, TypeError) as exc:
                raise ValueError(f"train: the state's optimizer state does not fit: {exc}") from None
    name = optimizer_name(opt)
    if state.optimizer is not None and name.lower() != state.optimizer.lower():
        raise ValueError(f"train: the state was made with optimizer {state.optimizer!r}; got {name!r}")
    return opt
