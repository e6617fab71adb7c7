"""Dense products on the calling thread: ``C = alpha * op(A) @ B (+ C)``, register-blocked.

Where a product is small (a batch of a few dozen rows through a 784 x 100 layer), NumPy's
two-thread BLAS spends much of its time on the other core: waking its worker, and moving
operands and half the output between the two cores' caches, which the next pass (the user's
``W -= lr * dW``) reads back. :func:`product` keeps the whole product on the calling thread, at
about the speed of the two-thread BLAS call there; the caller decides where (``scratchprop.threads``).

A block of :data:`ROWS` rows of ``op(A)`` by :data:`VECTORS` SIMD vectors of ``B``'s columns is
held in registers along the whole inner dimension (:mod:`.simd`): each step broadcasts one value
of each row of ``op(A)`` and multiplies it into the same vectors of one row of ``B``. The last
vector of a block is masked to ``C``'s width, and a block's rows past ``C``'s last compute a copy
of the last row and are not stored, so any shape runs without padding, in two block shapes
(each one more to compile into every caller: about 0.1 s of a first start). ``op(A)[i, k]`` is ``A``'s flat element ``i * sa + k * sk``: ``A`` itself
(``sa = A.shape[1], sk = 1``) or its transpose (``sa = 1, sk = A.shape[1]``), with no copy.

Each element of ``C`` is a sum over ``k`` in order, one fused multiply-add per term: the bits
depend on the inputs alone (not on blocks, threads or the machine's vector width).
"""

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .config import SERIAL, guard_cache
from .simd import FAST, IR, VECTOR_BYTES, WIDE, accumulate

__all__ = ["FAST", "ROWS", "VECTORS", "product"]

#: Rows of ``op(A)`` per block: ``ROWS * VECTORS`` accumulators, 24 of AVX-512's 32 registers
#: (12 of AVX2's 16).
ROWS = 8 if WIDE else 4
#: SIMD vectors of ``B``'s columns per block.
VECTORS = 3


def _block_emitter(rows, vectors):
    """An intrinsic ``(A, B, C, i0, j0, sa, sk, alpha, add)``: ``C``'s block of ``rows`` rows from
    ``i0`` and ``vectors`` vectors of columns from ``j0`` (the last one masked to ``C``'s width)."""

    def typer(typingctx, A, B, C, i0, j0, sa, sk, alpha, add):
        def codegen(context, builder, signature, args):
            dt = signature.args[2].dtype
            v = IR(builder, dt)
            b = builder
            A_, B_, C_ = (
                context.make_array(t)(context, builder, a) for t, a in zip(signature.args[:3], args[:3])
            )
            i0, j0, sa, sk = args[3:7]
            alpha = context.cast(builder, args[7], signature.args[7], dt)
            add = context.cast(builder, args[8], signature.args[8], types.boolean)
            K, M = b.extract_value(B_.shape, 0), b.extract_value(B_.shape, 1)
            last = ir.Constant(v.i64, (vectors - 1) * v.lanes)
            mask = v.mask(b.sub(b.extract_value(C_.shape, 1), b.add(j0, last)))
            N = b.extract_value(C_.shape, 0)
            last_row = b.sub(N, ir.Constant(v.i64, 1))
            inside = [b.icmp_signed("<", b.add(i0, ir.Constant(v.i64, r)), N) for r in range(rows)]
            # rows past C's last compute a copy of the last row (never stored): one block shape for any N
            index = [b.select(inside[r], b.add(i0, ir.Constant(v.i64, r)), last_row) for r in range(rows)]
            arows = [b.gep(A_.data, [b.mul(index[r], sa)]) for r in range(rows)]
            column = b.gep(B_.data, [j0])

            def one_k(k, acc):  # a row of B's block against each row's value of op(A), broadcast
                row = b.gep(column, [b.mul(k, M)])
                vs = [v.vload(b.gep(row, [ir.Constant(v.i64, j * v.lanes)])) for j in range(vectors - 1)]
                vs.append(v.masked_load(b.gep(row, [last]), mask))
                ks = b.mul(k, sk)
                return v.outer([b.gep(arows[r], [ks]) for r in range(rows)], vs, acc)

            sums = accumulate(b, K, rows * vectors, v.vt, v.zero, one_k)
            undef = ir.Constant(v.vt, ir.Undefined)
            scale = b.insert_element(undef, alpha, ir.Constant(v.i32, 0))
            scale = b.shuffle_vector(scale, undef, ir.Constant(ir.VectorType(v.i32, v.lanes), [0] * v.lanes))
            ldc = b.extract_value(C_.shape, 1)
            for r in range(rows):
                store = b.function.append_basic_block("gemm_store")
                after = b.function.append_basic_block("gemm_stored")
                b.cbranch(inside[r], store, after)
                b.position_at_end(store)
                crow = b.gep(C_.data, [b.add(b.mul(index[r], ldc), j0)])
                for j in range(vectors):
                    ptr = b.gep(crow, [ir.Constant(v.i64, j * v.lanes)])
                    new = b.fmul(scale, sums[r * vectors + j])
                    old = v.vload(ptr) if j < vectors - 1 else v.masked_load(ptr, mask)
                    new = b.select(add, b.fadd(old, new), new)  # not 0 + new: a -0.0 stays -0.0
                    if j < vectors - 1:
                        b.store(new, b.bitcast(ptr, v.vpt), align=4)
                    else:
                        v.masked_store(new, ptr, mask)
                b.branch(after)
                b.position_at_end(after)
            return context.get_dummy_value()

        sig = types.void(A, B, C, types.intp, types.intp, types.intp, types.intp, alpha, add)
        return sig, codegen

    return intrinsic(typer)


_block = _block_emitter(ROWS, VECTORS)
_block_narrow = _block_emitter(ROWS, 1)


@njit(**SERIAL)
def product(A, sa, sk, B, C, alpha, add):
    """``C (N, M) = alpha * op(A) @ B``, plus ``C`` with ``add``: ``op(A)[i, k] = A.flat[i * sa +
    k * sk]`` for ``i < N``, ``k < K``, ``B (K, M)``; ``A``, ``B``, ``C`` C-contiguous, one float
    dtype (the caller checks shapes). Needs :data:`FAST` (AVX2 and FMA)."""
    N, M = C.shape
    lanes = VECTOR_BYTES // C.itemsize
    width = VECTORS * lanes
    full = M - M % width  # columns in whole blocks; the rest a vector at a time
    for j0 in range(0, full, width):
        for i0 in range(0, N, ROWS):
            _block(A, B, C, i0, j0, sa, sk, alpha, add)
    for j0 in range(full, M, lanes):
        for i0 in range(0, N, ROWS):
            _block_narrow(A, B, C, i0, j0, sa, sk, alpha, add)


guard_cache(globals())
