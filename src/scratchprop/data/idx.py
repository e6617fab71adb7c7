"""Read and write IDX files (the MNIST file format), raw or gzip-compressed.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per
dimension, then the payload in C order::

    byte 0-1   0x00 0x00
    byte 2     type code (0x08 = unsigned byte; the only one supported here)
    byte 3     number of dimensions ``ndim``
    4*ndim     the dimension sizes, big-endian uint32
    ...        prod(dims) payload bytes, nothing more, nothing less

Compression is detected from the content (gzip magic ``1f 8b``), not from
the file name. Every problem is reported as a :class:`DataError` naming the
file, what was expected and what was found.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .._atomic import atomic_write

__all__ = ["DataError", "read_idx", "write_idx"]

GZIP_MAGIC = b"\x1f\x8b"
UBYTE_CODE = 0x08
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}


class DataError(ValueError):
    """A data file or dataset directory is missing, unreadable or malformed.

    The message always names the file (or directory) concerned, what was
    expected and what was found.
    """


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) content of ``path``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        reason = str(exc) or type(exc).__name__
        raise DataError(
            f"{path}: corrupt gzip data (file starts with the gzip magic 1f 8b "
            f"but cannot be decompressed: {reason})"
        ) from None


def read_idx(path: str | os.PathLike, *, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (``idx1-ubyte``, ``idx3-ubyte``, ...).

    Parameters
    ----------
    path : str or path-like
        The file, raw or gzip-compressed (detected from its first bytes).
    ndim : int, optional
        If given, the number of dimensions the file must declare
        (1 for label files, 3 for image files).

    Returns
    -------
    numpy.ndarray
        A writable ``uint8`` array with the shape stored in the header.

    Raises
    ------
    DataError
        If the file is missing or unreadable, the gzip stream is corrupt,
        the magic number or type code is wrong, the dimension count differs
        from `ndim`, or the payload is shorter or longer than the product of
        the dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: expected a 4-byte IDX magic number, found only {len(data)} byte(s)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file: expected magic bytes 00 00 at offset 0, "
            f"found {data[0]:02x} {data[1]:02x}"
        )
    code, n_dims = data[2], data[3]
    if code != UBYTE_CODE:
        name = _TYPE_NAMES.get(code, "unknown type")
        raise DataError(
            f"{path}: unsupported IDX data type code 0x{code:02x} ({name}); expected 0x08 (unsigned byte)"
        )
    if n_dims == 0 or (ndim is not None and n_dims != ndim):
        want = f"{ndim}" if ndim is not None else "at least 1"
        raise DataError(f"{path}: expected {want} dimension(s), header declares {n_dims}")
    header_len = 4 + 4 * n_dims
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated header: expected {header_len} bytes for "
            f"{n_dims} dimension(s), found {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    expected = math.prod(dims)  # Python ints: a crafted header cannot overflow it
    found = len(data) - header_len
    if found != expected:
        shape = "x".join(map(str, dims))
        what = "truncated" if found < expected else f"{found - expected} trailing byte(s)"
        raise DataError(
            f"{path}: expected {expected} payload bytes for shape {shape}, found {found} ({what})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a ``uint8`` array as an IDX file, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination. If it ends with ``.gz`` the file is gzip-compressed
        (level 9, header mtime 0, so the bytes are reproducible).
    array : array_like
        1-D (labels) or 3-D (images) array of dtype ``uint8``; integer
        arrays with all values in 0..255 are converted.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    DataError
        If the array is not 1-D or 3-D or does not fit in unsigned bytes.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim not in (1, 3):
        raise DataError(f"{path}: expected a 1-D or 3-D array to write, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "iub" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise DataError(f"{path}: expected uint8 data (integers 0..255), got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    header = bytes([0, 0, UBYTE_CODE, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr).tobytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    with atomic_write(path) as fh:
        fh.write(payload)
    return path
