"""Probe: a direct convolution whose inner loop is a register-blocked micro-kernel (issue 16's lead).

``python bench/direct_conv_probe.py``
    The forward of a 3x3, stride-1, pad-1 float32 convolution at batch 100 for DeepConvNet's
    shapes (the probe that led to ``kernels/conv_direct.py``; its own copy of the kernel), on ONE thread (the probe sets ``NUMBA_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` to 1
    unless they are set): the Numba ``Convolution`` layer (unfold a block, one OpenBLAS product,
    bias and layout) against a direct convolution with no unfolded matrix. Each image is copied
    once into a zero-padded, channel-major flat buffer; with stride 1, output position
    ``p = oh * Wp + ow`` over the padded width ``Wp`` reads, for filter value ``k = (c, kh, kw)``,
    the input at ``off[k] + p``, so a block of 24 positions is one contiguous slice per ``k``
    (the two positions per row that fall in the padding are computed and dropped when the block
    is copied out with the bias). The micro-kernel keeps 4 filters x 24 positions in twelve AVX2
    registers across the whole ``k`` loop: it is emitted as LLVM vector IR through
    ``numba.extending.intrinsic`` (``<8 x float>`` phis and ``llvm.fma``), because Numba's own
    loops over scalar accumulators compile to scalar FMAs (3-4 GMAC/s in a first try).
    Then the backward's ``dx`` (all but the first layer's): the same direct convolution of the
    padded ``dout`` with the filters flipped and transposed, against the layer's share of its
    ``backward`` (its time less ``backward_params``', which skips ``dx``: the fold and a product).
    Checked against the float64 reference (relative errors printed). Needs AVX2 + FMA.
"""

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

R, NV, VW = 4, 3, 8  # 4 filters x 24 positions: 12 ymm accumulators
NB = NV * VW


@intrinsic
def _block(typingctx, W, X, off, out, i0, p0):
    """out[i0+r, p0:p0+24] = sum_k W[i0+r, k] * X[off[k] + p0 : ... + 24]  (float32)."""
    sig = types.void(W, X, off, out, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        Wa = context.make_array(signature.args[0])(context, builder, args[0])
        Xa = context.make_array(signature.args[1])(context, builder, args[1])
        Oa_off = context.make_array(signature.args[2])(context, builder, args[2])
        Oa = context.make_array(signature.args[3])(context, builder, args[3])
        i0v, p0v = args[4], args[5]
        i64, f32 = ir.IntType(64), ir.FloatType()
        vt = ir.VectorType(f32, VW)
        vpt = vt.as_pointer()
        K = builder.extract_value(Wa.shape, 1)
        ldo = builder.extract_value(Oa.shape, 1)
        mod = builder.module
        fname = f"llvm.fma.v{VW}f32"
        fma = mod.globals.get(fname) or ir.Function(mod, ir.FunctionType(vt, [vt, vt, vt]), name=fname)
        zero = ir.Constant(vt, [0.0] * VW)
        fn = builder.function
        wrow = [
            builder.gep(Wa.data, [builder.mul(builder.add(i0v, ir.Constant(i64, r)), K)]) for r in range(R)
        ]
        xbase = builder.gep(Xa.data, [p0v])
        pre = builder.block
        loop = fn.append_basic_block("dc_loop")
        after = fn.append_basic_block("dc_after")
        builder.cbranch(builder.icmp_signed("<=", K, ir.Constant(i64, 0)), after, loop)
        builder.position_at_end(loop)
        k = builder.phi(i64)
        k.add_incoming(ir.Constant(i64, 0), pre)
        acc = [[builder.phi(vt) for _ in range(NV)] for _ in range(R)]
        for row in acc:
            for a in row:
                a.add_incoming(zero, pre)
        o = builder.load(builder.gep(Oa_off.data, [k]))
        brow = builder.gep(xbase, [o])
        bv = [
            builder.load(builder.bitcast(builder.gep(brow, [ir.Constant(i64, c * VW)]), vpt), align=4)
            for c in range(NV)
        ]
        new = [[None] * NV for _ in range(R)]
        mask0 = ir.Constant(ir.VectorType(ir.IntType(32), VW), [0] * VW)
        for r in range(R):
            w = builder.load(builder.gep(wrow[r], [k]))
            wv = builder.insert_element(ir.Constant(vt, ir.Undefined), w, ir.Constant(ir.IntType(32), 0))
            wv = builder.shuffle_vector(wv, ir.Constant(vt, ir.Undefined), mask0)
            for c in range(NV):
                new[r][c] = builder.call(fma, [wv, bv[c], acc[r][c]])
        kn = builder.add(k, ir.Constant(i64, 1))
        cur = builder.block
        k.add_incoming(kn, cur)
        for r in range(R):
            for c in range(NV):
                acc[r][c].add_incoming(new[r][c], cur)
        builder.cbranch(builder.icmp_signed(">=", kn, K), after, loop)
        builder.position_at_end(after)
        fin = [[None] * NV for _ in range(R)]
        for r in range(R):
            for c in range(NV):
                v = builder.phi(vt)
                v.add_incoming(zero, pre)
                v.add_incoming(new[r][c], cur)
                fin[r][c] = v
        for r in range(R):
            orow = builder.gep(
                Oa.data, [builder.add(builder.mul(builder.add(i0v, ir.Constant(i64, r)), ldo), p0v)]
            )
            for c in range(NV):
                builder.store(
                    fin[r][c], builder.bitcast(builder.gep(orow, [ir.Constant(i64, c * VW)]), vpt), align=4
                )
        return context.get_dummy_value()

    return sig, codegen


@njit(boundscheck=False)
def conv_forward(x, W2, b, FH, FW, pad, out, xp, full, off):
    """x (N, C, H, W) float32, W2 (F, C*FH*FW), stride 1 -> out (N, F, OH, OW).
    xp: a padded flat image buffer; full (F, npos) positions over the padded width."""
    N, C, H, Wd = x.shape
    F = W2.shape[0]
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = Hp - FH + 1, Wp - FW + 1
    npos = full.shape[1]
    for n in range(N):
        xp[:] = 0  # (a real kernel would zero only the border)
        for c in range(C):
            for h in range(H):
                base = c * Hp * Wp + (h + pad) * Wp + pad
                for w in range(Wd):
                    xp[base + w] = x[n, c, h, w]
        for p0 in range(0, npos, NB):
            for i0 in range(0, F, R):
                _block(W2, xp, off, full, i0, p0)
        for f in range(F):
            bf = b[f]
            for oh in range(OH):
                for ow in range(OW):
                    out[n, f, oh, ow] = full[f, oh * Wp + ow] + bf


def direct(x, W, b, pad):
    N, C, H, Wd = x.shape
    F, _, FH, FW = W.shape
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = Hp - FH + 1, Wp - FW + 1
    npos = -(-OH * Wp // NB) * NB
    off = np.array(
        [c * Hp * Wp + kh * Wp + kw for c in range(C) for kh in range(FH) for kw in range(FW)], np.int64
    )
    xp = np.zeros(C * Hp * Wp + npos + FH * Wp + FW, np.float32)  # slack for the last block's reads
    full = np.empty((F, npos), np.float32)
    out = np.empty((N, F, OH, OW), np.float32)
    conv_forward(x, np.ascontiguousarray(W.reshape(F, -1)), b, FH, FW, pad, out, xp, full, off)
    return out


#: DeepConvNet's convolutions: (channels, filters, image side), all 3x3, stride 1, pad 1.
SHAPES = ((1, 16, 28), (16, 16, 28), (16, 32, 14), (32, 32, 14), (32, 64, 7), (64, 64, 7))


def _median_s(fn, rounds=7):
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _rel(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def main():
    import scratchprop.numba as nb
    import scratchprop.numpy as npref
    from scratchprop import _numba_conv

    _numba_conv.DIRECT_MIN_FILL = 2.0  # the layer as it was: unfold + product (it now takes the direct path)

    rng = np.random.default_rng(0)
    N = 100
    threads = os.environ["NUMBA_NUM_THREADS"], os.environ["OPENBLAS_NUM_THREADS"]
    print(f"float32, batch {N}, Numba / OpenBLAS threads {threads[0]} / {threads[1]}; median of 7, ms")
    total = np.zeros(4)
    for C, F, S in SHAPES:
        x = rng.random((N, C, S, S), dtype=np.float32)
        W = (rng.standard_normal((F, C, 3, 3)) * 0.1).astype(np.float32)
        b = rng.standard_normal(F).astype(np.float32)
        dout = rng.standard_normal((N, F, S, S)).astype(np.float32)
        layer = nb.Convolution(W, b, 1, 1)
        ref = npref.Convolution(W.astype(np.float64), b.astype(np.float64), 1, 1)
        y_ref = ref.forward(x.astype(np.float64))
        dx_ref = ref.backward(dout.astype(np.float64))
        err = [_rel(layer.forward(x), y_ref), _rel(direct(x, W, b, 1), y_ref)]
        times = [_median_s(partial(layer.forward, x)), _median_s(partial(direct, x, W, b, 1))]
        line = f"{C:2d}->{F:2d} {S:2d}x{S:2d} forward: layer {times[0] * 1e3:6.2f} | direct {times[1] * 1e3:6.2f}"
        if C % R == 0:  # dx: the padded dout against the filters flipped and transposed (C outputs)
            Wt = np.ascontiguousarray(W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
            zero = np.zeros(C, np.float32)
            err += [_rel(layer.backward(dout), dx_ref), _rel(direct(dout, Wt, zero, 1), dx_ref)]
            # the layer's dx share: its backward less its backward without dx (dW and db only)
            dx_layer = _median_s(partial(layer.backward, dout)) - _median_s(
                partial(layer.backward_params, dout)
            )
            times += [dx_layer, _median_s(partial(direct, dout, Wt, zero, 1))]
            line += f" || dx: layer {times[2] * 1e3:6.2f} | direct {times[3] * 1e3:6.2f}"
        total[: len(times)] += times
        print(line + " || rel err vs float64 reference " + " ".join(f"{e:.0e}" for e in err))
    print(
        f"all six forwards: layer {total[0] * 1e3:.1f} ms, direct {total[1] * 1e3:.1f} ms; "
        f"the five dx: layer {total[2] * 1e3:.1f} ms, direct {total[3] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
