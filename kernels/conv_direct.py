"""A direct stride-1 convolution: no unfolded matrix, a register-blocked inner loop.

One image at a time: :func:`pad_image` (or :func:`pad_rows`, for a gradient held in channel rows)
copies it into a flat, zero-padded, channel-major buffer ``xp`` of rows ``Wp = W + 2 * pad`` wide.
With stride 1, the output at ``p = oh * Wp + ow`` (positions counted over the padded width) is
``sum_k Wm[f, k] * xp[off[k] + p]`` with ``off[k] = (c * Hp + kh) * Wp + kw`` for filter value
``k = (c, kh, kw)``: for a run of consecutive positions, one contiguous slice of ``xp`` per ``k``.
:func:`convolve` computes every position into ``full (F, npos)`` (the two per row that fall in the
padding too: they are dropped), a block of :data:`ROWS` filters by ``VECTORS`` SIMD vectors of
positions at a time, its accumulators held in registers across the whole ``k`` loop
(:func:`_block`: LLVM vector IR, since Numba compiles the same loop over scalars to scalar
multiply-adds). :func:`to_rows` and :func:`to_image` copy the real positions out.

The backward's ``dx`` is the same convolution: the padded gradient against the filters flipped
and transposed, padded by ``FH - 1 - pad``.

Sums run over ``k`` in order, one fused multiply-add per term: the bits depend on the inputs
alone (not on threads or blocks). ``bench/direct_conv_probe.py`` and ``bench/CONV.md`` measure it.
"""

import numba
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .config import INLINE, guard_cache

__all__ = [
    "FAST",
    "ROWS",
    "VECTORS",
    "TAPS",
    "positions",
    "pad_image",
    "pad_rows",
    "convolve",
    "filter_gradient",
    "to_rows",
    "to_image",
    "from_rows",
]

#: Filters per block (its outputs must come in multiples of it).
ROWS = 4
#: SIMD vectors of positions per block: ``ROWS * VECTORS`` accumulators (12 of AVX2's 16 registers).
VECTORS = 3
_VECTOR_BYTES = 32  # AVX2's: 8 float32 or 4 float64 lanes (64-byte vectors measured no faster)
#: Filter values per block of :func:`filter_gradient` (its ``K`` must come in multiples of it).
TAPS = 3


def _simd_here():
    """Whether Numba's code here has AVX2 and FMA (the host's, or those ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` name): elsewhere LLVM lowers the kernels' 8-lane FMAs to calls, slowly."""
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        features = numba.config.CPU_FEATURES or ""
        return "+avx2" in features and "+fma" in features
    host = llvm.get_host_cpu_features()
    return bool(host.get("avx2") and host.get("fma"))


#: Whether the direct convolution is worth running on this machine (its callers check).
FAST = _simd_here()


def positions(itemsize):
    """Positions a block covers for values of ``itemsize`` bytes (24 float32, 12 float64)."""
    return VECTORS * (_VECTOR_BYTES // itemsize)


@intrinsic
def _block(typingctx, Wm, xp, off, full, f0, p0):
    """``full[f0 + r, p0 + j] = sum_k Wm[f0 + r, k] * xp[off[k] + p0 + j]`` for ``r < ROWS`` and
    ``j`` < :func:`positions`; all of one float dtype, C-contiguous, ``Wm (F, K)``, ``full (F, n)``."""
    sig = types.void(Wm, xp, off, full, types.intp, types.intp)
    single = Wm.dtype == types.float32
    fty = ir.FloatType() if single else ir.DoubleType()
    lanes = 8 * _VECTOR_BYTES // Wm.dtype.bitwidth

    def codegen(context, builder, signature, args):
        W_, X_, O_, F_ = (
            context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:4], args[:4])
        )
        f0, p0 = args[4], args[5]
        i64 = ir.IntType(64)
        vt = ir.VectorType(fty, lanes)
        vpt = vt.as_pointer()
        K = builder.extract_value(W_.shape, 1)
        ld = builder.extract_value(F_.shape, 1)
        name = f"llvm.fma.v{lanes}{'f32' if single else 'f64'}"
        fma = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), name=name
        )
        zero = ir.Constant(vt, [0.0] * lanes)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        rows = [
            builder.gep(W_.data, [builder.mul(builder.add(f0, ir.Constant(i64, r)), K)]) for r in range(ROWS)
        ]
        base = builder.gep(X_.data, [p0])
        entry = builder.block
        loop = builder.function.append_basic_block("direct_k")
        done = builder.function.append_basic_block("direct_done")
        builder.cbranch(builder.icmp_signed("<=", K, ir.Constant(i64, 0)), done, loop)

        builder.position_at_end(loop)  # one filter value k: VECTORS loads, ROWS broadcasts, all FMAs
        k = builder.phi(i64)
        acc = [[builder.phi(vt) for _ in range(VECTORS)] for _ in range(ROWS)]
        src = builder.gep(base, [builder.load(builder.gep(O_.data, [k]))])
        xs = [
            builder.load(builder.bitcast(builder.gep(src, [ir.Constant(i64, v * lanes)]), vpt), align=4)
            for v in range(VECTORS)
        ]
        new = []
        for r in range(ROWS):
            w = builder.insert_element(
                ir.Constant(vt, ir.Undefined),
                builder.load(builder.gep(rows[r], [k])),
                ir.Constant(ir.IntType(32), 0),
            )
            w = builder.shuffle_vector(w, ir.Constant(vt, ir.Undefined), splat)
            new.append([builder.call(fma, [w, xs[v], acc[r][v]]) for v in range(VECTORS)])
        k1 = builder.add(k, ir.Constant(i64, 1))
        end = builder.block
        k.add_incoming(ir.Constant(i64, 0), entry)
        k.add_incoming(k1, end)
        for r in range(ROWS):
            for v in range(VECTORS):
                acc[r][v].add_incoming(zero, entry)
                acc[r][v].add_incoming(new[r][v], end)
        builder.cbranch(builder.icmp_signed(">=", k1, K), done, loop)

        builder.position_at_end(done)  # the sums (zeros for K == 0) into full
        sums = []
        for r in range(ROWS):
            for v in range(VECTORS):
                s = builder.phi(vt)
                s.add_incoming(zero, entry)
                s.add_incoming(new[r][v], end)
                sums.append(s)
        for r in range(ROWS):
            row = builder.gep(
                F_.data, [builder.add(builder.mul(builder.add(f0, ir.Constant(i64, r)), ld), p0)]
            )
            for v in range(VECTORS):
                dst = builder.bitcast(builder.gep(row, [ir.Constant(i64, v * lanes)]), vpt)
                builder.store(sums[r * VECTORS + v], dst, align=4)
        return context.get_dummy_value()

    return sig, codegen


def _vector_type(dtype):
    single = dtype == types.float32
    lanes = 8 * _VECTOR_BYTES // dtype.bitwidth
    return ir.VectorType(ir.FloatType() if single else ir.DoubleType(), lanes), lanes, single


@intrinsic
def _filter_block(typingctx, D, xp, off, dWT, f0, k0):
    """``dWT[k0 + j, f0 + r] += sum_p D[f0 + r, p] * xp[off[k0 + j] + p]`` for ``r < ROWS``,
    ``j < TAPS``, ``p`` over ``D``'s row (a multiple of the vector width): lane-wise sums in
    registers along the row, then each added up lane by lane in order."""
    sig = types.void(D, xp, off, dWT, types.intp, types.intp)
    vt, lanes, single = _vector_type(D.dtype)

    def codegen(context, builder, signature, args):
        D_, X_, O_, G_ = (
            context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:4], args[:4])
        )
        f0, k0 = args[4], args[5]
        i64 = ir.IntType(64)
        vpt = vt.as_pointer()
        n = builder.extract_value(D_.shape, 1)
        ldg = builder.extract_value(G_.shape, 1)
        name = f"llvm.fma.v{lanes}{'f32' if single else 'f64'}"
        fma = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), name=name
        )
        zero = ir.Constant(vt, [0.0] * lanes)
        drow = [
            builder.gep(D_.data, [builder.mul(builder.add(f0, ir.Constant(i64, r)), n)]) for r in range(ROWS)
        ]
        xrow = [
            builder.gep(X_.data, [builder.load(builder.gep(O_.data, [builder.add(k0, ir.Constant(i64, j))]))])
            for j in range(TAPS)
        ]
        entry = builder.block
        loop = builder.function.append_basic_block("dw_p")
        done = builder.function.append_basic_block("dw_done")
        builder.cbranch(builder.icmp_signed("<=", n, ir.Constant(i64, 0)), done, loop)

        builder.position_at_end(loop)
        p = builder.phi(i64)
        acc = [[builder.phi(vt) for _ in range(TAPS)] for _ in range(ROWS)]
        ds = [builder.load(builder.bitcast(builder.gep(drow[r], [p]), vpt), align=4) for r in range(ROWS)]
        xs = [builder.load(builder.bitcast(builder.gep(xrow[j], [p]), vpt), align=4) for j in range(TAPS)]
        new = [[builder.call(fma, [ds[r], xs[j], acc[r][j]]) for j in range(TAPS)] for r in range(ROWS)]
        p1 = builder.add(p, ir.Constant(i64, lanes))
        end = builder.block
        p.add_incoming(ir.Constant(i64, 0), entry)
        p.add_incoming(p1, end)
        for r in range(ROWS):
            for j in range(TAPS):
                acc[r][j].add_incoming(zero, entry)
                acc[r][j].add_incoming(new[r][j], end)
        builder.cbranch(builder.icmp_signed(">=", p1, n), done, loop)

        builder.position_at_end(done)
        sums = []
        for r in range(ROWS):
            for j in range(TAPS):
                s = builder.phi(vt)
                s.add_incoming(zero, entry)
                s.add_incoming(new[r][j], end)
                sums.append(s)
        for r in range(ROWS):
            for j in range(TAPS):
                v = sums[r * TAPS + j]
                total = builder.extract_element(v, ir.Constant(ir.IntType(32), 0))
                for lane in range(1, lanes):
                    total = builder.fadd(total, builder.extract_element(v, ir.Constant(ir.IntType(32), lane)))
                row = builder.add(k0, ir.Constant(i64, j))
                col = builder.add(f0, ir.Constant(i64, r))
                dst = builder.gep(G_.data, [builder.add(builder.mul(row, ldg), col)])
                builder.store(builder.fadd(builder.load(dst), total), dst)
        return context.get_dummy_value()

    return sig, codegen


@njit(**INLINE)
def filter_gradient(D, xp, off, dWT):
    """``dWT (K, F) +=`` the filter gradient of one image: ``D (F, npos)`` its output gradient
    over the padded positions (zeros at the dropped ones), ``xp`` its padded input (``F`` a
    multiple of :data:`ROWS`, ``K`` of :data:`TAPS`)."""
    for k0 in range(0, dWT.shape[0], TAPS):
        for f0 in range(0, dWT.shape[1], ROWS):
            _filter_block(D, xp, off, dWT, f0, k0)


@njit(**INLINE)
def from_rows(rows, col0, OH, OW, Wp, full):
    """Channel rows ``rows[f, col0 + oh * OW + ow]`` into ``full (F, npos)`` over the padded
    positions ``oh * Wp + ow``, zeros at the others."""
    zero = full.dtype.type(0)
    full[:] = zero
    for f in range(full.shape[0]):
        for oh in range(OH):
            for ow in range(OW):
                full[f, oh * Wp + ow] = rows[f, col0 + oh * OW + ow]


@njit(**INLINE)
def convolve(Wm, xp, off, full):
    """``full (F, npos)``: every position of the padded image ``xp`` against ``Wm (F, K)``
    (``F`` a multiple of :data:`ROWS`, ``npos`` of :func:`positions`; ``xp`` holds
    ``off[-1] + npos`` values)."""
    step = VECTORS * (_VECTOR_BYTES // full.itemsize)
    for p0 in range(0, full.shape[1], step):
        for f0 in range(0, full.shape[0], ROWS):
            _block(Wm, xp, off, full, f0, p0)


@njit(**INLINE)
def pad_image(img, pad, xp):
    """``img (C, H, W)`` into the flat zero-padded ``xp`` (rows ``W + 2 * pad`` wide), zeros after."""
    C, H, W = img.shape
    Hp, Wp = H + 2 * pad, W + 2 * pad
    zero = xp.dtype.type(0)
    xp[C * Hp * Wp :] = zero
    for c in range(C):
        plane = c * Hp * Wp
        xp[plane : plane + pad * Wp] = zero
        xp[plane + (pad + H) * Wp : plane + Hp * Wp] = zero
        for h in range(H):
            row = plane + (h + pad) * Wp
            xp[row : row + pad] = zero
            for w in range(W):
                xp[row + pad + w] = img[c, h, w]
            xp[row + pad + W : row + Wp] = zero


@njit(**INLINE)
def pad_rows(rows, col0, H, W, pad, xp):
    """:func:`pad_image` of the image held in channel rows, ``rows[c, col0 + h * W + w]``."""
    C = rows.shape[0]
    Hp, Wp = H + 2 * pad, W + 2 * pad
    zero = xp.dtype.type(0)
    xp[C * Hp * Wp :] = zero
    for c in range(C):
        plane = c * Hp * Wp
        xp[plane : plane + pad * Wp] = zero
        xp[plane + (pad + H) * Wp : plane + Hp * Wp] = zero
        for h in range(H):
            row = plane + (h + pad) * Wp
            xp[row : row + pad] = zero
            src = col0 + h * W
            for w in range(W):
                xp[row + pad + w] = rows[c, src + w]
            xp[row + pad + W : row + Wp] = zero


@njit(**INLINE)
def to_rows(full, Wp, OH, OW, rows, col0):
    """The real positions of ``full`` into channel rows: ``rows[f, col0 + oh * OW + ow]``."""
    for f in range(full.shape[0]):
        for oh in range(OH):
            for ow in range(OW):
                rows[f, col0 + oh * OW + ow] = full[f, oh * Wp + ow]


@njit(**INLINE)
def to_image(full, Wp, out):
    """The real positions of ``full`` into ``out (F, OH, OW)``."""
    F, OH, OW = out.shape
    for f in range(F):
        for oh in range(OH):
            for ow in range(OW):
                out[f, oh, ow] = full[f, oh * Wp + ow]


guard_cache(globals())
