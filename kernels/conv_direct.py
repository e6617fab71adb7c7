"""A direct stride-1 convolution: no unfolded matrix, a register-blocked inner loop.

One image at a time: :func:`pad_rows` copies it (an image, or a gradient held in channel rows)
into a flat, zero-padded, channel-major buffer ``xp`` of rows ``Wp = W + 2 * pad`` wide.
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


def _vector_type(dtype):
    single = dtype == types.float32
    lanes = 8 * _VECTOR_BYTES // dtype.bitwidth
    return ir.VectorType(ir.FloatType() if single else ir.DoubleType(), lanes), lanes, single


class _IR:
    """What a micro-kernel's IR needs: the builder, its vector type and width, ``llvm.fma`` on it,
    a vector of zeros, pointer and integer types."""

    def __init__(self, builder, dtype):
        vt, lanes, single = _vector_type(dtype)
        name = f"llvm.fma.v{lanes}{'f32' if single else 'f64'}"
        self.b, self.vt, self.lanes, self.vpt = builder, vt, lanes, vt.as_pointer()
        self.fma = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(vt, [vt, vt, vt]), name=name
        )
        self.zero = ir.Constant(vt, [0.0] * lanes)
        self.i64, self.i32 = ir.IntType(64), ir.IntType(32)

    def vload(self, ptr):
        """A vector from ``ptr`` (a scalar pointer), unaligned."""
        return self.b.load(self.b.bitcast(ptr, self.vpt), align=4)


def _micro_kernel(emit):
    """An intrinsic ``(A, xp, off, out, i0, j0)`` (three float arrays of one dtype, C-contiguous,
    ``off`` intp; two indices) whose body ``emit(ir_, arrays, i0, j0)`` writes."""

    def typer(typingctx, A, xp, off, out, i0, j0):
        def codegen(context, builder, signature, args):
            arrays = [
                context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:4], args[:4])
            ]
            emit(_IR(builder, signature.args[0].dtype), arrays, args[4], args[5])
            return context.get_dummy_value()

        return types.void(A, xp, off, out, types.intp, types.intp), codegen

    typer.__doc__ = emit.__doc__
    return intrinsic(typer)


def _rows(builder, base, first, stride, count):
    """Pointers to rows ``first`` .. ``first + count - 1`` of ``stride`` elements from ``base``."""
    i64 = ir.IntType(64)
    return [
        builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)), stride)])
        for r in range(count)
    ]


def _accumulate(builder, n, step, count, vt, zero, body):
    """A loop ``i = 0, step, 2 * step, ... < n`` carrying ``count`` vectors, zeros at first:
    ``body(i, vectors)`` emits one iteration and returns their new values. Returns the last
    values (the zeros when ``n <= 0``), with the builder after the loop."""
    i64 = ir.IntType(64)
    entry = builder.block
    loop = builder.function.append_basic_block("direct_loop")
    done = builder.function.append_basic_block("direct_done")
    builder.cbranch(builder.icmp_signed("<=", n, ir.Constant(i64, 0)), done, loop)
    builder.position_at_end(loop)
    i = builder.phi(i64)
    acc = [builder.phi(vt) for _ in range(count)]
    new = body(i, acc)
    i1 = builder.add(i, ir.Constant(i64, step))
    end = builder.block
    i.add_incoming(ir.Constant(i64, 0), entry)
    i.add_incoming(i1, end)
    for a, v in zip(acc, new):
        a.add_incoming(zero, entry)
        a.add_incoming(v, end)
    builder.cbranch(builder.icmp_signed(">=", i1, n), done, loop)
    builder.position_at_end(done)
    last = []
    for v in new:
        phi = builder.phi(vt)
        phi.add_incoming(zero, entry)
        phi.add_incoming(v, end)
        last.append(phi)
    return last


def _emit_block(v, arrays, f0, p0):
    """``full[f0 + r, p0 + j] = sum_k Wm[f0 + r, k] * xp[off[k] + p0 + j]`` for ``r < ROWS`` and
    ``j`` < :func:`positions`: ``Wm (F, K)``, ``xp``, ``off (K,)``, ``full (F, n)``."""
    W_, X_, O_, F_ = arrays
    b = v.b
    splat = ir.Constant(ir.VectorType(v.i32, v.lanes), [0] * v.lanes)
    K = b.extract_value(W_.shape, 1)
    rows = _rows(b, W_.data, f0, K, ROWS)
    base = b.gep(X_.data, [p0])

    def one_k(k, acc):  # VECTORS loads of the image, ROWS broadcast filter values, all FMAs
        src = b.gep(base, [b.load(b.gep(O_.data, [k]))])
        xs = [v.vload(b.gep(src, [ir.Constant(v.i64, j * v.lanes)])) for j in range(VECTORS)]
        new = []
        for r in range(ROWS):
            w = b.insert_element(
                ir.Constant(v.vt, ir.Undefined), b.load(b.gep(rows[r], [k])), ir.Constant(v.i32, 0)
            )
            w = b.shuffle_vector(w, ir.Constant(v.vt, ir.Undefined), splat)
            new += [b.call(v.fma, [w, xs[j], acc[r * VECTORS + j]]) for j in range(VECTORS)]
        return new

    sums = _accumulate(b, K, 1, ROWS * VECTORS, v.vt, v.zero, one_k)
    out = _rows(b, F_.data, f0, b.extract_value(F_.shape, 1), ROWS)
    for r in range(ROWS):
        for j in range(VECTORS):
            dst = b.gep(out[r], [b.add(p0, ir.Constant(v.i64, j * v.lanes))])
            b.store(sums[r * VECTORS + j], b.bitcast(dst, v.vpt), align=4)


_block = _micro_kernel(_emit_block)


@njit(**INLINE)
def convolve(Wm, xp, off, full):
    """``full (F, npos)``: every position of the padded image ``xp`` against ``Wm (F, K)``
    (``F`` a multiple of :data:`ROWS`, ``npos`` of :func:`positions`; ``xp`` holds
    ``off[-1] + npos`` values)."""
    step = VECTORS * (_VECTOR_BYTES // full.itemsize)
    for p0 in range(0, full.shape[1], step):
        for f0 in range(0, full.shape[0], ROWS):
            _block(Wm, xp, off, full, f0, p0)


def _emit_filter_block(v, arrays, f0, k0):
    """``dWT[k0 + j, f0 + r] += sum_p D[f0 + r, p] * xp[off[k0 + j] + p]`` for ``r < ROWS``,
    ``j < TAPS``, ``p`` over ``D``'s row (a multiple of the vector width): lane-wise sums in
    registers along the row, then each added up lane by lane in order."""
    D_, X_, O_, G_ = arrays
    b = v.b
    n = b.extract_value(D_.shape, 1)
    drow = _rows(b, D_.data, f0, n, ROWS)
    xrow = [b.gep(X_.data, [b.load(b.gep(O_.data, [b.add(k0, ir.Constant(v.i64, j))]))]) for j in range(TAPS)]

    def one_p(p, acc):  # ROWS gradient vectors against TAPS shifted image vectors
        ds = [v.vload(b.gep(drow[r], [p])) for r in range(ROWS)]
        xs = [v.vload(b.gep(xrow[j], [p])) for j in range(TAPS)]
        return [b.call(v.fma, [ds[r], xs[j], acc[r * TAPS + j]]) for r in range(ROWS) for j in range(TAPS)]

    sums = _accumulate(b, n, v.lanes, ROWS * TAPS, v.vt, v.zero, one_p)
    dst_rows = _rows(b, G_.data, k0, b.extract_value(G_.shape, 1), TAPS)
    for r in range(ROWS):
        for j in range(TAPS):
            s = sums[r * TAPS + j]
            total = b.extract_element(s, ir.Constant(v.i32, 0))
            for lane in range(1, v.lanes):  # in lane order: the same bits every run
                total = b.fadd(total, b.extract_element(s, ir.Constant(v.i32, lane)))
            dst = b.gep(dst_rows[j], [b.add(f0, ir.Constant(v.i64, r))])
            b.store(b.fadd(b.load(dst), total), dst)


_filter_block = _micro_kernel(_emit_filter_block)


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
def pad_rows(rows, col0, H, W, pad, xp):
    """The ``C x H x W`` image held in channel rows, ``rows[c, col0 + h * W + w]`` (an image
    ``(C, H, W)`` reshaped to ``(C, H * W)`` with ``col0 = 0``, or one of a block's images), into
    the flat zero-padded ``xp`` (rows ``W + 2 * pad`` wide), zeros after."""
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
