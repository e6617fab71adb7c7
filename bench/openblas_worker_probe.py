#!/usr/bin/env python
"""Probe: half of Adam's update on OpenBLAS's own worker thread, the pool NumPy already has.

``python bench/openblas_worker_probe.py`` (needs NumPy's bundled OpenBLAS). NumPy's OpenBLAS
exports ``gotoblas_pthread(n, function, args, stride)``: it runs ``function(args + i * stride)``
on the calling thread and ``n - 1`` of its own workers, which spin for ~0.1 s after each BLAS
call. Here ``function`` is a Numba ``cfunc`` that updates its half of every parameter of
``MultiLayerNetExtend`` 784-[100]x5-10 (the Numba Adam kernel's formula, on the raw addresses).
Prints whether the bits equal the Numba ``Adam``'s after three steps, what an empty region costs
right after a BLAS call and after a 0.3 s pause, and, interleaved in one process, the training
step (batch 100) and the update alone with the update on one thread or split across the two.
"one" is the library's Adam with its own split (``kernels/optim.py``, stop 40) turned off; this
probe's ``cfunc`` loop over raw pointers is slower per element than the library's kernel.
Results and what they mean: ``bench/THREADS.md``.
"""

import ctypes
import time

import numpy as np
from numba import carray, cfunc, types
from numba.extending import intrinsic

import scratchprop
from scratchprop import numba as NB
from scratchprop.kernels import _blas

lib = ctypes.CDLL(_blas.PATH)
gp = lib.gotoblas_pthread
gp.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
gp.restype = ctypes.c_int


@intrinsic
def f64_at(typingctx, addr):
    sig = types.CPointer(types.float64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


REC = 128  # int64 slots per thread record; [0] params, [1] share, [2] address of 3 floats, then 5 per param


@cfunc(types.void(types.voidptr), nopython=True, error_model="numpy")
def adam_share(arg):
    rec = carray(arg, (REC * 8,), dtype=np.int64)
    P = rec[0]
    share = rec[1]
    hp = carray(f64_at(rec[2]), (3,))
    lr_t, b1, b2 = hp[0], hp[1], hp[2]
    c1 = 1 - b1
    c2 = 1 - b2
    for k in range(P):
        n = rec[3 + 5 * k + 4]
        lo = 0 if share == 0 else n // 2
        hi = n // 2 if share == 0 else n
        p = carray(f64_at(rec[3 + 5 * k]), (n,))
        g = carray(f64_at(rec[3 + 5 * k + 1]), (n,))
        m = carray(f64_at(rec[3 + 5 * k + 2]), (n,))
        v = carray(f64_at(rec[3 + 5 * k + 3]), (n,))
        for i in range(lo, hi):
            gi = g[i]
            mi = m[i] + c1 * (gi - m[i])
            vi = v[i] + c2 * (gi * gi - v[i])
            m[i] = mi
            v[i] = vi
            p[i] = p[i] - lr_t * mi / (np.sqrt(vi) + 1e-7)


@cfunc(types.void(types.voidptr), nopython=True)
def nothing(arg):
    pass


GP_TIME = []


def split_update(opt, params, grads, recs, hp):
    opt._prepare()
    hp[:] = (opt.lr_t, opt.beta1, opt.beta2)
    keys = list(params)
    if recs[0, 0] != len(keys):
        for t in range(2):
            r = recs[t]
            r[0], r[1], r[2] = len(keys), t, hp.ctypes.data
            for k, key in enumerate(keys):
                r[3 + 5 * k : 3 + 5 * k + 5] = (
                    params[key].ctypes.data,
                    0,
                    opt.m[key].ctypes.data,
                    opt.v[key].ctypes.data,
                    params[key].size,
                )
    addrs = [grads[key].__array_interface__["data"][0] for key in keys]
    recs[:, 4 : 4 + 5 * len(keys) : 5] = addrs
    a = time.perf_counter()
    gp(2, adam_share.address, recs.ctypes.data, REC * 8)
    GP_TIME.append(time.perf_counter() - a)


def main():
    rng = np.random.default_rng(0)
    x, t = rng.random((100, 784)), rng.integers(0, 10, 100)
    kw = dict(seed=0, use_batchnorm=True, use_dropout=True)
    nets = {
        k: scratchprop.MultiLayerNetExtend(784, [100] * 5, 10, backend="numba", **kw) for k in ("one", "two")
    }
    opts = {k: NB.Adam(lr=0.001) for k in nets}
    recs, hp = np.zeros((2, REC), np.int64), np.zeros(3)
    for k in nets:  # first updates: the state
        np.random.seed(0)
        opts[k].update(nets[k].params, nets[k].gradient(x, t))

    def step(k):
        g = nets[k].gradient(x, t)
        if k == "one":
            opts[k].update(nets[k].params, g)
        else:
            split_update(opts[k], nets[k].params, g, recs, hp)

    for s in range(3):  # the same bits?
        for k in nets:
            np.random.seed(s + 1)
            step(k)
        opts["one"]._each.pair = None  # the library's Adam on this thread (it splits too since stop 40)
    same = all(np.array_equal(nets["one"].params[q], nets["two"].params[q]) for q in nets["one"].params)
    print("same bits after 3 steps:", same)
    # round trip of an empty region: right after a BLAS call (worker spinning), and after 0.3 s
    A, B = rng.random((300, 300)), rng.random((300, 300))
    warm, cold = [], []
    for _ in range(30):
        A @ B
        a = time.perf_counter()
        gp(2, nothing.address, recs.ctypes.data, REC * 8)
        warm.append(time.perf_counter() - a)
    for _ in range(5):
        time.sleep(0.3)
        a = time.perf_counter()
        gp(2, nothing.address, recs.ctypes.data, REC * 8)
        cold.append(time.perf_counter() - a)
    print(
        f"empty region: after a BLAS call {np.median(warm) * 1e6:.1f} us, after 0.3 s {np.median(cold) * 1e6:.1f} us"
    )
    grads = nets["one"].gradient(x, t)
    res = {"step one": [], "step two": [], "update one": [], "update two": []}
    for _ in range(11):
        for k in ("one", "two"):
            ts = []
            for _ in range(40):
                a = time.perf_counter()
                step(k)
                ts.append(time.perf_counter() - a)
            res["step " + k].append(np.median(ts) * 1e6)
        for k in ("one", "two"):
            ts = []
            for _ in range(40):
                a = time.perf_counter()
                if k == "one":
                    opts[k].update(nets[k].params, grads)
                else:
                    split_update(opts[k], nets[k].params, grads, recs, hp)
                ts.append(time.perf_counter() - a)
            res["update " + k].append(np.median(ts) * 1e6)
    for k, v in res.items():
        print(f"{k:12s} {np.median(v):7.1f} us ({min(v):.1f}-{max(v):.1f})")
    print(f"the gotoblas_pthread call alone: median {np.median(GP_TIME[-400:]) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
