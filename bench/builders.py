"""How each benchmark case is built, warmed up and timed (the table is ``cases.py``)."""

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np

from . import _env
from .cases import LR, PARAMS, inputs

# --------------------------------------------------------------------------- builders


@dataclass
class Built:
    fn: object  # what is timed
    warmup: object = None  # called before timing (JIT compile); default fn
    n_warmup: int = 1
    setup: object = None  # pedantic setup (per round), e.g. a fresh cache dir
    check: object = None  # called with fn's result afterwards (not timed)
    info: dict = field(default_factory=dict)
    cleanup: object = None
    rounds: int = None  # overrides case.rounds (decided at build time)


def _finite_loss(loss):
    assert np.isfinite(float(loss)), f"train step returned loss {loss!r}"


def _scratch_net(case, sizes=None):
    import scratchprop

    if case.backend == "numba":
        _env.numba_backend()  # skip cleanly while scratchprop.numba does not exist
    return scratchprop.TwoLayerNet(
        *(sizes or case.sizes), backend=case.backend, dtype=np.dtype(case.dtype), seed=0
    )


def _book_net(case, sizes=None):
    from .booknet import book_net

    return book_net(
        _env.backend_module(case.backend), *(sizes or case.sizes), dtype=np.dtype(case.dtype), seed=0
    )


def build_layer(case):
    """One layer's forward or backward, built from its entry in ``scratchprop.layer_table``."""
    from scratchprop.layer_table import spec

    M = _env.backend_module(case.backend)
    dt, N = np.dtype(case.dtype), case.batch
    layer_name, pass_ = case.case.split(".")
    s = spec(layer_name)
    shape = s.bench_shape(N)
    rng = np.random.default_rng(0)
    layer = s.make(M, rng, dt, shape)
    args = s.inputs(rng, dt, shape)
    mode = s.modes[0]  # training mode, where a layer has two
    fwd = lambda: layer.forward(*args, **mode)  # noqa: E731
    info = {"shape": "x".join(map(str, shape))}
    if pass_ == "forward":
        return Built(fwd, info=info)
    out = fwd()
    dout = 1 if s.loss else rng.standard_normal(np.shape(out)).astype(dt)
    return Built(lambda: layer.backward(dout), info=info)


def _torch_params(case, sizes=None):
    torch = _env.torch()
    D, H, C = sizes or case.sizes
    tdt = getattr(torch, case.dtype)
    g = torch.Generator().manual_seed(0)
    params = [
        (0.01 * torch.randn(D, H, generator=g, dtype=tdt)).requires_grad_(),
        torch.zeros(H, dtype=tdt, requires_grad=True),
        (0.01 * torch.randn(H, C, generator=g, dtype=tdt)).requires_grad_(),
        torch.zeros(C, dtype=tdt, requires_grad=True),
    ]
    return torch, params


def _torch_step(case):
    """PyTorch CPU eager: the same net as plain tensors + autograd + SGD (what nn.Linear does)."""
    torch, (W1, b1, W2, b2) = _torch_params(case)
    F = torch.nn.functional
    x_np, t_np = inputs(case.batch, case.dtype, case.sizes[0], case.sizes[2])
    x, t = torch.from_numpy(x_np.copy()), torch.from_numpy(t_np.copy())
    params = (W1, b1, W2, b2)

    def step():
        h = torch.relu(torch.addmm(b1, x, W1))
        loss = F.cross_entropy(torch.addmm(b2, h, W2), t)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss.item()

    return step


@functools.cache
def _kernels_five_products():
    """An ``@njit`` function running the five products as the fused step's kernel does: through
    the kernels' own BLAS calls, with ``mode`` ``HERE`` on the calling thread (``kernels/gemm.py``),
    or with the first layer's paired (``kernels/pair.py``, through ``fn``)."""
    import numpy as np
    from numba import njit

    from scratchprop.kernels._blas import gemm
    from scratchprop.kernels.gemm import product
    from scratchprop.kernels.pair import HERE, PAIR, PAIR_FORWARD, paired_product, split_product

    @njit(nogil=True)
    def five(x, W1, h, W2, dy, dh, a1, a2, dW2, dh_out, dW1, mode, fn):
        one, zero = x.dtype.type(1), x.dtype.type(0)
        if mode == HERE:
            D, H = W1.shape
            product(x, D, 1, W1, a1, one, False)
            product(h, H, 1, W2, a2, one, False)
            product(h, 1, H, dy, dW2, one, False)
            product(dy, W2.shape[1], 1, np.ascontiguousarray(W2.T), dh_out, one, False)
            product(x, 1, D, dh, dW1, one, False)
            return
        D = W1.shape[0]
        if mode == PAIR:
            split_product(x, W1, a1, False, dh_out, fn)  # dh_out: free until its own product
        elif mode == PAIR_FORWARD:
            paired_product(x, D, 1, W1, a1, 1.0, False, fn)
        else:
            gemm(False, False, one, x, W1, zero, a1)
        gemm(False, False, one, h, W2, zero, a2)
        gemm(True, False, one, h, dy, zero, dW2)
        gemm(False, True, one, dy, W2, zero, dh_out)
        if mode == PAIR:
            paired_product(x, 1, D, dh, dW1, 1.0, False, fn)
        else:
            gemm(True, False, one, x, dh, zero, dW1)

    return five


def _gemm_floor(case):
    """The step's five essential products into preallocated outputs.

    ``backend="blas"``: through NumPy's BLAS (the reference's floor);
    ``backend="kernels"``: as the fused step's kernel runs them (NumPy's BLAS,
    see ``scratchprop.kernels._blas``, or small ones on the calling thread,
    ``kernels/gemm.py``), from one ``@njit`` call (the numba backend's floor).
    """
    dt, N = np.dtype(case.dtype), case.batch
    D, H, C = case.sizes
    rng = np.random.default_rng(0)
    x, _ = inputs(N, dt.name, D, C)
    W1, W2 = rng.standard_normal((D, H)).astype(dt), rng.standard_normal((H, C)).astype(dt)
    h, dh = rng.standard_normal((N, H)).astype(dt), rng.standard_normal((N, H)).astype(dt)
    dy = rng.standard_normal((N, C)).astype(dt)
    a1, a2, dW2, dh_out, dW1 = (np.empty(s, dt) for s in ((N, H), (N, C), (H, C), (N, H), (D, H)))
    mm = np.matmul
    if case.backend == "kernels":
        from scratchprop._numba_layers import product_mode
        from scratchprop.kernels.pair import share_address

        five = _kernels_five_products()
        args = (x, W1, h, W2, dy, dh, a1, a2, dW2, dh_out, dW1, product_mode(N, D, H, dt), share_address(dt))
        return lambda: five(*args)

    def floor():
        mm(x, W1, out=a1)  # forward, layer 1
        mm(h, W2, out=a2)  # forward, layer 2
        mm(h.T, dy, out=dW2)  # dW2
        mm(dy, W2.T, out=dh_out)  # dx of layer 2
        mm(x.T, dh, out=dW1)  # dW1

    return floor


def build_train_step(case):
    D, H, C = case.sizes
    if case.api == "gemm":
        info = {"products": "x@W1, h@W2, h.T@dy, dy@W2.T, x.T@dh"}
        if case.backend == "kernels":
            from scratchprop import threads

            info["blas"] = threads.describe()
        return Built(_gemm_floor(case), info=info)
    if case.api == "torch":
        return Built(_torch_step(case), check=_finite_loss, info={"peer": "torch eager autograd, addmm"})
    x, t = inputs(case.batch, case.dtype, D, C)
    x0, t0 = x.copy(), t.copy()

    def check(loss):
        _finite_loss(loss)
        assert np.array_equal(x, x0) and np.array_equal(t, t0), "the train step modified its inputs"

    if case.api == "TwoLayerNet":
        net = _scratch_net(case)
        return Built(lambda: net.train_step(x, t, LR), check=check)
    net = _book_net(case)

    def step():  # the notebook's train_neuralnet.py loop body (minus its extra loss call)
        grad = net.gradient(x, t)
        for key in ("W1", "b1", "W2", "b2"):
            net.params[key] -= LR * grad[key]
        return net.lastLayer.loss

    return Built(step, check=check)


def build_inference(case):
    D, H, C = case.sizes
    x, t = inputs(case.batch, case.dtype, D, C)
    if case.api == "torch":
        torch, (W1, b1, W2, b2) = _torch_params(case)
        tx, tt = torch.from_numpy(x.copy()), torch.from_numpy(t.copy())

        def accuracy():
            with torch.no_grad():
                y = torch.addmm(b2, torch.relu(torch.addmm(b1, tx, W1)), W2)
                return (y.argmax(dim=1) == tt).sum().item() / tx.shape[0]

        return Built(accuracy, info={"peer": "torch eager, no_grad"})
    net = _scratch_net(case) if case.api == "TwoLayerNet" else _book_net(case)
    return Built(
        lambda: net.accuracy(x, t),
        info={"data": "bundled MNIST, tiled" if case.batch > 10000 else "bundled MNIST"},
    )


def build_gradcheck(case):
    D, H, C = case.sizes
    x, t = inputs(case.batch, case.dtype, D, C)
    make = _scratch_net if case.api == "TwoLayerNet" else _book_net
    net = make(case)
    info, rounds = {}, None
    if case.backend == "numba" and case.api == "TwoLayerNet":
        info["fast_path"] = hasattr(_env.numba_backend(), "net_numerical_gradient")
        if not info["fast_path"]:
            rounds = 1  # the generic per-element loop is as slow as NumPy's: one round
    if case.case == "gradient":
        return Built(lambda: net.gradient(x, t), info=info)

    # warm up (JIT) on a tiny net of the same dtype; NumPy needs none
    if case.backend == "numba":
        tiny = make(case, (6, 5, 3))
        tx, tt = inputs(2, case.dtype, 6, 3)

        def warmup():
            tiny.numerical_gradient(tx, tt)
            tiny.gradient(tx, tt)
    else:
        warmup = None

    def check(numerical):
        backprop = net.gradient(x, t)
        diff = {k: float(np.max(np.abs(np.asarray(numerical[k]) - np.asarray(backprop[k])))) for k in PARAMS}
        info["max_abs_diff"] = max(diff.values())
        info["mean_abs_diff"] = {
            k: float(np.mean(np.abs(np.asarray(numerical[k]) - np.asarray(backprop[k])))) for k in PARAMS
        }
        info["parameters"] = int(sum(np.size(net.params[k]) for k in PARAMS))

    return Built(
        lambda: net.numerical_gradient(x, t),
        warmup=warmup,
        n_warmup=1 if warmup else 0,
        check=check,
        info=info,
        rounds=rounds,
    )


_COMPILE_SCRIPT = textwrap.dedent("""
    import json, time
    t0 = time.perf_counter()
    import numpy as np
    import scratchprop
    net = scratchprop.TwoLayerNet({D}, {H}, {C}, backend={backend!r}, dtype=np.{dtype}, seed=0)
    t1 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.random(({N}, {D})).astype(np.{dtype})
    t = np.arange({N}) % {C}
    loss = net.train_step(x, t, {lr})
    t2 = time.perf_counter()
    print(json.dumps({{"import_s": t1 - t0, "first_step_s": t2 - t1, "loss": float(loss)}}))
""")


def build_compile(case):
    if case.backend == "numba":
        _env.numba_backend()
    D, H, C = case.sizes
    code = _COMPILE_SCRIPT.format(D=D, H=H, C=C, N=case.batch, backend=case.backend, dtype=case.dtype, lr=LR)
    root = tempfile.mkdtemp(prefix="scratchprop-bench-numba-cache-")
    info = {
        "command": "python -c <import scratchprop; TwoLayerNet(...); first train_step>",
        "timed": "whole subprocess wall time (interpreter start, imports, JIT, first step)",
    }
    counter = iter(range(10**6))

    def fresh_dir():
        d = os.path.join(root, f"cache{next(counter)}")
        os.makedirs(d)
        return (d,), {}

    shared = fresh_dir()[0][0]

    def run_python(cache_dir):
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"subprocess failed ({out.returncode}):\n{out.stderr[-4000:]}")
        inner = json.loads(out.stdout.strip().splitlines()[-1])
        info.update(inner)
        info["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
        return inner

    cleanup = functools.partial(shutil.rmtree, root, ignore_errors=True)
    if case.case == "cold_cache":  # a fresh, empty cache dir every round; nothing warmed
        return Built(run_python, setup=fresh_dir, n_warmup=0, info=info, cleanup=cleanup)
    # warm_cache / no_jit: one untimed run fills the cache, then every round reuses it
    return Built(lambda: run_python(shared), info=info, cleanup=cleanup)


BUILDERS = {
    "layers": build_layer,
    "train_step": build_train_step,
    "inference": build_inference,
    "gradcheck": build_gradcheck,
    "compile": build_compile,
    "threads": build_train_step,
    "chapter6": lambda case: _chapter6().build_chapter6(case),
    "convnets": lambda case: _convnets().build_convnets(case),
}


def _convnets():
    from . import convnets  # imports this module: loaded on first use

    return convnets


def _chapter6():
    from . import chapter6  # imports this module: loaded on first use

    return chapter6


# --------------------------------------------------------------------------- runner

#: Seconds of rest before each case is timed: OpenBLAS's idle workers spin for ~0.1 s after
#: a threaded product, and the case timed next would share the cores with them (see
#: bench/README.md). ``test_scenarios.py`` times what users do instead: pauses and NumPy work.
SETTLE_S = 0.25


def run(benchmark, case):
    """Build ``case``, warm it up (JIT) untimed, time it, record its identity in extra_info."""
    if case.backend == "numba":
        _env.numba_backend()
    if case.backend == "torch":
        _env.torch()
    benchmark.group = case.bench_group
    threads = (
        _env.limit_threads(case.threads, torch_too=case.backend == "torch")
        if case.threads
        else contextlib.nullcontext()
    )
    with threads:
        built = BUILDERS[case.group](case)
        try:
            warm = built.warmup or built.fn
            for _ in range(built.n_warmup):
                warm()
            benchmark.extra_info.update(case.info())
            benchmark.extra_info.update(_env.thread_info())
            if not _env.SMOKE:  # let the last case's idle BLAS workers stop spinning (see SETTLE_S)
                time.sleep(SETTLE_S)
            rounds = case.rounds if built.rounds is None else built.rounds
            if rounds:
                benchmark.extra_info.update(rounds=rounds, timing=f"pedantic rounds={rounds}")
                if built.setup is not None:
                    result = benchmark.pedantic(built.fn, setup=built.setup, rounds=rounds)
                else:
                    result = benchmark.pedantic(built.fn, rounds=rounds, iterations=1)
            else:
                result = benchmark(built.fn)
            if built.check is not None:
                built.check(result)
            benchmark.extra_info.update(built.info)
        finally:
            if built.cleanup is not None:
                built.cleanup()
    return result
