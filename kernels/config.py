"""Every JIT flag of the kernels, in one place.

Kernels are decorated with :data:`SERIAL`, :data:`INLINE` or :data:`PARALLEL` (``**`` these
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
    ``False``: ``exp`` is a libm call either way, and ``reassoc`` changed the
    loss's last bits (see ``bench/README.md``). Never ``nnan``/``ninf``: NaN
    and inf must propagate as in NumPy.
``error_model="numpy"``
    Division by zero gives inf/nan like NumPy instead of raising (an
    exception raised inside ``prange`` turns into a SystemError).

No threshold lives here: when a kernel may use threads is decided by the
caller (``scratchprop.threads``) and passed in as an argument, so the on-disk
cache can never hold a stale value.
"""

import os
import warnings

import numba

__all__ = [
    "CACHE",
    "FASTMATH",
    "SERIAL",
    "INLINE",
    "PARALLEL",
    "CacheWarning",
    "cache_location",
    "guard_cache",
]


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
        why = (
            f"NUMBA_CACHE_DIR={asked!r} is not writable" if asked else "no writable cache location was found"
        )
        warnings.warn(
            f"scratchprop.kernels: {why}; the Numba kernels run uncached "
            f"(compiled in every process, a few seconds each)",
            CacheWarning,
            stacklevel=2,
        )
        return False
    return True


CACHE = _decide_cache()
FASTMATH = False
_COMMON = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, error_model="numpy")
#: ``njit`` flags of a serial kernel.
SERIAL = dict(_COMMON)
#: ``njit`` flags of a small helper typed straight into the kernels that call it. A helper of its
#: own is compiled once alone and then optimised and compiled again into every caller's module:
#: for a few lines, that costs the first start more than the copies (``bench/CONV.md``, start-up).
INLINE = dict(SERIAL, inline="always")
#: ``njit`` flags of a kernel with a ``prange`` loop.
PARALLEL = dict(_COMMON, parallel=True)


_WARNED_CORRUPT = []


def _forget(cache_file):
    """Remove one function's index and data files (ours: in this folder's cache)."""
    import glob

    index = cache_file._index_path
    stem = os.path.basename(index)[: -len(".nbi")]
    for path in [index, *glob.glob(os.path.join(os.path.dirname(index), glob.escape(stem) + ".*.nbc"))]:
        try:
            os.unlink(path)
        except OSError:
            pass


def _guarded(cache, method):
    original = getattr(cache, method)

    def call(*args):
        try:
            return original(*args)
        except Exception as exc:  # a corrupt or truncated cache file: never a broken install
            _forget(cache._cache_file)
            if not _WARNED_CORRUPT:
                _WARNED_CORRUPT.append(1)
                warnings.warn(
                    f"scratchprop.kernels: a Numba cache file in {cache._cache_path} was "
                    f"unreadable ({type(exc).__name__}); removed it, the kernel compiles "
                    f"again",
                    CacheWarning,
                    stacklevel=3,
                )
            if method == "load_overload":
                return None  # Numba compiles, then saves a fresh entry
            try:
                return original(*args)
            except Exception:  # noqa: BLE001 - still unwritable: run uncached
                return None

    setattr(cache, method, call)


def guard_cache(namespace):
    """Make the cached kernels in ``namespace`` (a module's ``globals()``) survive a corrupt cache.

    Numba raises on every later call when a cache file cannot be unpickled
    (a truncated write, a disk error). Each kernel module calls this last:
    such a file is removed with one :class:`CacheWarning`, and the kernel is
    compiled again and re-cached.
    """
    from numba.core.dispatcher import Dispatcher

    for obj in list(namespace.values()):
        cache = getattr(obj, "_cache", None) if isinstance(obj, Dispatcher) else None
        if cache is not None and hasattr(cache, "_cache_file") and not getattr(cache, "_guarded", False):
            _guarded(cache, "load_overload")
            _guarded(cache, "save_overload")
            cache._guarded = True
