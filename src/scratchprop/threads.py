"""When the Numba backend uses threads, and why: the whole model, in one place.

The problem. A user's process always runs NumPy, and NumPy's OpenBLAS keeps
a pool of worker threads that spin for a while after each threaded product
(OpenBLAS 0.3: up to ~0.1 s). Any second pool that wants the cores then
(Numba's OpenMP workers, MKL's, another OpenBLAS) is starved, and starves
it in turn.
GNU OpenMP's idle workers spin too, and slow the user's next NumPy product
the same way: a 20x slowdown on two cores. ``bench/THREADS.md`` has the
measurements and the commands.

The model, four rules:

1. **Matrix products run in NumPy's own BLAS pool, small ones on the
   calling thread.** The kernels call the OpenBLAS bundled with NumPy
   (:mod:`scratchprop.kernels._blas`), threaded exactly as the user's
   ``np.dot`` is. There is one BLAS pool in the process; whichever of us ran
   last leaves it warm for the other. Below :data:`BLAS_MIN_MACS` a product
   runs on the calling thread instead (``kernels/gemm.py``, a register-blocked
   kernel as fast there as the pool's two threads): the second thread's
   start and the data it moves between the cores' caches cost more than it
   saves, and the caller's next pass (the user's update) finds the results
   in its own core's cache. A layer's products that go to the pool run as
   our kernel, half the rows here and half on the pool's worker
   (``kernels/pair.py``, through OpenBLAS's ``gotoblas_pthread``): the same
   pool and threads, our kernel's rate on each, well above OpenBLAS's own at
   a net's first layer; the bits of the kernel on one thread. The weight
   gradient only while the layer's input fits :data:`PAIR_MAX_BYTES`,
   the input gradient never: OpenBLAS's own product there. Where the weight
   gradient is paired, the forward splits the inner dimension instead of the
   rows, so each thread reads only the rows of ``W`` it made the gradient of
   (and mostly updates): reading the other core's writes costs more than
   the product saves (``split_product``; its two half sums are its bits).
2. **Everything else runs on the calling thread.** The passes around the
   products (bias, ReLU, softmax, loss, masks, most updates) are
   memory-bound and fused into one or two sweeps; two threads did not beat
   one for them up to 1M elements (a region costs a wake-up or a fight with
   the BLAS pool, more than the sweep; ``bench/THREADS.md``). Pooling too.
   Two exceptions. Bound by the core's divider rather than by memory,
   AdaGrad's, RMSprop's and Adam's updates split parameters of
   :data:`UPDATE_PAIR_MIN_ELEMENTS` or more with the BLAS pool's worker as
   rule 1 shares a product (``kernels/optim.py``), the worker taking the
   tail of each (of a net's first layer, the rows whose ``dW`` it made
   and more). Not while a convnet trains (:func:`blas_held_lately`): the
   worker woken by the update would spin in the next step's hold (rule 4).
   And Dropout's masks, which need no data: a fused net's forward has the
   worker draw the next groups' masks while this thread runs a hidden
   layer's product (:data:`DRAWS_PAIR_MIN_ELEMENTS`; ``kernels/mlp.py``).
3. **Numba's threads only for long, BLAS-free regions**, ``parallel across
   the batch`` (or across rows of a weight matrix): a region runs on Numba's
   threads when its work is at least ``*_MIN_ELEMENTS`` (below), Numba has
   two or more threads, no other thread is inside one of our regions, and
   the threading layer does not spin (not ``omp``). Results are the same
   bits either way (fixed chunks, sums in a fixed order).
4. **A convnet's step is parallel across the batch, products included**:
   a Numba convnet holds NumPy's pool at one thread for its whole step
   (:func:`one_thread_blas`, so there is still one pool at work, and no
   OpenBLAS worker left spinning on the core our second thread needs), and
   each thread unfolds, multiplies and lays out (or pools) its own images, its
   products on one BLAS thread. Inside the hold, a long dense product runs
   across our threads too (rows of the batch, rows of ``dW``:
   :data:`DENSE_MIN_MACS`). The chunks run through :func:`run_chunks`:
   compiled code that releases the GIL, on the caller and ``T - 1`` Python
   threads of ours that sleep when idle (no ``prange`` to compile: a parallel
   kernel doubled the convnets' first-step compile time), each thread taking
   the next chunk when free (:data:`CHUNKS_PER_THREAD`), so a thread that
   shares its core with someone else's busy thread does less. A net's
   consecutive convolutions are one region each way (``_numba_conv.chain``):
   images are independent, so each thread takes its chunk of images through
   every layer, and the region's start and uneven end are paid once. Rule 1's two-thread
   product there left each block half read by OpenBLAS's worker on the
   other core, and when the two cores do not share a cache (this project's
   VM, for minutes at a time) rewriting what the other core has read costs
   10-30x the write: the convolution ran 2-2.5x slower (``bench/CONV.md``).
   A convolution outside a net (the user's own class) holds the pool for its
   own call only, and so does an Affine layer fed images (4-D input: a
   convnet's dense layer): a two-thread product there would leave OpenBLAS's
   worker spinning for 0.1 s beside the next convolution's threads, which then
   gain nothing over one thread.

Thresholds follow from one model: a region must cost at most a tenth of the
serial work it splits. Starting one costs :data:`REGION_START_S` (waking
sleeping workers); a kernel's serial cost per element is stated beside its
threshold. :data:`BLAS_MIN_MACS` takes the same model at break-even (the
product's one-core time equal to a region's start): it chooses between two
fast ways of doing a product, not between a region and none;
:data:`UPDATE_PAIR_MIN_ELEMENTS` too, with the start of OpenBLAS's worker,
which spins after each BLAS call (:data:`PAIR_START_S`). They are passed
to kernels as arguments or read in Python, never inside ``@njit`` code, so
the on-disk cache cannot hold a stale value.

The threading layer: unless the user chose one (``NUMBA_THREADING_LAYER`` or
``..._PRIORITY``) or Numba's threads already run, ``workqueue`` is preferred:
its idle workers sleep instead of spinning, so they never starve the user's
NumPy. It cannot run two regions at once; :func:`parallel_region` never asks
it to.
"""

import contextlib
import os
import threading
import time

import numba as _numba

__all__ = [
    "REGION_START_S",
    "PAIR_START_S",
    "BLAS_SPIN_S",
    "NUMGRAD_MIN_ELEMENTS",
    "CONV_MIN_ELEMENTS",
    "DENSE_MIN_MACS",
    "BLAS_MIN_MACS",
    "PAIR_MAX_BYTES",
    "blas_pays",
    "blas_held",
    "can_hold_blas",
    "one_thread_blas",
    "run_chunks",
    "chunks",
    "CHUNKS_PER_THREAD",
    "min_elements",
    "prefer_threading_layer",
    "parallel_region",
    "set_num_threads",
    "get_num_threads",
    "blas_threads",
    "describe",
]

#: Seconds to start a region on sleeping workers (``workqueue``; ``bench/probes.py regions``).
REGION_START_S = 150e-6


#: Seconds for OpenBLAS's worker to take a share (``kernels/pair.py``) after the user's NumPy work:
#: it spins for a while after each BLAS call (``python bench/openblas_worker_probe.py``: 6-7 us).
PAIR_START_S = 10e-6

#: Seconds OpenBLAS's workers spin after their last job before they sleep (its ``thread_timeout``,
#: 2**28 cycles: ~0.1 s here).
BLAS_SPIN_S = 0.1


def min_elements(ns_per_element, payoff=10, start_s=REGION_START_S):
    """Elements from which a region's serial work is ``payoff`` times its start, ``start_s``."""
    return round(payoff * start_s / (ns_per_element * 1e-9))


#: The numerical gradient's ``W1`` block: ~5 ns per element (a short series per hidden unit).
NUMGRAD_MIN_ELEMENTS = min_elements(5)

#: A convolution's unfolded elements (``N * C*FH*FW * OH*OW``): ~2.5 ns each forward (the unfold,
#: its share of the product, the layout), more backward.
CONV_MIN_ELEMENTS = min_elements(2.5)

#: A dense (Affine) product's multiply-adds (``N * D * M``) from which, inside a whole-step hold
#: (rule 4), it runs across our threads: ~0.1 ns each on one BLAS thread.
DENSE_MIN_MACS = min_elements(0.1)

#: A dense product's multiply-adds (float64; float32's count half) from which it goes to NumPy's
#: BLAS pool (rule 1) rather than to our kernel on the calling thread: where its time on one core
#: (~0.03 ns per float64 multiply-add, ``kernels/gemm.py``) reaches a region's start, the cost of
#: the second thread (its worker woken, half the operands and output moved between the cores'
#: caches, read back by the next pass). That is a 784 x 100 layer at batch 64, where the two
#: measured even (``bench/THREADS.md``).
BLAS_MIN_MACS = min_elements(0.03, payoff=1)


#: An Affine layer's input bytes (``N * D * itemsize``) up to which its weight gradient, where it
#: goes to the BLAS pool (:data:`BLAS_MIN_MACS`), runs as our kernel paired on the pool's threads
#: (rule 1), like the forward's product: ``dW = x.T @ dout`` reads ``x``'s columns in strides a row
#: apart, which the prefetcher follows only while ``x`` stays in a core's L2 (2 MiB here); beyond
#: it OpenBLAS's own product is faster (``python bench/pair_probe.py products``).
PAIR_MAX_BYTES = 2 << 20


#: A parameter's elements from which AdaGrad's, RMSprop's and Adam's updates split it with the BLAS
#: pool's worker (rule 2's exception): ~1.5 ns an element on one core (bound by the divider), so
#: the worker's half saves ~0.75 ns an element, which must cover its start.
UPDATE_PAIR_MIN_ELEMENTS = min_elements(0.75, payoff=1, start_s=PAIR_START_S)


#: Dropout draws from which a fused net's forward (``kernels/mlp.py``) has OpenBLAS's worker draw
#: the next masks while this thread runs a hidden layer's product (rule 2's second exception): a
#: draw costs ~1.1 ns here (``np.random.rand``'s MT19937, tempered), which must cover the start.
DRAWS_PAIR_MIN_ELEMENTS = min_elements(1.1, payoff=1, start_s=PAIR_START_S)


def blas_pays(macs, itemsize):
    """Whether a product of ``macs`` multiply-adds of ``itemsize``-byte floats goes to NumPy's BLAS
    (:data:`BLAS_MIN_MACS`), rather than to our one-thread kernel (``kernels/gemm.py``)."""
    return macs * itemsize >= 8 * BLAS_MIN_MACS


_REGION = threading.Lock()  # held by whichever thread runs one of our regions
_CHUNK_POOL = []  # [(executor, workers, pid)] for run_chunks: remade for another size or process


#: Chunks per thread for :func:`run_chunks`. Model: a thread may get half a core (OpenBLAS's
#: worker spins for ~0.1 s after a two-thread product of the user's, on the core of whichever of
#: our threads shares it); with the work in ``k`` chunks per thread, taken in turn by whichever
#: thread is free, the threads end within one chunk of each other, instead of the slowed one
#: taking twice as long. 4 keeps that chunk a small share while chunks stay a few images long.
CHUNKS_PER_THREAD = 4


def chunks(n_units):
    """``(C, T)``: the chunks a region of ``n_units`` (images, rows) cuts its work into, and the
    threads that take them (``T = numba.get_num_threads()``): :data:`CHUNKS_PER_THREAD` per
    thread, at most one per unit (one with one thread). ``C`` follows from ``T`` and ``n_units``
    only, and so do the bits, whether :func:`run_chunks` then runs the chunks at once or in turn."""
    T = _numba.get_num_threads()
    return (1 if T < 2 else max(1, min(CHUNKS_PER_THREAD * T, n_units))), T


def run_chunks(fn, C, args, n_elements, min_elements):
    """``fn(c, w, *args)`` for every chunk ``c`` in ``range(C)``; ``w`` (``< get_num_threads()``)
    is the thread that runs it, for its own buffers. At once, when ``n_elements >= min_elements``,
    there are two threads or more and no other thread is inside one of our regions: the calling
    thread and threads of ours take the chunks in order, each the next one when free. Else all
    here, in order, as ``w = 0``. ``fn`` releases the GIL and writes only chunk ``c``'s outputs
    (and thread ``w``'s buffers), so the bits are the same either way."""
    T = min(_numba.get_num_threads(), C)
    at_once = T >= 2 and n_elements >= min_elements and _REGION.acquire(blocking=False)
    if not at_once:
        for c in range(C):
            fn(c, 0, *args)
        return
    try:
        if not _CHUNK_POOL or _CHUNK_POOL[0][1:] != (T - 1, os.getpid()):
            from concurrent.futures import ThreadPoolExecutor

            if _CHUNK_POOL:  # a forked child has the executor but not its threads: drop it
                old, _, pid = _CHUNK_POOL.pop()
                if pid == os.getpid():
                    old.shutdown()
            pool = ThreadPoolExecutor(T - 1, thread_name_prefix="scratchprop")
            _CHUNK_POOL.append((pool, T - 1, os.getpid()))
        taken = iter(range(C))  # next() under the GIL: each chunk to one thread
        failed = []

        def work(w):
            for c in taken:
                if failed:
                    return
                try:
                    fn(c, w, *args)
                except BaseException as e:
                    failed.append(e)
                    return

        others = [_CHUNK_POOL[0][0].submit(work, w) for w in range(1, T)]
        work(0)
        for f in others:
            f.result()
        if failed:
            raise failed[0]
    finally:
        _REGION.release()


_LAYER_OK = None


def prefer_threading_layer():
    """Put ``workqueue`` first in Numba's threading-layer priority, unless already decided."""
    from numba.np.ufunc import parallel

    user = os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")
    if not user and not parallel._is_initialized and str(_numba.config.THREADING_LAYER) == "default":
        _numba.config.THREADING_LAYER_PRIORITY = ["workqueue", "omp", "tbb"]
    return list(_numba.config.THREADING_LAYER_PRIORITY)


prefer_threading_layer()


@contextlib.contextmanager
def parallel_region(n_elements, min_elements):
    """``with parallel_region(n, MIN) as threaded:``: whether this region may use Numba's threads.

    True only when ``n_elements >= min_elements``, Numba has two or more
    threads, its layer is not ``omp`` (whose idle workers spin against the
    BLAS pool) and no other thread is inside one of our regions; the caller
    then runs the ``prange`` kernel, else the serial one (the same bits).
    """
    global _LAYER_OK
    threaded = n_elements >= min_elements and _numba.get_num_threads() >= 2
    if threaded and _LAYER_OK is None:
        _LAYER_OK = _numba.threading_layer() != "omp"
    threaded = threaded and _LAYER_OK and _REGION.acquire(blocking=False)
    try:
        yield threaded
    finally:
        if threaded:
            _REGION.release()


_SET_BLAS_THREADS = []  # [(set, get)] of NumPy's OpenBLAS, once looked up; [None] without one


def _blas_setter():
    if not _SET_BLAS_THREADS:
        import ctypes

        from .kernels import _blas

        found = None
        if _blas.NAME == "numpy":
            lib = ctypes.CDLL(_blas.PATH)
            try:
                set_, get = lib.scipy_openblas_set_num_threads64_, lib.scipy_openblas_get_num_threads64_
            except AttributeError:
                pass
            else:
                set_.argtypes, set_.restype, get.restype = [ctypes.c_int], None, ctypes.c_int
                found = (set_, get)
        _SET_BLAS_THREADS.append(found)
    return _SET_BLAS_THREADS[0]


_HOLD = threading.Lock()
_HELD = [0, None, -1e9]  # holds open (any thread), the pool's count before the first, when the last ended


@contextlib.contextmanager
def one_thread_blas():
    """``with one_thread_blas() as ok:`` NumPy's OpenBLAS runs each product on the calling thread
    until the block ends; ``ok`` is False, and nothing changed, when the kernels' BLAS is not
    NumPy's (rule 4's chunks then run in turn).

    The count is the process's (OpenBLAS has no per-thread count: its ``_local`` setter is global
    too), so a product another thread makes meanwhile runs on one thread as well. Holds nest and
    overlap across threads: the first sets one thread, the last one out restores the count."""
    found = _blas_setter()
    if found is None:
        yield False
        return
    set_, get = found
    with _HOLD:
        if _HELD[0] == 0:
            _HELD[1] = get()
            set_(1)
        _HELD[0] += 1
    try:
        yield True
    finally:
        with _HOLD:
            _HELD[0] -= 1
            if _HELD[0] == 0:
                set_(_HELD[1])
                _HELD[2] = time.perf_counter()


def can_hold_blas():
    """Whether :func:`one_thread_blas` can hold the kernels' BLAS (NumPy's pool)."""
    return _blas_setter() is not None


def blas_held():
    """Whether a :func:`one_thread_blas` hold is open (in any thread)."""
    return _HELD[0] > 0


def blas_held_lately():
    """Whether a :func:`one_thread_blas` hold is open or ended less than :data:`BLAS_SPIN_S` ago: a
    convnet is training, and OpenBLAS's worker, woken now, would still spin in its next hold."""
    return _HELD[0] > 0 or time.perf_counter() - _HELD[2] < BLAS_SPIN_S


def _blas_controller():
    """threadpoolctl's handle on the kernels' BLAS (NumPy's pool), or ``None``."""
    from threadpoolctl import ThreadpoolController

    from .kernels import _blas

    pools = ThreadpoolController().select(user_api="blas")
    if _blas.NAME == "numpy":
        mine = [p for p in pools.lib_controllers if os.path.realpath(p.filepath) == _blas.PATH]
        if mine:
            return mine[0]
    return None


def set_num_threads(n):
    """Threads for Numba's regions and for the BLAS pool (NumPy's, so the user's products too).

    ``n`` from 1 to ``NUMBA_NUM_THREADS`` (Numba raises otherwise).
    """
    _numba.set_num_threads(n)
    ctl = _blas_controller()
    if ctl is not None:
        ctl.set_num_threads(n)


def get_num_threads():
    """Numba's thread count (regions of rule 3)."""
    return _numba.get_num_threads()


def blas_threads():
    """Threads of the kernels' BLAS pool, or ``None`` when not known."""
    ctl = _blas_controller()
    return None if ctl is None else ctl.num_threads


def describe():
    """One line: the kernels' BLAS and its threads (for ``scratchprop info`` and the benchmarks)."""
    from .kernels import _blas

    n = blas_threads()
    where = "NumPy's OpenBLAS (one pool with NumPy)" if _blas.NAME == "numpy" else _blas.PATH
    return f"{where}, {n if n is not None else '?'} threads"
