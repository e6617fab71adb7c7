"""The benchmarks' environment: backends, thread counts, BLAS libraries, versions.

Self-contained on purpose (no dependency on code under ``tests/`` or on
``scratchprop.sysinfo``), so the benchmarks keep working while those change.
"""

import contextlib
import ctypes
import importlib
import importlib.metadata
import os
import platform
import sys

SMOKE = os.environ.get("SCRATCHPROP_BENCH_SMOKE", "").strip().lower() not in ("", "0", "false", "no")

_THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMBA_THREADING_LAYER",
    "NUMBA_CACHE_DIR",
    "SCRATCHPROP_BLAS",
)


# --------------------------------------------------------------------------- backends


def numba_backend():
    """``scratchprop.numba``, or ``pytest.skip`` while the module does not exist yet.

    Only a *missing* module skips; a module that exists but fails to import is
    an error, so a broken backend cannot hide behind a skip.
    """
    try:
        return importlib.import_module("scratchprop.numba")
    except ModuleNotFoundError as exc:
        if exc.name != "scratchprop.numba":
            raise
        import pytest

        pytest.skip("scratchprop.numba is not available yet")


def backend_module(name):
    if name == "numpy":
        return importlib.import_module("scratchprop.numpy")
    if name == "numba":
        return numba_backend()
    raise ValueError(f"no layer module for backend {name!r}")


_TORCH = None


def torch():
    """``torch`` (``pytest.importorskip``), with its intra-op threads set to Numba's count."""
    global _TORCH
    if _TORCH is None:
        import pytest

        mod = pytest.importorskip("torch")
        mod.set_num_threads(default_threads())
        _TORCH = mod
    return _TORCH


# --------------------------------------------------------------------------- threads


def default_threads():
    """The thread count every backend runs with unless a case says otherwise (Numba's)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def thread_counts():
    """Thread counts for the scaling group: 1, 2 and all (where the machine has them)."""
    top = default_threads()
    return sorted({1, min(2, top), top})


_SUFFIXES = ("", "64_", "_64")


class _OpenBLAS:
    def __init__(self, path, lib, prefix, suffix):
        self.path, self._lib = path, lib
        self._get = getattr(lib, f"{prefix}get_num_threads{suffix}")
        self._set = getattr(lib, f"{prefix}set_num_threads{suffix}")
        self._get.restype = ctypes.c_int
        self._set.argtypes = [ctypes.c_int]
        self.version = ""
        cfg = getattr(lib, f"{prefix}get_config{suffix}", None)
        if cfg is not None:
            cfg.restype = ctypes.c_char_p
            self.version = (cfg() or b"").decode(errors="replace").strip()

    @property
    def num_threads(self):
        return int(self._get())

    @num_threads.setter
    def num_threads(self, n):
        self._set(int(n))


def _loaded_openblas():
    """OpenBLAS builds loaded in this process (numpy's and SciPy's are separate libraries)."""
    paths = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                p = line.split()[-1]
                name = os.path.basename(p).lower()
                if "openblas" in name and ".so" in name and p not in paths:
                    paths.append(p)
    except OSError:
        return []
    libs = []
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in _SUFFIXES:
                if hasattr(lib, f"{prefix}get_num_threads{suffix}") and hasattr(
                    lib, f"{prefix}set_num_threads{suffix}"
                ):
                    libs.append(_OpenBLAS(p, lib, prefix, suffix))
                    break
            else:
                continue
            break
    return libs


def blas_libraries():
    """``[{"path", "version", "threads"}]`` for every BLAS loaded now (threadpoolctl if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [
            {"path": lib.path, "version": lib.version, "threads": lib.num_threads}
            for lib in _loaded_openblas()
        ]
    return [
        {
            "path": p.get("filepath"),
            "version": f"{p.get('internal_api')} {p.get('version')}",
            "threads": p.get("num_threads"),
        }
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]


def blas_threads():
    """The thread count of the loaded BLAS libraries (the largest, if they differ), or None."""
    counts = [lib["threads"] for lib in blas_libraries() if lib["threads"]]
    return max(counts) if counts else None


@contextlib.contextmanager
def limit_threads(n, torch_too=False):
    """Run with ``n`` threads in Numba, every loaded BLAS and (optionally) torch; restore after."""
    import numba

    try:  # loaded by Numba itself when SciPy is installed: limit it too
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        pass

    old_numba = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    libs, old_blas = [], []
    if threadpool_limits is None:
        libs = _loaded_openblas()
        old_blas = [lib.num_threads for lib in libs]
        for lib in libs:
            lib.num_threads = n
        ctx = contextlib.nullcontext()
    else:
        ctx = threadpool_limits(limits=n, user_api="blas")
    old_torch = None
    if torch_too:
        old_torch = torch().get_num_threads()
        torch().set_num_threads(n)
    try:
        with ctx:
            yield
    finally:
        numba.set_num_threads(old_numba)
        for lib, old in zip(libs, old_blas):
            lib.num_threads = old
        if old_torch is not None:
            torch().set_num_threads(old_torch)


def thread_info():
    """Thread counts in effect now, for ``extra_info``."""
    import numba

    info = {"numba_threads": numba.get_num_threads(), "blas_threads": blas_threads()}
    if _TORCH is not None:
        info["torch_threads"] = _TORCH.get_num_threads()
    return info


# --------------------------------------------------------------------------- versions


def _dist_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model():
    from scratchprop.sysinfo import cpu_model as model

    return model()


def numpy_blas_build():
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception as exc:  # noqa: BLE001 - unusual builds
        return f"unknown ({type(exc).__name__})"


def _kernels_blas():
    """What ``scratchprop.kernels`` calls for its products, and its threads."""
    if "scratchprop.kernels._blas" not in sys.modules:
        return "not loaded (no numba case ran)"
    try:
        from scratchprop import threads

        return threads.describe()
    except Exception as exc:  # noqa: BLE001 - an older scratchprop (bench/THREADS.md times one)
        return f"unknown ({type(exc).__name__})"


def environment():
    """Everything ``report.py`` prints above its tables (JSON-serialisable)."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = f"{numba.config.THREADING_LAYER} (configured)"
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "python": platform.python_version(),
        "versions": {
            name: _dist_version(name)
            for name in ("scratchprop", "numpy", "numba", "llvmlite", "scipy", "torch", "pytest-benchmark")
        },
        "numpy_blas": numpy_blas_build(),
        "blas_runtime": blas_libraries(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": layer,
        "kernels_blas": _kernels_blas(),
        "torch_threads": _TORCH.get_num_threads() if _TORCH is not None else None,
        "env": {k: os.environ[k] for k in _THREAD_ENV if k in os.environ},
        "smoke": SMOKE,
        "executable": sys.executable,
    }
