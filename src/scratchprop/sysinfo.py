"""``scratchprop info``: versions, Numba threading, the BLAS in use, the CPU."""

import os
import platform
import sys

__all__ = [
    "collect",
    "format_info",
    "cpu_model",
    "blas_info",
    "numba_threads",
    "blas_threads",
    "blas_thread_label",
    "kernels_blas",
]


def _version(module_name):
    try:
        module = __import__(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return "not installed"
        return f"not available ({type(exc).__name__}: {exc})"
    except Exception as exc:  # noqa: BLE001 - report any import failure, never crash `info`
        return f"not available ({type(exc).__name__}: {exc})"
    return getattr(module, "__version__", "unknown version")


def cpu_model():
    """The CPU's "model name" from /proc/cpuinfo (or :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info():
    """``"name version"`` of the BLAS numpy was built against (``numpy.show_config``)."""
    import numpy as np

    try:
        deps = np.show_config(mode="dicts")["Build Dependencies"]
        blas = deps["blas"]
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        config = blas.get("openblas configuration")
        return f"{text} ({config.strip()})" if config else text
    except Exception as exc:  # noqa: BLE001 - older numpy / unusual builds
        return f"unknown ({type(exc).__name__}: {exc})"


def blas_threads():
    """Runtime BLAS libraries and their thread counts via threadpoolctl, or None if absent."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [
        f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads, {p.get('filepath')})"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]


def blas_thread_label():
    """Short label for the BLAS threads NumPy uses, e.g. ``"BLAS 2"`` or ``"BLAS default (up to 8)"``."""
    try:
        from threadpoolctl import threadpool_info

        counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        if counts:
            return f"BLAS {max(counts)}"
    except Exception:  # noqa: BLE001 - threadpoolctl absent or failing: fall back to the environment
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            return f"BLAS {os.environ[var]} ({var})"
    return f"BLAS default (up to {os.cpu_count()})"


def kernels_blas():
    """``(name, library path, threads or None)`` of the BLAS the Numba kernels call.

    ``name`` is ``"numpy"`` (NumPy's own OpenBLAS: one pool with the user's
    NumPy, see :mod:`scratchprop.threads`) or ``"scipy"`` (the fallback).
    """
    from . import threads
    from .kernels import _blas

    return _blas.NAME, _blas.PATH, threads.blas_threads()


def numba_threads(probe=True):
    """``(threading layer, threads in use, NUMBA_NUM_THREADS)``.

    The layer is only known after a parallel function ran, so with ``probe``
    a tiny ``prange`` function is compiled and run first; otherwise (or if
    that fails) the configured ``NUMBA_THREADING_LAYER`` is reported.
    """
    import numba

    layer = None
    if probe:
        try:
            import numpy as np

            @numba.njit(parallel=True, cache=False)
            def _probe(a):
                s = 0.0
                for i in numba.prange(a.shape[0]):
                    s += a[i]
                return s

            _probe(np.ones(64))
            layer = numba.threading_layer()
        except Exception:  # noqa: BLE001 - fall back to the configured value
            layer = None
    if layer is None:
        layer = f"{numba.config.THREADING_LAYER} (configured; no parallel function has run)"
    return layer, numba.get_num_threads(), numba.config.NUMBA_NUM_THREADS


def collect(probe=True):
    """The ``info`` lines as ``(label, value)`` pairs."""
    from . import __version__

    rows = [
        ("scratchprop", __version__),
        ("python", f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"),
        ("platform", platform.platform()),
    ]
    for name in ("numpy", "numba", "scipy", "matplotlib", "threadpoolctl"):
        rows.append((name, _version(name)))
    if "numba" in sys.modules:
        try:
            layer, used, maximum = numba_threads(probe)
            rows.append(("numba threading layer", layer))
            rows.append(("numba threads", f"{used} (NUMBA_NUM_THREADS {maximum})"))
        except Exception as exc:  # noqa: BLE001
            rows.append(("numba threading", f"unknown ({type(exc).__name__}: {exc})"))
    if "numba" in sys.modules:
        try:
            name, desc, threads = kernels_blas()
            rows.append(
                ("BLAS (numba kernels)", f"{name}: {desc}" + (f" ({threads} threads)" if threads else ""))
            )
        except Exception as exc:  # noqa: BLE001
            rows.append(("BLAS (numba kernels)", f"unavailable ({type(exc).__name__}: {exc})"))
    rows.append(("BLAS (numpy build)", blas_info()))
    runtime = blas_threads()
    rows.append(
        (
            "BLAS (runtime)",
            "; ".join(runtime)
            if runtime
            else "threadpoolctl not installed"
            if runtime is None
            else "none found",
        )
    )
    env = [
        f"{k}={os.environ[k]}"
        for k in (
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER",
            "SCRATCHPROP_BLAS",
            "OMP_WAIT_POLICY",
            "GOMP_SPINCOUNT",
        )
        if k in os.environ
    ]
    if env:
        rows.append(("environment", " ".join(env)))
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    rows.append(("CPU", cpu_model()))
    rows.append(("CPU cores", f"{os.cpu_count()} logical, {usable} usable by this process"))
    return rows


def format_info(rows):
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)
