"""The register-blocked micro-kernels' building blocks: LLVM vector IR emitted through Numba.

Numba compiles a loop over scalar accumulators to scalar multiply-adds; the micro-kernels
(:mod:`.conv_direct`'s convolution, :mod:`.gemm`'s products) instead emit their inner loop as
LLVM vector IR (``numba.extending.intrinsic``): a block of accumulators held in SIMD registers
across the whole sum, one fused multiply-add per term. This module holds what they share: the
machine's vector width (:data:`FAST`, :data:`WIDE`), :class:`IR` (vector loads, broadcasts,
masked loads and stores, a block's step) and :func:`accumulate` (the loop carrying the block).
"""

import numba
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types

__all__ = ["FAST", "WIDE", "VECTOR_BYTES", "lanes", "IR", "accumulate", "row_pointers"]


def _features():
    """``(AVX2 and FMA, AVX-512F)`` in Numba's code here (the host's, or what ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` name). Without AVX2 + FMA, LLVM lowers the kernels' vector FMAs to
    calls, slowly. Numba's cache is keyed by the CPU's features, so what follows from them is
    never read stale from it."""
    if numba.config.CPU_NAME or numba.config.CPU_FEATURES:
        features = numba.config.CPU_FEATURES or ""
        has = {f for f in ("avx2", "fma", "avx512f") if f"+{f}" in features}
    else:
        has = {f for f, on in llvm.get_host_cpu_features().items() if on}
    return {"avx2", "fma"} <= has, "avx512f" in has


#: Whether the micro-kernels are worth running on this machine (their callers check), and
#: whether their vectors are AVX-512's (else AVX2's).
FAST, WIDE = _features()
VECTOR_BYTES = 64 if WIDE else 32


def lanes(itemsize):
    """Values of ``itemsize`` bytes in a SIMD vector (16 float32 with AVX-512, 8 with AVX2)."""
    return VECTOR_BYTES // itemsize


class IR:
    """What a micro-kernel's IR needs: the builder, its vector type and width, ``llvm.fma`` on it,
    a vector of zeros, pointer and integer types."""

    def __init__(self, builder, dtype):
        single = dtype == types.float32
        self.lanes = 8 * VECTOR_BYTES // dtype.bitwidth
        self.vt = vt = ir.VectorType(ir.FloatType() if single else ir.DoubleType(), self.lanes)
        self.b, self.vpt, self.suffix = builder, vt.as_pointer(), f"v{self.lanes}{'f32' if single else 'f64'}"
        self.fma = self._intrinsic("llvm.fma", ir.FunctionType(vt, [vt, vt, vt]))
        self.zero = ir.Constant(vt, [0.0] * self.lanes)
        self.i64, self.i32 = ir.IntType(64), ir.IntType(32)
        if WIDE:  # else LLVM's tuning for these CPUs (prefer 256 bits) splits the vectors in two;
            # llvmlite's attribute set checks names against a list without this one: set.add skips that
            set.add(builder.function.attributes, '"min-legal-vector-width"="512"')

    def _intrinsic(self, name, fnty, pointer=False):
        name = f"{name}.{self.suffix}" + (f".p0{self.suffix}" if pointer else "")
        module = self.b.module
        return module.globals.get(name) or ir.Function(module, fnty, name=name)

    def vload(self, ptr):
        """A vector from ``ptr`` (a scalar pointer), unaligned."""
        return self.b.load(self.b.bitcast(ptr, self.vpt), align=4)

    def splat(self, ptr):
        """The value at ``ptr`` in every lane."""
        b, undef = self.b, ir.Constant(self.vt, ir.Undefined)
        one = b.insert_element(undef, b.load(ptr), ir.Constant(self.i32, 0))
        return b.shuffle_vector(
            one, undef, ir.Constant(ir.VectorType(self.i32, self.lanes), [0] * self.lanes)
        )

    def mask(self, n):
        """The lanes below ``n`` (an i64): a mask for :meth:`masked_load` / :meth:`masked_store`."""
        b, it = self.b, ir.VectorType(self.i64, self.lanes)
        undef = ir.Constant(it, ir.Undefined)
        nv = b.insert_element(undef, n, ir.Constant(self.i32, 0))
        nv = b.shuffle_vector(nv, undef, ir.Constant(ir.VectorType(self.i32, self.lanes), [0] * self.lanes))
        return b.icmp_signed("<", ir.Constant(it, list(range(self.lanes))), nv)

    def masked_load(self, ptr, mask):
        """The lanes of ``mask`` from ``ptr``, zeros in the others (nothing else is read)."""
        fnty = ir.FunctionType(self.vt, [self.vpt, self.i32, mask.type, self.vt])
        fn = self._intrinsic("llvm.masked.load", fnty, pointer=True)
        return self.b.call(fn, [self.b.bitcast(ptr, self.vpt), ir.Constant(self.i32, 4), mask, self.zero])

    def masked_store(self, value, ptr, mask):
        """The lanes of ``mask`` of ``value`` to ``ptr`` (nothing else is written)."""
        fnty = ir.FunctionType(ir.VoidType(), [self.vt, self.vpt, self.i32, mask.type])
        fn = self._intrinsic("llvm.masked.store", fnty, pointer=True)
        self.b.call(fn, [value, self.b.bitcast(ptr, self.vpt), ir.Constant(self.i32, 4), mask])

    def outer(self, scalars, vectors, acc):
        """A block's step: ``acc[i * len(vectors) + j] + scalar i * vector j``, one FMA each;
        ``scalars`` point at values to broadcast, ``vectors`` are pointers to vectors (loaded
        first) or vectors already loaded."""
        vs = [v if isinstance(v.type, ir.VectorType) else self.vload(v) for v in vectors]
        new = []
        for i, ptr in enumerate(scalars):
            s = self.splat(ptr)
            new += [self.b.call(self.fma, [s, x, acc[i * len(vs) + j]]) for j, x in enumerate(vs)]
        return new


def row_pointers(builder, base, first, stride, count):
    """Pointers to rows ``first`` .. ``first + count - 1`` of ``stride`` elements from ``base``."""
    i64 = ir.IntType(64)
    return [
        builder.gep(base, [builder.mul(builder.add(first, ir.Constant(i64, r)), stride)])
        for r in range(count)
    ]


def accumulate(builder, n, count, vt, zero, body):
    """A loop ``i = 0, 1, ... < n`` carrying ``count`` vectors, zeros at first:
    ``body(i, vectors)`` emits one iteration and returns their new values. Returns the last
    values (the zeros when ``n <= 0``), with the builder after the loop."""
    i64 = ir.IntType(64)
    entry = builder.block
    loop = builder.function.append_basic_block("simd_loop")
    done = builder.function.append_basic_block("simd_done")
    builder.cbranch(builder.icmp_signed("<=", n, ir.Constant(i64, 0)), done, loop)
    builder.position_at_end(loop)
    i = builder.phi(i64)
    acc = [builder.phi(vt) for _ in range(count)]
    new = body(i, acc)
    i1 = builder.add(i, ir.Constant(i64, 1))
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
