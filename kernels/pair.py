"""One product of :mod:`.gemm`, its rows in two halves: this thread's and OpenBLAS's worker's.

NumPy's bundled OpenBLAS exports ``gotoblas_pthread(n, function, args, stride)``: it runs
``function(args + i * stride)`` on the calling thread (``i = 0``) and on ``n - 1`` of its own
workers, the pool that the user's ``np.dot`` uses and that spins for a while after each call. With
``function`` a Numba ``cfunc`` over :func:`.gemm.product`, a product runs on two threads without
a second pool, at our kernel's rate per thread, which at a net's first layer is well above
OpenBLAS's own (``bench/THREADS.md``, "Our products on OpenBLAS's threads").

The bits are :func:`.gemm.product`'s: each element of ``C`` is the same sum whichever thread
writes its row, so a paired product equals the same product on one thread. Where the pool has one
thread (the user's limit, a convnet's hold) the whole product runs here.

:func:`split_product` pairs a layer's forward the other way, by halves of the inner dimension
(``x @ W`` as ``x[:, :h] @ W[:h] + x[:, h:] @ W[h:]``), so that each thread reads only the rows
of ``W`` whose gradient it makes in :func:`paired_product`, most of which it also updates
(``kernels/optim.py`` gives the worker the tail of a large parameter). Row halves of ``x @ W``
each read all of ``W``, the part the other core updated from its cache, at ~0.1 ms a MB here
(``bench/THREADS.md``). Its bits are those two sums added, on one thread or two.

:func:`share_address` gives the ``cfunc``'s address for a dtype (compiled on first use, then from
Numba's cache); a kernel takes it as an argument (``fn``, 0: none), so no address is frozen into
the cache. The library's symbols are bound by name, as :mod:`._blas` binds its CBLAS.
"""

import ctypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from . import _blas
from .config import CACHE, INLINE, SERIAL, guard_cache
from .gemm import FAST, ROWS, product

__all__ = [
    "AVAILABLE",
    "BLAS",
    "HERE",
    "PAIR",
    "PAIR_FORWARD",
    "share_address",
    "compiled_share",
    "compiled",
    "call_share",
    "paired_product",
    "split_product",
    "split_at",
    "rows_record",
    "RECORD",
    "void_at",
    "pool_threads",
    "run_pair",
    "f64_at",
    "f32_at",
]

#: Where a layer's products run (a kernel's ``mode``; the caller's choice, ``scratchprop.threads``):
#: NumPy's BLAS; this thread (:func:`.gemm.product`); paired here (:func:`paired_product`); the
#: forward's product paired and the backward's in BLAS.
BLAS, HERE, PAIR, PAIR_FORWARD = 0, 1, 2, 3

_REC = 11  # int64 per half: A, sa, sk, a_len, B, K, M, C, rows, add, alpha (float64 bits)
#: int64 fields of a product's record (:func:`rows_record`; :func:`share_address`'s share runs it).
RECORD = _REC
# The shares hand ``product`` a 2-D ``A`` (of one row: it reads ``A`` through ``sa``, ``sk`` only), the
# type the kernels pass it, so a cold start compiles ``product`` once for both.


def _stand_ins():
    """Never-called stand-ins where OpenBLAS's are missing (no share address is then nonzero): a
    kernel compiled in either kind of process links in the other. Compiled only there."""

    @cfunc(types.int32(types.int32, types.int64, types.int64, types.int32))
    def no_run(n, function, args, stride):
        return 0

    @cfunc(types.int32())
    def one_thread():
        return 1

    _KEEP.extend((no_run, one_thread))
    return no_run.address, one_thread.address


_KEEP = []  # the stand-ins' cfuncs, alive as long as their addresses are bound


def _bind():
    """Bind the two symbols the kernels call by name: OpenBLAS's ``gotoblas_pthread`` and thread
    count where NumPy's bundled OpenBLAS has them (and :mod:`.gemm` runs here); else stand-ins.
    Returns whether the real ones are bound."""
    found = None
    if _blas.NAME == "numpy" and FAST:
        lib = ctypes.CDLL(_blas.PATH)
        try:
            found = [
                ctypes.cast(f, ctypes.c_void_p).value
                for f in (lib.gotoblas_pthread, lib.scipy_openblas_get_num_threads64_)
            ]
        except AttributeError:
            pass
    run, threads = found or _stand_ins()
    llvm.add_symbol("scratchprop_gotoblas_pthread", run)
    llvm.add_symbol("scratchprop_blas_threads", threads)
    return found is not None


#: Whether products can be paired here: NumPy's own OpenBLAS with ``gotoblas_pthread``, and the
#: machine runs :mod:`.gemm` (AVX2 and FMA).
AVAILABLE = _bind()
_run = types.ExternalFunction(
    "scratchprop_gotoblas_pthread", types.int32(types.int32, types.int64, types.int64, types.int32)
)
_threads = types.ExternalFunction("scratchprop_blas_threads", types.int32())


def _pointer_to(dt):
    @intrinsic
    def at(typingctx, addr):
        sig = (types.voidptr if dt is None else types.CPointer(dt))(types.int64)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

        return sig, codegen

    return at


#: ``f64_at(address)``, ``f32_at(address)``: a typed pointer for ``carray`` in a share's ``cfunc``;
#: ``void_at(address)``: an untyped one (``carray(void_at(a), shape, dtype=...)``).
f64_at, f32_at, void_at = _pointer_to(types.float64), _pointer_to(types.float32), _pointer_to(None)


@njit(**INLINE)
def pool_threads():
    """OpenBLAS's thread count now (1 where the symbols are stand-ins)."""
    return _threads()


@njit(**INLINE)
def run_pair(rec, fn):
    """``fn(rec[0])`` on this thread and ``fn(rec[1])`` on OpenBLAS's worker, at once; returns
    when both have. ``rec``: a C-contiguous ``(2, n)`` int64 array of the two records."""
    _run(2, fn, rec.ctypes.data, rec.shape[1] * 8)


@njit(**INLINE)
def _share(arg, A, B, C):
    """A half's product from its record at ``arg``, given its three pointers (typed by dtype)."""
    r = carray(arg, (_REC,), dtype=np.int64)
    alpha = carray(arg, (_REC,), dtype=np.float64)[10]
    product(
        carray(A, (1, r[3])), r[1], r[2], carray(B, (r[5], r[6])), carray(C, (r[8], r[6])), alpha, r[9] != 0
    )


def _share_f64(arg):
    r = carray(arg, (_REC,), dtype=np.int64)
    _share(arg, f64_at(r[0]), f64_at(r[4]), f64_at(r[7]))


def _share_f32(arg):
    r = carray(arg, (_REC,), dtype=np.int64)
    _share(arg, f32_at(r[0]), f32_at(r[4]), f32_at(r[7]))


_SHARES = {}


def share_address(dtype):
    """The address of the half-product ``cfunc`` for ``dtype`` (float32 or float64), or 0 when
    products cannot be paired here."""
    return compiled_share(_SHARES, dtype, _share_f64, _share_f32)


def compiled_share(shares, dtype, f64, f32):
    """The address of a share ``cfunc`` for ``dtype``: ``f64`` or ``f32`` (:func:`compiled`)."""
    dt = np.dtype(dtype)
    return compiled(shares, dt, f64 if dt == np.float64 else f32)


def compiled(shares, key, function):
    """The address of ``function`` as a share ``cfunc`` (``void(void *record)``), compiled on first
    use (then from Numba's cache) and kept in ``shares[key]``; 0 where nothing can be shared with
    OpenBLAS's worker (:data:`AVAILABLE`)."""
    if not AVAILABLE:
        return 0
    if key not in shares:
        shares[key] = cfunc(types.void(types.voidptr), cache=CACHE, error_model="numpy")(function).address
    return shares[key]


@intrinsic
def call_share(typingctx, fn, record):
    """Call the share ``cfunc`` at address ``fn`` on the record at address ``record`` (a share that
    hands part of its record to another share: a product to :func:`share_address`'s)."""

    def codegen(context, builder, signature, args):
        void_p = ir.IntType(8).as_pointer()
        share = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [void_p]).as_pointer())
        builder.call(share, [builder.inttoptr(args[1], void_p)])
        return context.get_dummy_value()

    return types.void(types.int64, types.int64), codegen


@njit(**SERIAL)
def rows_record(rec, A, sa, sk, B, C, lo, hi, alpha, add):
    """Write into ``rec`` (int64, :data:`RECORD` of them or more) the record of ``C``'s rows
    ``lo:hi`` of :func:`.gemm.product`'s ``C = alpha * op(A) @ B`` (plus ``C`` with ``add``)."""
    K, M = B.shape
    off = lo * sa
    rec[0] = A.ctypes.data + off * A.itemsize
    rec[1], rec[2] = sa, sk
    rec[3] = A.size - off
    rec[4], rec[5], rec[6] = B.ctypes.data, K, M
    rec[7], rec[8] = C.ctypes.data + lo * M * C.itemsize, hi - lo
    rec[9] = add
    rec.view(np.float64)[10] = alpha


@njit(**INLINE)
def split_at(K):
    """Where :func:`paired_product` cuts ``K`` rows of ``C`` (whole blocks for this thread) and
    :func:`split_product` an inner dimension of ``K``: the same cut, so the forward's halves of ``W``
    are the rows of ``dW`` each thread makes."""
    return (K // 2 + ROWS - 1) // ROWS * ROWS


@njit(**SERIAL)
def paired_product(A, sa, sk, B, C, alpha, add, fn):
    """:func:`.gemm.product` (``C = alpha * op(A) @ B``, plus ``C`` with ``add``), ``C``'s first rows
    on this thread and the rest on OpenBLAS's worker through ``fn`` (:func:`share_address`; 0, or a
    pool of one thread: all here). ``A``, ``B``, ``C`` C-contiguous, one dtype; ``op(A)[i, k] =
    A.flat[i * sa + k * sk]``; ``alpha`` is taken as float64, as the kernel takes it."""
    N = C.shape[0]
    if fn == 0 or N < 2 * ROWS or _threads() < 2:
        product(A, sa, sk, B, C, alpha, add)
        return
    cut = split_at(N)  # whole blocks for this thread
    rec = np.empty((2, _REC), np.int64)
    rows_record(rec[0], A, sa, sk, B, C, 0, cut, alpha, add)
    rows_record(rec[1], A, sa, sk, B, C, cut, N, alpha, add)
    run_pair(rec, fn)


@njit(**SERIAL)
def _part(rec, A, B, C, k0, k1, add):
    """The record of ``C (+)= A[:, k0:k1] @ B[k0:k1]`` (``A (N, K)``, ``B (K, M)``, ``C (N, M)``)."""
    K, M = B.shape
    rec[0] = A.ctypes.data + k0 * A.itemsize
    rec[1], rec[2] = K, 1
    rec[3] = A.size - k0
    rec[4], rec[5], rec[6] = B.ctypes.data + k0 * M * B.itemsize, k1 - k0, M
    rec[7], rec[8] = C.ctypes.data, C.shape[0]
    rec[9] = add
    rec.view(np.float64)[10] = 1.0


@njit(**SERIAL)
def split_product(A, B, C, add, part, fn):
    """``C = A @ B`` (plus ``C`` with ``add``) as two sums over the halves of the inner dimension
    (:func:`split_at`): ``(C + A[:, :h] @ B[:h]) + A[:, h:] @ B[h:]``, the first on this thread,
    the second into ``part`` on OpenBLAS's worker (through ``fn``), then added here. ``A (N, K)``,
    ``B (K, M)``, ``C`` and ``part (N, M)`` C-contiguous, one dtype, ``part`` apart from the rest.

    Why not :func:`paired_product`'s rows of ``C``: each thread would read all of ``B``, and where
    ``B`` is a layer's weights, which the update rewrites by rows (the rows of ``dW`` each thread
    made, :mod:`.optim`), half of it from the other core's cache, slower than the product's own
    reads. Here each thread reads only its rows of ``B``. Where the pool has one thread both sums
    run here, through the same share: the bits depend on the shapes alone. ``fn`` must be a share
    (:func:`share_address`): the layers split only where they pair (:data:`AVAILABLE`)."""
    N, K = A.shape
    M = B.shape[1]
    if fn == 0:
        raise ValueError("split_product needs the products' share (pair.share_address)")
    h = split_at(K)
    rec = np.empty((2, _REC), np.int64)
    if h >= K:  # too short to split: one sum, here
        _part(rec[0], A, B, C, 0, K, add)
        call_share(fn, rec.ctypes.data)
        return
    _part(rec[0], A, B, C, 0, h, add)
    _part(rec[1], A, B, part, h, K, False)
    if _threads() >= 2:
        run_pair(rec, fn)
    else:
        call_share(fn, rec.ctypes.data)
        call_share(fn, rec.ctypes.data + _REC * 8)
    for i in range(N):
        for j in range(M):
            C[i, j] = C[i, j] + part[i, j]


guard_cache(globals())
