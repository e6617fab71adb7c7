"""A direct stride-1 convolution: no unfolded matrix, a register-blocked inner loop.

One image at a time: :func:`pad_rows` copies it (an image, or a gradient held in channel rows)
into a flat, zero-padded, channel-major buffer ``xp`` of rows ``Wp = W + 2 * pad`` wide.
With stride 1, the output at ``p = oh * Wp + ow`` (positions counted over the padded width) is
``sum_k Wm[f, k] * xp[off[k] + p]`` with ``off[k] = (c * Hp + kh) * Wp + kw`` for filter value
``k = (c, kh, kw)``: for a run of consecutive positions, one contiguous slice of ``xp`` per ``k``.
:func:`convolve` computes every position into ``full (F, npos)`` (the two per row that fall in the
padding too: they are dropped), a block of :data:`ROWS` filters by ``VECTORS`` SIMD vectors of
positions at a time (with AVX-512, 8 by 3 where the filters come in eights), its accumulators
held in registers across the whole ``k`` loop (:func:`_block_emitter`: LLVM vector IR, since
Numba compiles the same loop over scalars to scalar multiply-adds). :func:`to_rows` and
:func:`to_image` copy the real positions out.

The backward's ``dx`` is the same convolution: the padded gradient against the filters flipped
and transposed, padded by ``FH - 1 - pad``. Its ``dW`` is :func:`filter_gradient`: the gradient
laid out as ``DT (npos, F)`` (:func:`from_rows`), one or two SIMD vectors of filters times
:data:`TAPS` image values per position, summed along the positions in registers.

Sums run over ``k`` (``dW``: over positions) in order, one fused multiply-add per term: the bits
depend on the inputs alone (not on threads or blocks). With AVX-512 the vectors are its 16-lane
ones (:data:`VECTORS` = 5: 80 float32 positions, a multiple of the 8x8 maps' padded rows).
``bench/direct_conv_probe.py`` and ``bench/CONV.md`` measure it.
"""

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .config import INLINE, guard_cache
from .simd import FAST, IR, VECTOR_BYTES, WIDE, accumulate, lanes
from .simd import row_pointers as _rows

__all__ = [
    "FAST",
    "ROWS",
    "VECTORS",
    "TAPS",
    "lanes",
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
#: SIMD vectors of positions per block: ``ROWS * VECTORS`` accumulators, 20 of AVX-512's 32
#: registers (12 of AVX2's 16).
VECTORS = 5 if WIDE else 3
#: Filter values per block of :func:`filter_gradient` (its ``K`` must come in multiples of it).
TAPS = 9


def positions(F, n, itemsize):
    """Positions :func:`convolve` computes for ``n`` (an image's padded rows) with ``F`` filters of
    ``itemsize`` bytes: ``n`` rounded up to its block, 80 float32 / 40 float64 positions with
    AVX-512 (24 / 12 with AVX2), or its wide block's 48 / 24 where ``F`` comes in eights and that
    rounds no higher."""
    step = VECTORS * (VECTOR_BYTES // itemsize)
    usual = -(-n // step) * step
    if WIDE and F % _WIDE_ROWS == 0:
        wide_step = _WIDE_VECTORS * (VECTOR_BYTES // itemsize)
        wide = -(-n // wide_step) * wide_step
        if wide <= usual:
            return wide
    return usual


def _micro_kernel(emit):
    """An intrinsic ``(A, xp, off, out, i0, j0)`` (three float arrays of one dtype, C-contiguous,
    ``off`` intp; two indices) whose body ``emit(ir_, arrays, i0, j0)`` writes."""

    def typer(typingctx, A, xp, off, out, i0, j0):
        def codegen(context, builder, signature, args):
            arrays = [
                context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:4], args[:4])
            ]
            emit(IR(builder, signature.args[0].dtype), arrays, args[4], args[5])
            return context.get_dummy_value()

        return types.void(A, xp, off, out, types.intp, types.intp), codegen

    typer.__doc__ = emit.__doc__
    return intrinsic(typer)


def _block_emitter(rows, vectors):
    """The IR of a block of :func:`convolve`: ``rows`` filters by ``vectors`` SIMD vectors."""

    def emit(v, arrays, f0, p0):
        """``full[f0 + r, p0 + j] = sum_k Wm[f0 + r, k] * xp[off[k] + p0 + j]`` for ``r < rows``
        and ``j < vectors * lanes``: ``Wm (F, K)``, ``xp``, ``off (K,)``, ``full (F, n)``."""
        W_, X_, O_, F_ = arrays
        b = v.b
        K = b.extract_value(W_.shape, 1)
        wrows = _rows(b, W_.data, f0, K, rows)
        base = b.gep(X_.data, [p0])

        def one_k(k, acc):  # the image's vectors against each filter's value, broadcast
            src = b.gep(base, [b.load(b.gep(O_.data, [k]))])
            xs = [b.gep(src, [ir.Constant(v.i64, j * v.lanes)]) for j in range(vectors)]
            return v.outer([b.gep(wrows[r], [k]) for r in range(rows)], xs, acc)

        sums = accumulate(b, K, rows * vectors, v.vt, v.zero, one_k)
        out = _rows(b, F_.data, f0, b.extract_value(F_.shape, 1), rows)
        for r in range(rows):
            for j in range(vectors):
                dst = b.gep(out[r], [b.add(p0, ir.Constant(v.i64, j * v.lanes))])
                b.store(sums[r * vectors + j], b.bitcast(dst, v.vpt), align=4)

    return emit


#: AVX-512's wider block: 8 filters x 3 vectors (24 of its 32 registers, fewer loads a product),
#: where the filters come in eights and its 48 float32 positions round the rows no higher.
_WIDE_ROWS, _WIDE_VECTORS = 8, 3
_block = _micro_kernel(_block_emitter(ROWS, VECTORS))
_block_wide = _micro_kernel(_block_emitter(_WIDE_ROWS, _WIDE_VECTORS))


@njit(**INLINE)
def convolve(Wm, xp, off, full):
    """``full (F, npos)``: every position of the padded image ``xp`` against ``Wm (F, K)``
    (``F`` a multiple of :data:`ROWS`, ``npos`` from :func:`positions`; ``xp`` holds
    ``off[-1] + npos`` values). The wide block where ``F`` and ``npos`` allow it."""
    F, npos = full.shape
    lanes = VECTOR_BYTES // full.itemsize
    if WIDE and F % _WIDE_ROWS == 0 and npos % (_WIDE_VECTORS * lanes) == 0:
        for p0 in range(0, npos, _WIDE_VECTORS * lanes):
            for f0 in range(0, F, _WIDE_ROWS):
                _block_wide(Wm, xp, off, full, f0, p0)
    else:
        for p0 in range(0, npos, VECTORS * lanes):
            for f0 in range(0, F, ROWS):
                _block(Wm, xp, off, full, f0, p0)


def _filter_emitter(vectors):
    """The IR of a block of :func:`filter_gradient`: ``vectors`` SIMD vectors of filters."""

    def emit(v, arrays, f0, k0):
        """``dWT[k0 + j, f0 + q] += sum_p xp[off[k0 + j] + p] * DT[p, f0 + q]`` for ``j < TAPS`` and
        ``q < vectors * lanes``, ``p`` over ``DT``'s rows in order: the filters in vectors, held in
        registers along the positions (no sum across lanes)."""
        D_, X_, O_, G_ = arrays
        b = v.b
        n, F = b.extract_value(D_.shape, 0), b.extract_value(D_.shape, 1)
        column = b.gep(D_.data, [f0])
        xrow = [
            b.gep(X_.data, [b.load(b.gep(O_.data, [b.add(k0, ir.Constant(v.i64, j))]))]) for j in range(TAPS)
        ]

        def one_p(p, acc):  # the gradient's filters against TAPS image values, broadcast
            row = b.gep(column, [b.mul(p, F)])
            ds = [b.gep(row, [ir.Constant(v.i64, q * v.lanes)]) for q in range(vectors)]
            return v.outer([b.gep(xrow[j], [p]) for j in range(TAPS)], ds, acc)

        sums = accumulate(b, n, TAPS * vectors, v.vt, v.zero, one_p)
        G = b.extract_value(G_.shape, 1)
        for j in range(TAPS):
            for q in range(vectors):
                at = b.add(
                    b.mul(b.add(k0, ir.Constant(v.i64, j)), G), b.add(f0, ir.Constant(v.i64, q * v.lanes))
                )
                dst = b.bitcast(b.gep(G_.data, [at]), v.vpt)
                b.store(b.fadd(b.load(dst, align=4), sums[j * vectors + q]), dst, align=4)

    return emit


_filter_block, _filter_block2 = _micro_kernel(_filter_emitter(1)), _micro_kernel(_filter_emitter(2))


@njit(**INLINE)
def filter_gradient(DT, xp, off, dWT):
    """``dWT (K, F) +=`` the filter gradient of one image: ``DT (npos, F)`` its output gradient
    over the padded positions (zeros at the dropped ones), ``xp`` its padded input (``F`` a
    multiple of :func:`lanes`, ``K`` of :data:`TAPS`). With AVX-512, two vectors of filters at a
    time where they come in pairs (half the broadcasts per product; AVX2 lacks the registers)."""
    lanes = VECTOR_BYTES // dWT.itemsize
    F = dWT.shape[1]
    pairs = F - F % (2 * lanes) if WIDE else 0
    for f0 in range(0, pairs, 2 * lanes):
        for k0 in range(0, dWT.shape[0], TAPS):
            _filter_block2(DT, xp, off, dWT, f0, k0)
    for f0 in range(pairs, F, lanes):
        for k0 in range(0, dWT.shape[0], TAPS):
            _filter_block(DT, xp, off, dWT, f0, k0)


@njit(**INLINE)
def from_rows(rows, col0, OH, OW, Wp, DT):
    """Channel rows ``rows[f, col0 + oh * OW + ow]`` into ``DT (npos, F)`` over the padded
    positions ``oh * Wp + ow``, zeros at the others."""
    flat = DT.reshape(-1)
    zero = DT.dtype.type(0)
    for i in range(flat.size):  # zeros everywhere, then the values: short loops of their own cost more
        flat[i] = zero
    for oh in range(OH):
        for ow in range(OW):
            dst = DT[oh * Wp + ow]
            for f in range(DT.shape[1]):
                dst[f] = rows[f, col0 + oh * OW + ow]


@njit(**INLINE)
def pad_rows(rows, col0, H, W, pad, xp):
    """The ``C x H x W`` image held in channel rows, ``rows[c, col0 + h * W + w]`` (an image
    ``(C, H, W)`` reshaped to ``(C, H * W)`` with ``col0 = 0``, or one of a block's images), into
    the flat zero-padded ``xp`` (rows ``W + 2 * pad`` wide), zeros after."""
    C = rows.shape[0]
    Hp, Wp = H + 2 * pad, W + 2 * pad
    zero = xp.dtype.type(0)
    for i in range(xp.size):  # zeros everywhere, then the rows: short loops of zeros cost more
        xp[i] = zero
    for c in range(C):
        src = rows[c, col0 : col0 + H * W]
        for h in range(H):
            row = (c * Hp + h + pad) * Wp + pad
            dst, part = xp[row : row + W], src[h * W : (h + 1) * W]  # views: the copy vectorises
            for w in range(W):
                dst[w] = part[w]


@njit(**INLINE)
def to_rows(full, Wp, OH, OW, b, rows, col0):
    """The real positions of ``full`` plus the bias ``b``, through a ReLU (``max(v, 0)``, NaN
    kept), into channel rows: ``rows[f, col0 + oh * OW + ow]`` (the input of a fused pooling)."""
    for f in range(full.shape[0]):
        bf = b[f]
        for oh in range(OH):
            dst = rows[f, col0 + oh * OW : col0 + (oh + 1) * OW]  # views: the loop vectorises
            src = full[f, oh * Wp : oh * Wp + OW]
            for ow in range(OW):
                v = src[ow] + bf
                dst[ow] = 0 if v <= 0 else v


@njit(**INLINE)
def to_image(full, Wp, b, relu, out):
    """The real positions of ``full`` into ``out (F, OH, OW)``, plus the bias ``b`` (when not
    empty) and with ``relu`` through a ReLU (``max(v, 0)``, NaN kept)."""
    F, OH, OW = out.shape
    for f in range(F):
        for oh in range(OH):
            dst, src = out[f, oh], full[f, oh * Wp : oh * Wp + OW]  # views: the loop vectorises
            if b.size == 0:
                for ow in range(OW):
                    dst[ow] = src[ow]
            else:
                bf = b[f]
                for ow in range(OW):
                    v = src[ow] + bf
                    dst[ow] = 0 if relu and v <= 0 else v


guard_cache(globals())
