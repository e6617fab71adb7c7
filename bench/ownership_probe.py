#!/usr/bin/env python
"""Issue 15's step on two threads that each own half of every weight matrix (``bench/THREADS.md``).

``python bench/ownership_probe.py [steps]``

A stand-in for ``MultiLayerNetExtend(784, [100]*5, 10)``'s training step at batch 100, float64:
every product of the real step (forward, ``dW``, ``dx`` but the first layer's), a BatchNorm-like
pass and a Relu per hidden layer, softmax with cross-entropy, an Adam-like update. It runs in one
compiled call per step on one thread, or on two threads in lockstep (spin barriers on an atomic
counter), where thread ``t`` owns a contiguous block of rows of every ``W`` (its input features)
and the same features of every activation:

* forward: each thread multiplies its features by its rows of ``W`` (a partial product, all
  of the output's columns); after a barrier each sums the two partials for its own features of
  the next layer and runs the BatchNorm-like pass and the Relu on them;
* backward: ``dW``'s own rows (``h[:, own].T @ d``), ``dx``'s own columns (``d @ W[own].T``, no
  sum across threads), the previous layer's backward on them; one barrier a layer;
* update: own rows of ``W``, ``dW`` and the two state arrays (contiguous blocks).

Only the activations cross between the cores (a partial and a gradient a layer, ~40 KB each);
``W``, ``dW`` and the optimizer state stay in the cache of the core that owns them.

Printed: per-step medians of one thread against two, with every step in one region (the start of
the second thread paid once), and with one region a step on a persistent worker (woken through
a ``ThreadPoolExecutor``, as ``threads.run_chunks`` does); the update alone split by contiguous
rows or by columns; the two-thread result against the one-thread one (the partial sums differ
in their last bits); and one pass over the rows of a 100 x 100 (and 100 x 96, starting on a cache
line and 16 bytes past one) array, each thread its block of columns, alone and with the other
thread's block at once: the cost of the cache line both threads write where their columns meet.
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from scratchprop.kernels.gemm import product

NB = dict(nogil=True, error_model="numpy", boundscheck=False)


@intrinsic
def _load(typingctx, a, i):
    def codegen(context, builder, sig, args):
        ptr = builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(a, i), codegen


@intrinsic
def _add(typingctx, a, i, v):
    def codegen(context, builder, sig, args):
        ptr = builder.gep(context.make_array(sig.args[0])(context, builder, args[0]).data, [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "acq_rel")

    return types.int64(a, i, v), codegen


@njit(**NB)
def barrier(ctl, T, gen):
    """Wait until all ``T`` threads have arrived at barrier number ``gen`` (arrivals count up)."""
    if T > 1:
        _add(ctl, 0, 1)
        while _load(ctl, 0) < gen * T:
            pass


@njit(**NB)
def own(D, t, T):
    """Thread ``t``'s features of ``D``: a contiguous block, a multiple of 8 long but the last."""
    if T == 1:
        return 0, D
    h = (D // 2) // 8 * 8
    return (0, h) if t == 0 else (h, D)


@njit(**NB)
def _features(Z0, Z1, two, h, lo, hi):
    """The hidden layer's own features: the partials summed, a BatchNorm-like pass, a Relu."""
    N = h.shape[0]
    for j in range(lo, hi):
        s = 0.0
        for r in range(N):
            s += Z0[r, j] + Z1[r, j] if two else Z0[r, j]
        mu = s / N
        v = 0.0
        for r in range(N):
            c = (Z0[r, j] + Z1[r, j] if two else Z0[r, j]) - mu
            v += c * c
        sd = np.sqrt(v / N + 1e-6)
        for r in range(N):
            y = ((Z0[r, j] + Z1[r, j] if two else Z0[r, j]) - mu) / sd
            h[r, j] = y if y > 0 else 0.0


@njit(**NB)
def _loss_grad(Z0, Z1, two, lab, d):
    N, M = d.shape
    for r in range(N):
        mx = -np.inf
        for j in range(M):
            mx = max(mx, Z0[r, j] + Z1[r, j] if two else Z0[r, j])
        s = 0.0
        for j in range(M):
            s += np.exp((Z0[r, j] + Z1[r, j] if two else Z0[r, j]) - mx)
        for j in range(M):
            y = np.exp((Z0[r, j] + Z1[r, j] if two else Z0[r, j]) - mx) / s
            d[r, j] = (y - (1.0 if j == lab[r] else 0.0)) / N


@njit(**NB)
def step(t, T, ctl, gen, x, lab, Ws, dWs, Ms, Vs, Zs, Hs, Ds, WTs, DXs):
    """One training step, thread ``t`` of ``T``'s share; returns the barrier count."""
    N, L, two = x.shape[0], len(Ws), T == 2
    for i in range(L):
        W = Ws[i]
        D, M = W.shape
        h = x if i == 0 else Hs[i - 1]
        lo, hi = own(D, t, T)
        product(h.ravel()[lo:], D, 1, W[lo:hi], Zs[i][t], 1.0, False)  # partial: own features x own rows
        gen += 1
        barrier(ctl, T, gen)
        if i < L - 1:
            lo2, hi2 = own(M, t, T)
            _features(Zs[i][0], Zs[i][1], two, Hs[i], lo2, hi2)
        elif t == 0:
            _loss_grad(Zs[i][0], Zs[i][1], two, lab, Ds[i])
    gen += 1
    barrier(ctl, T, gen)
    for i in range(L - 1, -1, -1):
        W, d = Ws[i], Ds[i]
        D, M = W.shape
        h = x if i == 0 else Hs[i - 1]
        lo, hi = own(D, t, T)
        product(h.ravel()[lo:], 1, D, d, dWs[i][lo:hi], 1.0, False)  # dW's own rows
        if i > 0:  # dx's own columns, through own rows of W transposed; then the Relu's backward
            WT = WTs[i][t][: M * (hi - lo)].reshape(M, hi - lo)
            for j in range(M):
                for k in range(lo, hi):
                    WT[j, k - lo] = W[k, j]
            DX = DXs[i][t][: N * (hi - lo)].reshape(N, hi - lo)
            product(d.ravel(), M, 1, WT, DX, 1.0, False)
            prev, hprev = Ds[i - 1], Hs[i - 1]
            for r in range(N):
                for k in range(lo, hi):
                    prev[r, k] = DX[r, k - lo] if hprev[r, k] > 0 else 0.0
            gen += 1
            barrier(ctl, T, gen)
    for i in range(L):  # an Adam-like update of own rows: contiguous blocks of four arrays
        D, M = Ws[i].shape
        lo, hi = own(D, t, T)
        w, g, m, v = Ws[i].ravel(), dWs[i].ravel(), Ms[i].ravel(), Vs[i].ravel()
        for j in range(lo * M, hi * M):
            gj = g[j]
            mj = m[j] + 0.1 * (gj - m[j])
            vj = v[j] + 0.001 * (gj * gj - v[j])
            m[j], v[j] = mj, vj
            w[j] = w[j] - 1e-4 * mj / (np.sqrt(vj) + 1e-7)
    gen += 1
    barrier(ctl, T, gen)  # the next step's first product reads the other thread's features
    return gen


@njit(**NB)
def steps(t, T, ctl, gen, n, x, lab, Ws, dWs, Ms, Vs, Zs, Hs, Ds, WTs, DXs):
    for _ in range(n):
        gen = step(t, T, ctl, gen, x, lab, Ws, dWs, Ms, Vs, Zs, Hs, Ds, WTs, DXs)
    return gen


@njit(**NB)
def update_split(W, g, m, v, t, T, by_rows):
    """The update alone on ``t``'s share: contiguous rows, or a block of columns of every row."""
    D, M = W.shape
    if by_rows:
        lo, hi = own(D, t, T)
        rows, cols = (lo, hi), (0, M)
    else:
        lo, hi = own(M, t, T)
        rows, cols = (0, D), (lo, hi)
    for k in range(rows[0], rows[1]):
        for j in range(cols[0], cols[1]):
            gj = g[k, j]
            mj = m[k, j] + 0.1 * (gj - m[k, j])
            vj = v[k, j] + 0.001 * (gj * gj - v[k, j])
            m[k, j], v[k, j] = mj, vj
            W[k, j] = W[k, j] - 1e-4 * mj / (np.sqrt(vj) + 1e-7)


@njit(**NB)
def rows_pass(x, out, lo, hi, reps):
    """``reps`` passes of ``out = 2 x + 1`` over columns ``lo:hi`` of every row, row by row (as the
    BatchNorm kernels go)."""
    for _ in range(reps):
        for i in range(x.shape[0]):
            xr, orow = x[i, lo:hi], out[i, lo:hi]
            for j in range(hi - lo):
                orow[j] = xr[j] * 2.0 + 1.0


def _aligned(shape, shift=0):
    """A float64 array whose data start ``shift`` bytes past a 64-byte boundary."""
    n = int(np.prod(shape))
    raw = np.empty(n + 16)
    k = ((-raw.ctypes.data) % 64 + shift) // 8
    return raw[k : k + n].reshape(shape)


def boundary(M, shift, rounds=5, reps=1000):
    """One pass over ``(100, M)`` split at column 48: alone, and with the other half's pass at once."""
    x = _aligned((100, M), shift)
    x[...] = np.random.default_rng(2).random((100, M))
    out = _aligned((100, M), shift)
    rows_pass(x, out, 0, 48, 1)

    def two(k):
        th = threading.Thread(target=rows_pass, args=(x, out, 48, M, k))
        th.start()
        rows_pass(x, out, 0, 48, k)
        th.join()

    one = np.median([per_step(lambda k: rows_pass(x, out, 0, 48, k), reps) for _ in range(rounds)])
    both = np.median([per_step(two, reps) for _ in range(rounds)])
    print(
        f"one pass over 100 x {M} ({M * 8}-byte rows, data {shift} bytes past a line), columns 0:48: "
        f"alone {one:.2f} us, beside the other half {both:.2f} us"
    )


def make(N=100, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [784] + [100] * 5 + [10]
    pairs = list(zip(sizes[:-1], sizes[1:]))
    Ws = tuple(rng.standard_normal(p) * 0.1 for p in pairs)
    return dict(
        x=rng.random((N, 784)),
        lab=rng.integers(0, 10, N),
        Ws=Ws,
        dWs=tuple(np.zeros_like(W) for W in Ws),
        Ms=tuple(np.zeros_like(W) for W in Ws),
        Vs=tuple(np.zeros_like(W) for W in Ws),
        Zs=tuple((np.zeros((N, b)), np.zeros((N, b))) for _, b in pairs),
        Hs=tuple(np.zeros((N, b)) for _, b in pairs),
        Ds=tuple(np.zeros((N, b)) for _, b in pairs),
        WTs=tuple((np.zeros(a * b), np.zeros(a * b)) for a, b in pairs),
        DXs=tuple((np.zeros(N * a), np.zeros(N * a)) for a, _ in pairs),
    )


def run(net, n, T, pool=None):
    """``n`` steps on ``T`` threads: one region for all (``pool`` None), or one a step."""
    args = list(net.values())
    if T == 1:
        steps(0, 1, np.zeros(8, np.int64), 0, n, *args)
        return
    if pool is None:
        ctl = np.zeros(8, np.int64)
        th = threading.Thread(target=steps, args=(1, 2, ctl, 0, n, *args))
        th.start()
        steps(0, 2, ctl, 0, n, *args)
        th.join()
        return
    for _ in range(n):
        ctl = np.zeros(8, np.int64)
        other = pool.submit(steps, 1, 2, ctl, 0, 1, *args)
        steps(0, 2, ctl, 0, 1, *args)
        other.result()


def per_step(fn, n):
    t0 = time.perf_counter()
    fn(n)
    return (time.perf_counter() - t0) / n * 1e6


def main(n=300, rounds=5):
    pool = ThreadPoolExecutor(1)
    a, b = make(), make()
    run(a, 5, 1)
    run(b, 5, 2)
    diff = max(float(np.abs(p - q).max()) for p, q in zip(a["Ws"], b["Ws"]))
    print(f"after 5 steps, max |W (two threads) - W (one)|: {diff:.1e}")
    cases = {
        "one thread": lambda k: run(a, k, 1),
        "two, one region": lambda k: run(b, k, 2),
        "two, a region a step": lambda k: run(b, k, 2, pool),
    }
    for fn in cases.values():
        fn(5)
    times = {k: [] for k in cases}
    for _ in range(rounds):
        for k, fn in cases.items():
            times[k].append(per_step(fn, n))
    med = {k: float(np.median(v)) for k, v in times.items()}
    cells = " | ".join(f"{k} {v:.0f}" for k, v in med.items())
    print(f"step, median of {rounds} rounds of {n} steps (us): {cells}")
    print(
        f"  one / two: {med['one thread'] / med['two, one region']:.2f}x in one region, "
        f"{med['one thread'] / med['two, a region a step']:.2f}x with a region a step"
    )
    W, g, m, v = (np.random.default_rng(1).random((784, 100)) for _ in range(4))
    for by_rows, name in ((True, "rows"), (False, "columns")):

        def upd(k, by_rows=by_rows):
            for _ in range(k):
                th = pool.submit(update_split, W, g, m, v, 1, 2, by_rows)
                update_split(W, g, m, v, 0, 2, by_rows)
                th.result()

        def upd1(k, by_rows=by_rows):
            for _ in range(k):
                update_split(W, g, m, v, 0, 1, by_rows)

        upd(5), upd1(5)
        one = np.median([per_step(upd1, 200) for _ in range(rounds)])
        two = np.median([per_step(upd, 200) for _ in range(rounds)])
        print(f"update of a 784x100 W alone, split by {name}: one thread {one:.0f} us, two {two:.0f} us")
    for M, shift in ((100, 0), (96, 0), (96, 16)):
        boundary(M, shift, rounds)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
