"""Probe (stop 37, not used by the library): ``x @ W`` summing only a mostly-zero ``x``'s nonzeros.

MNIST images are ~80 % zero pixels, so the first layer's ``x @ W`` does ~5x more multiply-adds
than it needs. This probe times a kernel that skips them, alone and inside the book's net (the
drop-in Affine's forward swapped for it, interleaved round by round with the layer's own), on the
bundled MNIST digits::

    python bench/sparse_probe.py            # batches 32, 100, 1000
    python bench/sparse_probe.py 100

Results and why it is not in the library: ``bench/REPEATS.md`` ("Skipping MNIST's zero pixels").

The kernel:

:func:`nonzeros` lists ``x``'s nonzero values row by row (CSR); :func:`product` then adds, for
each output row, ``value * W[k, :]`` for its listed ``k`` only, a row of SIMD accumulators held in
registers across the list. ``W`` is read in blocks of rows that stay in L1 (a listed value reads a
whole row of ``W`` at a place the hardware cannot foresee: from L2 the loop waits on the loads).
One thread: at batch 100 the list is ~15,000 values.

NaN and inf: a skipped term is ``0 * W[k, j]``, which NumPy's product adds as NaN when ``W[k, j]``
is not finite, so the caller takes this path only when ``W`` is :func:`all_finite`; a NaN or inf
in ``x`` is nonzero and listed, and propagates as in NumPy. Each output is ``C + sum`` over the
listed terms in order, block by block, one fused multiply-add each: the bits depend on the inputs
alone, and differ from a dense product's by rounding only.
"""

import os
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from scratchprop.kernels.config import SERIAL
from scratchprop.kernels.simd import IR, VECTOR_BYTES, accumulate


def _declare(b, name, fnty):
    return b.module.globals.get(name) or ir.Function(b.module, fnty, name=name)


@intrinsic
def _gather(typingctx, x, n, k0, idx, val, p):
    """Append the nonzero values of ``x[n, k0 : k0 + lanes]`` (fewer at the row's end) to ``val``
    from ``p`` on, their column indices to ``idx`` (int32); returns the new ``p``."""

    def codegen(context, builder, signature, args):
        v, b = IR(builder, signature.args[0].dtype), builder
        X, I_, V_ = (context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 3, 4))
        n, k0, p = args[1], args[2], args[5]
        D = b.extract_value(X.shape, 1)
        inside = v.mask(b.sub(D, k0))
        vec = v.masked_load(b.gep(X.data, [b.add(b.mul(n, D), k0)]), inside)
        nz = b.and_(b.fcmp_unordered("!=", vec, v.zero), inside)  # unordered: NaN is nonzero
        bits = b.bitcast(nz, ir.IntType(v.lanes))
        count = b.call(_declare(b, f"llvm.ctpop.i{v.lanes}", ir.FunctionType(bits.type, [bits.type])), [bits])
        with b.if_then(b.icmp_unsigned("!=", bits, ir.Constant(bits.type, 0))):
            it = ir.VectorType(v.i32, v.lanes)
            ks = b.insert_element(ir.Constant(it, ir.Undefined), b.trunc(k0, v.i32), ir.Constant(v.i32, 0))
            ks = b.shuffle_vector(ks, ir.Constant(it, ir.Undefined), ir.Constant(it, [0] * v.lanes))
            ks = b.add(ks, ir.Constant(it, list(range(v.lanes))))
            for vec_, ptr in ((vec, b.gep(V_.data, [p])), (ks, b.gep(I_.data, [p]))):
                # packed in a register, then a whole vector stored: the lanes past the count are
                # overwritten by the next chunk (or lie in the buffers' spare vector)
                vt = vec_.type
                kind = "i32" if vec_ is ks else ("f32" if v.lanes == 16 else "f64")
                fnty = ir.FunctionType(vt, [vt, nz.type, vt])
                packed = b.call(
                    _declare(b, f"llvm.experimental.vector.compress.v{v.lanes}{kind}", fnty),
                    [vec_, nz, ir.Constant(vt, ir.Undefined)],
                )
                b.store(packed, b.bitcast(ptr, vt.as_pointer()), align=4)
        return b.add(p, b.zext(count, v.i64))

    return types.intp(x, n, k0, idx, val, p), codegen


def _row_block(vectors):
    """An intrinsic ``(idx, val, p0, p1, W, C, r, j0)``: ``C[r, j0 : j0 + vectors * lanes] +=
    sum(val[p] * W[idx[p], ...] for p in range(p0, p1))``; only the last vector is masked to ``C``'s
    width (a masked load costs more than a plain one)."""

    def typer(typingctx, idx, val, p0, p1, W, C, r, j0):
        def codegen(context, builder, signature, args):
            v, b = IR(builder, signature.args[5].dtype), builder
            I_, V_, W_, C_ = (
                context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 1, 4, 5)
            )
            p0, p1, r, j0 = args[2], args[3], args[6], args[7]
            M, ldw = b.extract_value(C_.shape, 1), b.extract_value(W_.shape, 1)
            last = ir.Constant(v.i64, (vectors - 1) * v.lanes)
            mask = v.mask(b.sub(M, b.add(j0, last)))
            column = b.gep(W_.data, [j0])

            def one(i, acc):
                p = b.add(p0, i)
                row = b.gep(column, [b.mul(b.sext(b.load(b.gep(I_.data, [p])), v.i64), ldw)])
                vs = [v.vload(b.gep(row, [ir.Constant(v.i64, j * v.lanes)])) for j in range(vectors - 1)]
                vs.append(v.masked_load(b.gep(row, [last]), mask))
                return v.outer([b.gep(V_.data, [p])], vs, acc)

            sums = accumulate(b, b.sub(p1, p0), vectors, v.vt, v.zero, one)
            crow = b.gep(C_.data, [b.add(b.mul(r, M), j0)])
            for j in range(vectors):
                ptr = b.gep(crow, [ir.Constant(v.i64, j * v.lanes)])
                old = v.vload(ptr) if j < vectors - 1 else v.masked_load(ptr, mask)
                new = b.fadd(old, sums[j])
                if j < vectors - 1:
                    b.store(new, b.bitcast(ptr, v.vpt), align=4)
                else:
                    v.masked_store(new, ptr, mask)
            return context.get_dummy_value()

        return types.void(idx, val, types.intp, types.intp, W, C, types.intp, types.intp), codegen

    return intrinsic(typer)


_block8, _block4, _block2, _block1 = (_row_block(n) for n in (8, 4, 2, 1))


@njit(**dict(SERIAL, fastmath={"reassoc"}))  # reassociation only: a sum that is NaN stays NaN
def all_finite(a):
    """Whether every value of the C-contiguous array ``a`` is finite (``v - v`` is NaN otherwise)."""
    flat = a.reshape(a.size)
    s = flat.dtype.type(0)
    for i in range(flat.shape[0]):
        s += flat[i] - flat[i]
    return s == 0


@njit(**SERIAL)
def nonzeros(x, idx, val, start):
    """List ``x (N, D)``'s nonzero values row by row: row ``n``'s are ``val[start[n] : start[n +
    1]]`` at columns ``idx[...]`` (int32), ascending. Returns their count, or -1 (nothing usable)
    when more than ``val.shape[0] - lanes`` (``idx`` and ``val`` hold a SIMD vector more)."""
    N, D = x.shape
    lanes = VECTOR_BYTES // x.itemsize
    most = val.shape[0] - lanes
    p = 0
    for n in range(N):
        start[n] = p
        for k0 in range(0, D, lanes):
            if p > most:
                return -1
            p = _gather(x, n, k0, idx, val, p)
    start[N] = p
    return p if p <= most else -1


@njit(**SERIAL)
def product(idx, val, start, W, C, block):
    """``C (N, M) += A @ W`` for ``A`` listed by :func:`nonzeros`, ``W (K, M)``, ``C`` C-contiguous,
    one float dtype; ``W`` read ``block`` rows at a time (:func:`block_rows`)."""
    N, M = C.shape
    K = W.shape[0]
    lanes = VECTOR_BYTES // C.itemsize
    at = start[:N].copy()  # each row's next listed value
    for k0 in range(0, K, block):
        k1 = min(K, k0 + block)
        for r in range(N):
            p0 = p1 = at[r]
            while p1 < start[r + 1] and idx[p1] < k1:
                p1 += 1
            if p1 == p0:
                continue
            at[r] = p1
            j0 = 0
            while j0 < M:  # the widest block whose vectors all hold columns of C
                if M - j0 > 7 * lanes:
                    _block8(idx, val, p0, p1, W, C, r, j0)
                    j0 += 8 * lanes
                elif M - j0 > 3 * lanes:
                    _block4(idx, val, p0, p1, W, C, r, j0)
                    j0 += 4 * lanes
                elif M - j0 > lanes:
                    _block2(idx, val, p0, p1, W, C, r, j0)
                    j0 += 2 * lanes
                else:
                    _block1(idx, val, p0, p1, W, C, r, j0)
                    j0 += lanes


def block_rows(M, itemsize, l1_bytes=48 * 1024):
    """Rows of ``W (K, M)`` per block of :func:`product`: a core's L1 data cache (48 KiB here)."""
    return max(1, l1_bytes // (M * itemsize))


_HELD = {}


def _lists(N, D, dt):
    """Buffers for :func:`nonzeros` (up to a quarter of ``x`` nonzero), one set per shape."""
    key = (N, D, dt)
    if key not in _HELD:
        n = N * D // 4 + VECTOR_BYTES // dt.itemsize
        _HELD[key] = (np.empty(n, np.int32), np.empty(n, dt), np.empty(N + 1, np.int64))
    return _HELD[key]


@njit(**SERIAL)
def _forward(x, W, b, out, idx, val, start, block):
    """The Affine forward over ``x``'s nonzeros; False (nothing written) when ``W`` is not finite or
    more than a quarter of ``x`` is nonzero."""
    if not all_finite(W) or nonzeros(x, idx, val, start) < 0:
        return False
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = b[j]
    product(idx, val, start, W, out, block)
    return True


def sparse_forward(layer, xk, W, b, out):
    """What the probe puts in place of ``scratchprop._numba_layers.Affine._forward``."""
    N, D = xk.shape
    if not _forward(xk, W, b, out, *_lists(N, D, out.dtype), block_rows(W.shape[1], W.itemsize)):
        _LAYER_FORWARD[0](layer, xk, W, b, out)


_LAYER_FORWARD = []


def _parts(x):
    """The forward's pieces on ``x``, each a call to time."""
    import scratchprop._numba_layers as layers

    N = x.shape[0]
    rng = np.random.default_rng(0)
    W, b = 0.01 * rng.standard_normal((784, 100)), np.zeros(100)
    out = np.empty((N, 100))
    idx, val, start = _lists(N, 784, x.dtype)
    block = block_rows(100, 8)
    own = _LAYER_FORWARD[0] if _LAYER_FORWARD else layers.Affine._forward
    layer = layers.Affine(W, b)
    return {
        "np.dot(x, W)": lambda: np.dot(x, W, out=out),
        "the layer's forward kernel": lambda: own(layer, x, W, b, out),
        "all_finite(W)": lambda: all_finite(W),
        "nonzeros(x)": lambda: nonzeros(x, idx, val, start),
        "product over the nonzeros": lambda: product(idx, val, start, W, out, block),
        "the three, as the forward": lambda: sparse_forward(layer, x, W, b, out),
    }


def _swapped(step, forward):
    """``step`` with the drop-in Affine's forward kernel call set to ``forward``."""
    import scratchprop._numba_layers as layers

    def run():
        layers.Affine._forward = forward
        step()

    return run


def main(batches):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import scratchprop._numba_layers as layers
    from bench.builders import build_train_step
    from bench.cases import SIZES, Case, inputs
    from bench.probes import _interleaved

    own = layers.Affine._forward
    _LAYER_FORWARD.append(own)
    print("float64, MNIST digits, 784 -> 100; median us of 11 interleaved rounds (range of the ratio)")
    for N in batches:
        x, _ = inputs(N, "float64")
        idx, val, start = _lists(N, 784, x.dtype)
        count = nonzeros(x, idx, val, start)
        parts = _parts(x)
        times = _interleaved(list(parts.values()), 11, 0.05, 2000)
        print(f"batch {N}: {count / x.size:.0%} of x nonzero")
        for name, ts in zip(parts, times):
            print(f"  {name:28s} {np.median(ts):8.1f} us")
        step, ref = (
            build_train_step(Case("train_step", "train_step", "book", b, "float64", N, SIZES)).fn
            for b in ("numba", "numpy")
        )
        times = _interleaved([ref, _swapped(step, own), _swapped(step, sparse_forward)], 11, 0.1, 2000)
        layers.Affine._forward = own
        r = [np.array(times[0]) / np.array(ts) for ts in times[1:]]
        print(
            f"  book net's train step: reference {np.median(times[0]):.0f} us | layers {np.median(times[1]):.0f}"
            f" ({np.median(r[0]):.2f}x, {r[0].min():.2f}-{r[0].max():.2f}) | with this forward"
            f" {np.median(times[2]):.0f} ({np.median(r[1]):.2f}x, {r[1].min():.2f}-{r[1].max():.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [32, 100, 1000])
