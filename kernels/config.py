"""Every JIT flag and threading knob of the kernels, in one place.

Kernels are decorated with :data:`SERIAL` or :data:`PARALLEL` (``**`` these
into ``numba.njit``). Importing this module decides, once per process:

``CACHE``
    ``cache=True`` when Numba has somewhere writable to put the cache of
    this folder's kernels (``NUMBA_CACHE_DIR`` if set, else ``__pycache__``
    here, else the user-wide cache). Otherwise one :class:`CacheWarning` is
    issued and the kernels run uncached (compiled in every process) instead
    of Numba raising at import. A ``NUMBA_CACHE_DIR`` that is set but not
    writable also disables the cache: the user asked for the cache to go
    there, not beside the package.
``FASTMATH``
    ``False``. Measured on the softmax-with-loss row loop (100k elements):
    610 us plain, 605 us with ``{nsz, arcp, contract, afn}`` (``exp`` is a
    libm call either way), 637 us adding ``reassoc``, which also changed the
    loss's last bits (sums reordered by vector width). No ``nnan``/``ninf``
    ever: NaN and inf must propagate as in NumPy.
``error_model="numpy"``
    Division by zero gives inf/nan like NumPy instead of raising (an
    exception raised inside ``prange`` turns into a SystemError).

The threading layer: :func:`prefer_threading_layer` puts ``omp`` first (then
``workqueue``) unless the user chose one (``NUMBA_THREADING_LAYER`` /
``NUMBA_THREADING_LAYER_PRIORITY``). Measured on a 2-core VM, starting a
``prange`` region costs ~2 us with OpenMP and ~120 us with ``workqueue``
(its sleeping workers need a wake-up each time); ``tbb`` schedules
dynamically. OpenMP's spinning pool must not meet OpenBLAS's spinning pool:
see :data:`BLAS_SPIN_S`. Determinism never depends on the layer: every
reduction runs in a fixed order independent of the thread count.
"""
import os
import warnings

import numba

__all__ = ["CACHE", "FASTMATH", "SERIAL", "PARALLEL", "RELU_PARALLEL_MIN", "SOFTMAX_PARALLEL_MIN",
           "PARALLEL_MIN_ELEMENTS", "STEP_PARALLEL_MIN", "STEP_SPLIT_MAX", "STEP_SPLIT_BLOCKS",
           "BLAS_SPIN_S", "BLAS_SERIAL_BELOW", "AFFINE_ONE_THREAD_BELOW",
           "AFFINE_ONE_THREAD_BELOW_OPENBLAS", "FEW_ROWS", "TINY", "NCHUNKS",
           "CacheWarning", "cache_location", "prefer_threading_layer"]


class CacheWarning(RuntimeWarning):
    """No writable cache location: the kernels are compiled in every process."""


def _probe():  # a function of this folder for Numba's cache locators to place
    pass


def cache_location():
    """The directory Numba would cache this folder's kernels in, or ``None``.

    Uses Numba's own locators (in Numba's order), so the answer is what
    ``cache=True`` would do, without letting it raise.
    """
    from numba.core.caching import FunctionCache

    here = os.path.abspath(__file__)
    if numba.config.CACHE_DIR:
        from numba.core.caching import UserProvidedCacheLocator
        loc = UserProvidedCacheLocator.from_function(_probe, here)
        return None if loc is None else loc.get_cache_path()
    for cls in FunctionCache._impl_class._locator_classes:
        try:
            loc = cls.from_function(_probe, here)
        except Exception:  # a locator that cannot handle this file
            loc = None
        if loc is not None:
            return loc.get_cache_path()
    return None


def _decide_cache():
    if os.environ.get("SCRATCHPROP_NO_CACHE"):
        return False
    where = cache_location()
    if where is None:
        asked = numba.config.CACHE_DIR
        why = (f"NUMBA_CACHE_DIR={asked!r} is not writable" if asked
               else "no writable cache location was found")
        warnings.warn(f"scratchprop.kernels: {why}; the Numba kernels run uncached "
                      f"(compiled in every process, a few seconds each)", CacheWarning, stacklevel=2)
        return False
    return True


CACHE = _decide_cache()
FASTMATH = False
_COMMON = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy")
#: ``njit`` flags of a serial kernel.
SERIAL = dict(_COMMON)
#: ``njit`` flags of a kernel with a ``prange`` loop.
PARALLEL = dict(_COMMON, parallel=True)

#: ``prange`` thresholds in elements (below: the serial kernel), measured on
#: 2 cores with the OpenMP layer. ReLU is memory-bound and allocates its
#: outputs: two threads only won from ~0.5-1M elements. Softmax-with-loss
#: is ``exp``/``log``-bound: two threads were 2x faster from 10k elements
#: (1000 rows of 10) and broke even around 3-4k.
RELU_PARALLEL_MIN = 1_000_000
#: The generic threshold for other kernels' elementwise / row-wise work
#: (thread start-up under OpenMP ~2 us, i.e. ~25k cheap element operations).
PARALLEL_MIN_ELEMENTS = 25_000
SOFTMAX_PARALLEL_MIN = 4_096
#: The fused net step (``two_layer_threads.step_parallel``) runs its row passes on
#: Numba's threads from this many hidden activations (``N * H``), and only
#: when the BLAS shares Numba's pool. Measured, 784-100-10 float64, MKL:
#: batch 100 (10k) 260 us serial / 287 us parallel, 257 (26k) 613 / 644,
#: 1000 (100k) 2.40 / 2.34 ms, 10000 25.7 / 24.6 ms.
STEP_PARALLEL_MIN = 50_000
#: Below this many hidden activations (``N * H``) the fused SGD step keeps
#: ``W1``'s rows in :data:`STEP_SPLIT_BLOCKS` fixed blocks, one thread each
#: (``two_layer_threads.step_split``; with MKL, or SciPy's OpenBLAS, whose
#: thread count can be set). Measured as above: batch 8 53 -> 45 us,
#: 32 158 -> 103, 64 214 -> 175, 100 314 -> 271; batch 257 679 -> 751
#: (slower). With SciPy's OpenBLAS: batch 32 171 -> 117, 100 387 -> 320.
STEP_SPLIT_MAX = 20_000
#: Row blocks of ``W1`` in ``step_split``: fixed (not the thread count), so
#: the partial sums, and the results, are the same for any thread count.
STEP_SPLIT_BLOCKS = 2
#: OpenBLAS's idle workers spin for ~0.1 s (2**28 cycles) after a threaded
#: product; a ``prange`` region started within this many seconds of one of
#: our products would have to wait for them (measured: 6 ms instead of
#: 80 us under OpenMP), so elementwise kernels stay serial meanwhile.
BLAS_SPIN_S = 0.2
#: Products of fewer multiply-adds (``m * n * k``) than this run on one BLAS
#: thread. Measured on 2 cores: with MKL on two threads the idle worker
#: spins after each product and slowed the NumPy code that followed (the
#: book net's ``params -= lr * grad``: batch-1 step 156 us with two threads,
#: 126 us with one); from 16 rows of 784x100 (1.25M) two threads win.
BLAS_SERIAL_BELOW = 1_000_000
#: Below this many multiply-adds (``N * D * M``), with MKL, ``Affine``
#: runs each product on one BLAS thread (see
#: :mod:`.affine`): ``forward`` on the calling thread, ``backward`` as
#: ``backward_tasks``. The training step's ``W -= lr * dW`` that follows is
#: then not slowed by ``W`` lines cached on the other core. Measured, the
#: book's net, 784-100-10 float64, MKL, one train step (``backward_tasks``
#: in both), threaded forward / one thread: batch 64 509 / 441 us,
#: 100 710 / 601, 160 952 / 939, 256 1288 / 1434. Above it ``backward_tasks``
#: also lost on its own: ``Affine.backward`` at batch 1000 2.11 ms against
#: 1.88 ms threaded (float64), at 10000 float32 15.8 against 12.5 ms.
AFFINE_ONE_THREAD_BELOW = 10_000_000
#: The same with SciPy's OpenBLAS, whose one-thread product is slower (784x100 float64 at
#: batch 100: 269 us on one thread, 187 us NumPy's on two; MKL 180 us on one thread), so a
#: layer's forward + backward alone stayed faster than NumPy's only below ~6M: measured,
#: batch 100, 269 + 296 us against NumPy's 187 + 364. In the book's train step (one thread /
#: threaded): batch 64 571 / 815 us, 100 925 / 916.
AFFINE_ONE_THREAD_BELOW_OPENBLAS = 6_000_000
#: A small ``a @ b`` (``b`` not transposed) with at most this many rows goes
#: to SciPy's OpenBLAS, whichever library takes the rest: MKL packs the whole
#: ``b`` even for a few rows. Measured, ``x (N, 784) @ W (784, 100)`` on one
#: thread: N = 1-8 19-29 us in MKL, 9-21 us in OpenBLAS; N = 12 MKL wins.
#: For ``dW = x.T @ dout`` and ``dx = dout @ W.T`` MKL was as fast or faster.
FEW_ROWS = 8
#: ... and so does any ``a @ b`` / ``a.T @ b`` of at most this many
#: multiply-adds: the fused step's ``h @ W2`` and ``h.T @ dy`` (100x100x10:
#: 3.6 / 3.7 us in OpenBLAS, 6.3 / 6.2 us in MKL; ``dy @ W2.T``, with ``b``
#: transposed, was faster in MKL, 3.9 against 5.3 us).
TINY = 131_072
#: Fixed number of chunks for ``prange`` loops, independent of the thread
#: count, so that chunked reductions sum in the same order for any count.
NCHUNKS = 16


def prefer_threading_layer():
    """Put ``omp`` first (then ``workqueue``) in Numba's threading-layer priority, unless decided.

    A no-op when the user set ``NUMBA_THREADING_LAYER(_PRIORITY)`` or Numba's
    threads are already running. Returns the priority list in force.
    """
    from numba.np.ufunc import parallel

    user = os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")
    if not user and not parallel._is_initialized and str(numba.config.THREADING_LAYER) == "default":
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    return list(numba.config.THREADING_LAYER_PRIORITY)
