"""Which BLAS the kernels' matrix products call, decided once per process.

The kernels call four Fortran-interface routines by symbol name
(``scratchprop_sgemm``, ``scratchprop_dgemm``, ``scratchprop_sgemv``,
``scratchprop_dgemv``, see :mod:`._blas`) and ``scratchprop_blas_threads_local``
(the calling thread's thread count); importing this module points those names
at one library (small ``x @ W`` products of a few rows go to SciPy's OpenBLAS
on one thread whatever the choice, see ``config.FEW_ROWS`` and the end of this
file):

``mkl``
    Intel oneMKL from the ``mkl`` wheel (``pip install scratchprop[mkl]``),
    Linux x86-64. Measured on the 2-core Xeon these numbers come from,
    float64 ``x @ W1`` (10000x784 @ 784x100) takes 9-10 ms in MKL against
    16-18 ms in OpenBLAS, and the five products of a train step 23 ms
    against 33 ms; float32 is about even. MKL is loaded with its GNU OpenMP
    threading layer, i.e. the same ``libgomp`` thread pool as Numba's
    ``omp`` layer (one pool, nothing spinning against it), the LP64
    interface, and conditional numerical reproducibility in strict mode
    (``MKL_CBWR = <auto branch>, STRICT``), which keeps every product
    bit-identical for any thread count at no measured cost. A user's own
    ``MKL_CBWR`` is respected.

    PyTorch links its own MKL statically and, in the same process, shares
    this one's settings: the strict mode then applies to torch's products
    too (measured: its batch-1 train step 95 -> 188 us, batch 32 188 -> 249
    us; batch 1000 and up unchanged), and ``torch.set_num_threads`` sets a
    per-thread MKL count here (:func:`set_num_threads` clears it).
    ``MKL_CBWR=AUTO`` opts out of strict mode (products may then differ in
    the last bits between thread counts).
``scipy``
    SciPy's OpenBLAS through ``scipy.linalg.cython_blas``, the library
    Numba's own ``np.dot`` uses. Always available.

``SCRATCHPROP_BLAS=auto`` (the default) takes ``mkl`` when it loads and
``scipy`` otherwise; ``mkl`` insists (an :class:`ImportError` says why not)
and ``scipy`` never tries MKL. Compiled kernels link by symbol name, so
Numba's on-disk cache is valid for either choice.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import llvmlite.binding as llvm

__all__ = ["NAME", "DESCRIPTION", "ROUTINES", "set_num_threads", "get_num_threads"]

ROUTINES = ("sgemm", "dgemm", "sgemv", "dgemv")

_MKL_INTERFACE_LP64 = 0
_MKL_THREADING_GNU = 3
_MKL_CBWR_STRICT = 0x10000
_MKL_CBWR_ALL = -1


def _mkl_candidates():
    """Paths (or sonames) to try for ``libmkl_rt``: the ``mkl`` wheel's prefix first."""
    seen = []
    for prefix in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(sys.executable))):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), reverse=True):
            if path not in seen:
                seen.append(path)
    found = ctypes.util.find_library("mkl_rt")
    for name in ([found] if found else []) + ["libmkl_rt.so.3", "libmkl_rt.so.2"]:
        if name not in seen:
            seen.append(name)
    return seen


def _load_mkl():
    """``(addresses, description, handle)`` of MKL set up as described above; raises ImportError."""
    if not (sys.platform.startswith("linux") and sys.maxsize > 2**32):
        raise ImportError("the MKL path is supported on 64-bit Linux only")
    try:  # MKL's GNU threading layer runs on the process's libgomp (Numba's omp layer's)
        ctypes.CDLL(ctypes.util.find_library("gomp") or "libgomp.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise ImportError(f"libgomp (GNU OpenMP) is not loadable: {exc}") from None
    lib, errors = None, []
    for cand in _mkl_candidates():
        try:
            # RTLD_LOCAL: not exported to the process, so other libraries' MKL calls (torch
            # links its own MKL statically) never land here by symbol name
            lib = ctypes.CDLL(cand, mode=ctypes.RTLD_LOCAL)
            break
        except OSError as exc:
            errors.append(str(exc))
    if lib is None:
        raise ImportError("libmkl_rt not found (pip install 'scratchprop[mkl]'); tried: "
                          + "; ".join(errors[:3]))
    if lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64) != _MKL_INTERFACE_LP64:
        raise ImportError("MKL is already loaded with the ILP64 interface")
    if lib.MKL_Set_Threading_Layer(_MKL_THREADING_GNU) != _MKL_THREADING_GNU:
        raise ImportError("MKL is already loaded with a threading layer other than GNU OpenMP")
    if "MKL_CBWR" not in os.environ:
        branch = lib.MKL_CBWR_Get_Auto_Branch()
        if branch <= 0 or lib.MKL_CBWR_Set(branch | _MKL_CBWR_STRICT) != 0:
            raise ImportError("MKL refused strict conditional numerical reproducibility")
    cbwr = lib.MKL_CBWR_Get(_MKL_CBWR_ALL)
    buf = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String(buf, len(buf))
    version = buf.value.decode(errors="replace").strip()
    desc = f"{version}; GNU OpenMP threads; CBWR {cbwr:#x}"
    addrs = {r: ctypes.cast(getattr(lib, r + "_"), ctypes.c_void_p).value for r in ROUTINES}
    return addrs, desc, lib


def _load_scipy():
    import scipy
    from numba.extending import get_cython_function_address

    addrs = {r: get_cython_function_address("scipy.linalg.cython_blas", r) for r in ROUTINES}
    return addrs, f"OpenBLAS via SciPy {scipy.__version__} (scipy.linalg.cython_blas)", None


def _choose():
    want = os.environ.get("SCRATCHPROP_BLAS", "auto").strip().lower() or "auto"
    if want not in ("auto", "mkl", "scipy"):
        raise ImportError(f"SCRATCHPROP_BLAS must be auto, mkl or scipy, got {want!r}")
    if want in ("auto", "mkl"):
        try:
            return ("mkl",) + _load_mkl()
        except ImportError:
            if want == "mkl":
                raise
    return ("scipy",) + _load_scipy()


def _abs_address():
    """A harmless ``int f(int)`` for thread-count calls that have nothing to do: libc's ``abs``."""
    for name in (None, ctypes.util.find_library("c"), "msvcrt"):
        try:
            return ctypes.cast(ctypes.CDLL(name).abs, ctypes.c_void_p).value
        except (OSError, AttributeError, TypeError):
            continue
    from numba import cfunc, types

    return cfunc(types.intc(types.intc))(lambda n: 0).address


def _threads_local_address(lib):
    """``int f(int n)`` that sets this thread's BLAS thread count and returns the previous one.

    MKL: ``MKL_Set_Num_Threads_Local``; otherwise ``abs``, a no-op (SciPy's
    OpenBLAS has its own, :func:`_scipy_openblas_threads_local`, used when found).
    """
    if lib is not None:
        return ctypes.cast(lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value
    return _abs_address()


def _scipy_openblas_threads_local():
    """``openblas_set_num_threads_local`` of the OpenBLAS SciPy's ``cython_blas`` calls, or ``None``.

    Found among the process's loaded libraries (``/proc/self/maps``): an
    OpenBLAS under SciPy's own folder (``scipy.libs``) with the LP64
    (32-bit integer) interface.
    """
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401 - loads the library

    root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return None
    for path in sorted(p for p in paths if p.startswith(root) and "scipy" in os.path.basename(p)
                       and ".so" in p and "64_" not in os.path.basename(p)):
        try:
            fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local")
        except (OSError, AttributeError):
            continue
        return ctypes.cast(fn, ctypes.c_void_p).value
    return None


NAME, _ADDRS, DESCRIPTION, _MKL = _choose()
for _r, _addr in _ADDRS.items():
    llvm.add_symbol(f"scratchprop_{_r}", _addr)
# Small products of a few rows (see config.FEW_ROWS) always go to SciPy's OpenBLAS on one
# thread: MKL packs the whole weight matrix even for a few rows.
# Only where SciPy's BLAS is its own OpenBLAS with ``openblas_set_num_threads_local``;
# otherwise (say a SciPy built on another BLAS) small products stay in the main library.
_SMALL_THREADS = _scipy_openblas_threads_local()
#: Whether ``blas_threads_local`` really sets the thread count of the main library's next
#: products (MKL: per thread; SciPy's OpenBLAS: process-wide, see ``_blas.small_threads_local``),
#: so the kernels can run a product on one thread; with neither it is ``abs``, a no-op.
THREADS_LOCAL = _MKL is not None or _SMALL_THREADS is not None
if _SMALL_THREADS is None:
    _SMALL_ADDRS, _SMALL_THREADS = _ADDRS, _threads_local_address(_MKL)
else:
    _SMALL_ADDRS = _ADDRS if NAME == "scipy" else _load_scipy()[0]
llvm.add_symbol("scratchprop_blas_threads_local",
                _SMALL_THREADS if _MKL is None else _threads_local_address(_MKL))
for _r, _addr in _SMALL_ADDRS.items():
    llvm.add_symbol(f"scratchprop_small_{_r}", _addr)
llvm.add_symbol("scratchprop_small_threads_local", _SMALL_THREADS)


def set_num_threads(n):
    """Size the BLAS's thread pool (MKL only; SciPy's OpenBLAS follows its environment).

    Also clears the calling thread's own MKL count, which overrides the
    global one: ``torch.set_num_threads`` sets it, and reaches this MKL too
    (measured: after it, ``MKL_Set_Num_Threads(1)`` alone left products on
    two threads).
    """
    if _MKL is not None:
        _MKL.MKL_Set_Num_Threads(int(n))
        _MKL.MKL_Set_Num_Threads_Local(0)


def get_num_threads():
    """Threads the BLAS uses for one product, or ``None`` when not known (SciPy's OpenBLAS)."""
    return int(_MKL.MKL_Get_Max_Threads()) if _MKL is not None else None
