"""The one path from a Numba layer's method to its kernel: what every wrapper would repeat.

A wrapper validates its input (``_validate``, the same checks as the
reference), then asks this module:

* :func:`kernel_dtype` — the dtype NumPy would compute in, if the kernels cover
  it (float32 / float64); ``None`` means "run the reference's NumPy code";
* :func:`as_c` / :func:`converted` — the array C-contiguous in that dtype,
  copied only when needed (``converted`` reuses a buffer the layer keeps);
* :func:`elementwise` — all of the above for a flat elementwise kernel, plus
  the NumPy path for arrays too small for a kernel call to pay
  (:data:`KERNEL_MIN_ELEMENTS`), output allocation and reshaping;
* :func:`kernel_targets` — a loss's labels or one-hot rows, kernel-ready and
  checked in one kernel pass (the reference's check only for a suspect target).

Serial or parallel: the choice belongs to :mod:`scratchprop.threads`. By its
model, elementwise and per-row passes run on the calling thread (they are
memory-bound and a region costs more than the sweep); a kernel that has a
long BLAS-free loop takes ``parallel=threads.parallel_region(n, *_MIN_ELEMENTS)``
as an argument, so no threshold is frozen into the Numba cache.
"""

import sys

import numpy as np

from . import _validate as check
from . import tolerances
from .kernels import softmax_loss as _K_sl

__all__ = [
    "KERNEL_MIN_ELEMENTS",
    "C_WRITEABLE",
    "worth_a_kernel",
    "kernel_dtype",
    "own_dtype",
    "as_c",
    "converted",
    "spare",
    "elementwise",
    "kernel_targets",
]

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
C_WRITEABLE = 0x0401  # NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_WRITEABLE, bits of ndarray.flags.num

#: Elementwise arrays below this many elements run NumPy code. Model: a kernel call costs a
#: few microseconds more than one ufunc call (Numba's argument typing, flattening, the outputs)
#: and saves NumPy's extra passes, ~1 ns per element each: it pays from a few thousand
#: elements (``python bench/probes.py dispatch`` measures both sides). A kernel that saves more
#: or less per element pays from proportionally fewer or more (Relu's, which saves two passes
#: and is called directly: half; Dropout's: a quarter forward, where it also saves ``rand``'s
#: draws; four times backward, against NumPy's one pass).
KERNEL_MIN_ELEMENTS = 4096


def worth_a_kernel(a):
    """Whether ``a`` is an ndarray with at least :data:`KERNEL_MIN_ELEMENTS` elements: the cheap
    first test of a wrapper, so that small inputs run the reference's code with no extra cost."""
    return type(a) is np.ndarray and a.size >= KERNEL_MIN_ELEMENTS


def kernel_dtype(*arrays):
    """NumPy's result dtype for ``arrays`` (and scalars) if it is float32/float64, else ``None``."""
    dt = np.result_type(*arrays)
    return dt if dt == F64 or dt == F32 else None


def own_dtype(a):
    """``a``'s own dtype if the kernels take it as it is (native float32/float64), else ``None``:
    for operations that keep the input's dtype (ReLU's copy keeps a byte-swapped one)."""
    dt = a.dtype
    return dt if dt == F64 or dt == F32 else None


def as_c(a, dt):
    """``a`` as a C-contiguous array of ``dt``; no copy when it already is one."""
    if a.dtype == dt and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=dt)


def converted(x, dt, buf):
    """``x`` in a C-contiguous array of ``dt``: ``x`` itself, else copied into ``buf`` (reused when
    its shape and dtype fit, else a new one). ``dt`` is NumPy's promotion of ``x``'s dtype."""
    if x.dtype == dt and x.flags.c_contiguous:
        return x
    if buf is None or buf.shape != x.shape or buf.dtype != dt:
        buf = np.empty(x.shape, dt)
    np.copyto(buf, x, casting="unsafe")
    return buf


def grown(work, n, dt):
    """A flat work array of at least ``n`` elements of ``dt``: ``work`` when it is one, else a new
    one (kept by the caller and reused: a fresh one per call would fault its pages in again)."""
    if work is None or work.size < n or work.dtype != dt:
        work = np.empty(n, dt)
    return work


def spare(held, shape, dt, mine=None):
    """An uninitialised ``shape``/``dt`` array for a layer's output: one of ``held`` (the layer's
    list of arrays it made) that nothing else references any more, else a new one that joins
    ``held`` (which keeps the last two). ``mine`` is the layer attribute the result will replace
    (``self.dW``): that reference does not count.

    Why: a fresh array of a few hundred KB each step lands on pages that glibc gave back at the
    end of the last step, and faulting them in costs more than the pass that fills them
    (``bench/THREADS.md``, "What the allocator costs"). An array that only ``held`` references
    cannot be seen by anyone when it is overwritten; one a caller still holds (the last step's
    gradients, a view) is left alone. So the same array serves step after step (and stays in
    cache), and two alternate where the caller holds the last step's result during the call
    (``grads = net.gradient(x, t)`` in the book's loop).
    """
    for a in reversed(held):  # the newest first: the same array each step stays in cache
        if _refs(a) == _BASE[a is mine] and a.shape == shape and a.dtype == dt:
            return a
    a = np.empty(shape, dt)
    held.append(a)
    if len(held) > 2:
        del held[0]
    return a


def _refs(a):
    return sys.getrefcount(a)


def _free_counts():
    """What :func:`_refs` reads inside :func:`spare` for an array that only ``held`` holds, and for
    one that is also ``mine``: measured through ``spare`` itself on this interpreter, not assumed."""
    global _refs
    real, seen = _refs, []

    def refs(a):  # the same frame as _refs: one argument, then getrefcount's
        seen.append(sys.getrefcount(a))
        return -1

    class Box:
        pass

    _refs = refs
    try:
        for as_mine in (False, True):
            box = Box()
            box.attr = np.empty(1)
            held = [box.attr]
            if not as_mine:
                box.attr = None
            spare(held, (1,), F64, box.attr)
    finally:
        _refs = real
    return tuple(seen)


_BASE = (0, 0)  # spare reads it while _free_counts measures (its _refs then never matches)
_BASE = _free_counts()


def _flat(a, dt=None):
    if (dt is None or a.dtype == dt) and a.flags.c_contiguous:
        return a.reshape(-1)
    return np.ascontiguousarray(a, dtype=dt).reshape(-1)


def elementwise(kernel, dt, x, *same, extra=(), outs=(None,), min_elements=None, state=None):
    """Run a flat elementwise ``kernel(x, *same, *extra, *outs)``; ``None`` if NumPy should.

    ``x`` and the arrays ``same`` (of ``x``'s shape) are converted to the compute
    dtype ``dt`` (:func:`kernel_dtype` or :func:`own_dtype`; ``None``: no kernel);
    arrays in ``extra`` (masks, random draws) are flattened as they are, scalars
    passed as they are. ``state`` (a random generator's state array) goes first when given.
    ``outs`` lists each output's dtype (``None``: ``dt``). Returns the
    outputs shaped like ``x``, or ``None`` when ``dt`` is not a kernel dtype or
    ``x`` has fewer than ``min_elements`` (default :data:`KERNEL_MIN_ELEMENTS`)
    elements: the caller then runs the reference's code, which also defines
    every edge case.
    """
    if dt is None or x.size < (KERNEL_MIN_ELEMENTS if min_elements is None else min_elements):
        return None
    # plain loops, not comprehensions: this runs on every layer call (a few us matter at 4k elements)
    args = [_flat(x, dt)]
    for a in same:
        args.append(_flat(a, dt))
    for a in extra:
        args.append(_flat(a) if type(a) is np.ndarray else a)
    n, shape = x.size, x.shape
    out = [np.empty(n, dt if o is None else o) for o in outs]
    if state is not None:
        kernel(state, *args, *out)
    else:
        kernel(*args, *out)
    return [o.reshape(shape) for o in out]


# half the allowed |row sum - 1|: a row between this and the tolerance gets NumPy's own check
SUSPECT_SUM = {dt: 0.5 * tolerances.target_sum(dt) for dt in (F32, F64)}


def kernel_targets(layer, t, N, C, dt):
    """A loss's targets kernel-ready (:func:`scratchprop._validate.kernel_targets`) and checked
    in one kernel pass instead of NumPy's four; a suspect target gets the reference's check,
    which raises its error (or passes a probability row whose sum is at the tolerance's edge)."""
    got = check.kernel_targets(layer, t, N, C, dt)
    if _K_sl.targets_suspect(got[2], got[3], C, SUSPECT_SUM[dt]):
        if got[1] is None:  # integer labels: the kernel's range test is exact
            check.label_error(layer, t, N, C, dt)
        check.targets(layer, t, N, C, dt)
    return got
