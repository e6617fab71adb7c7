"""Download MNIST / Fashion-MNIST from public mirrors, with checksum checks.

Files are written to ``root/MNIST/raw`` or ``root/FashionMNIST/raw``
(torchvision's layout, which :func:`scratchprop.data.load_mnist` searches),
so the two datasets, whose file names are identical, never overwrite each
other. Each file is streamed to a temporary file in that directory, its
checksum verified, and only then renamed onto its final name: an
interrupted or corrupt download never leaves a partial or bad file behind.

Only :mod:`urllib` is used. Nothing here prints; pass ``log=print`` to see
progress.

Note: ``from scratchprop.data import download`` gives the *function*; use
``from scratchprop.data.download import MIRRORS`` etc. for the module's
other names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .._atomic import atomic_write
from .idx import DataError
from .mnist import DATASETS

__all__ = ["CHECKSUMS", "MIRRORS", "download", "file_digest"]

#: Default mirrors (base URLs), tried in order.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

#: md5 of each published ``.gz`` file (the values torchvision checks).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83fd310",
    },
}

_CHUNK = 1 << 16
_USER_AGENT = "scratchprop-data/1 (python urllib)"


class _ChecksumMismatch(Exception):
    pass


def _hasher(expected: str):
    """md5 for a 32-hex-digit checksum, sha256 for a 64-digit one."""
    if len(expected) == 32:
        return hashlib.md5(usedforsecurity=False)
    if len(expected) == 64:
        return hashlib.sha256()
    raise DataError(f"checksum {expected!r} is neither an md5 (32 hex) nor a sha256 (64 hex)")


def file_digest(path: str | os.PathLike, expected: str) -> str:
    """Return the hex digest of `path`, with the algorithm `expected` implies.

    Parameters
    ----------
    path : str or path-like
        File to hash.
    expected : str
        A 32-digit (md5) or 64-digit (sha256) hex checksum.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    h = _hasher(expected)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _reason(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _fetch(url: str, dest: Path, expected: str, timeout: float) -> None:
    """Stream `url` into `dest` atomically, verifying its checksum."""
    import urllib.request  # imported here: it is slow and rarely needed

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        with atomic_write(dest) as fh:
            h = _hasher(expected)
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                h.update(chunk)
                fh.write(chunk)
            if h.hexdigest() != expected.lower():
                raise _ChecksumMismatch(
                    f"checksum mismatch: expected {expected.lower()}, got {h.hexdigest()}"
                )


def download(
    dataset: str,
    root: str | os.PathLike,
    *,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    log: Callable[[str], object] | None = None,
) -> list[Path]:
    """Download the four ``.gz`` files of `dataset` into `root`.

    Parameters
    ----------
    dataset : {"mnist", "fashion-mnist"}
        Which dataset.
    root : str or path-like
        Dataset root; files go to ``root/MNIST/raw`` (``FashionMNIST/raw``
        for Fashion-MNIST), created if needed. Pass the same root to
        :func:`scratchprop.data.load_mnist`.
    mirrors : sequence of str, optional
        Base URLs tried in order for each file (default :data:`MIRRORS`).
    checksums : mapping of str to str, optional
        File name -> md5 or sha256 hex digest (default :data:`CHECKSUMS`).
        Its keys are the files downloaded.
    timeout : float, default 30.0
        Socket timeout in seconds for each connection / read.
    log : callable, optional
        Called with one progress message per step (e.g. ``print``).

    Returns
    -------
    list of pathlib.Path
        The verified files, in the order of `checksums`.

    Raises
    ------
    DataError
        If a file cannot be fetched from any mirror with the right checksum.
        The message names the file, every URL tried and why each failed.
        Files already completed stay in place; no partial or unverified
        file is ever left under a final name.
    """

    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    mirrors = tuple(MIRRORS[dataset] if mirrors is None else mirrors)
    checksums = dict(CHECKSUMS[dataset] if checksums is None else checksums)
    if not mirrors:
        raise DataError(f"no mirrors given to download {dataset}")
    for expected in checksums.values():
        _hasher(expected)  # reject malformed checksums before any network use
    say = log or (lambda message: None)
    target = Path(root) / DATASETS[dataset] / "raw"
    created = [p for p in (target, *target.parents) if not p.exists()]  # ours to remove on failure
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download directory {target}: {exc}") from None
    try:
        return _download_all(dataset, target, checksums, mirrors, timeout, say)
    except BaseException:
        for d in created:  # deepest first; only while empty: nothing of anyone's is removed
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _download_all(dataset, target, checksums, mirrors, timeout, say):
    import http.client
    import urllib.error

    paths = []
    for name, expected in checksums.items():
        dest = target / name
        if dest.is_file():
            if file_digest(dest, expected) == expected.lower():
                say(f"{dest}: already present, checksum ok")
                paths.append(dest)
                continue
            say(f"{dest}: checksum mismatch, downloading again")
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            say(f"downloading {url}")
            try:
                _fetch(url, dest, expected, timeout)
            except (_ChecksumMismatch, OSError, ValueError, http.client.HTTPException) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    exc.close()
                # URLError/HTTPError/timeouts are OSErrors; ValueError: bad URL;
                # HTTPException: e.g. IncompleteRead when the connection drops.
                failures.append((url, str(exc) if isinstance(exc, _ChecksumMismatch) else _reason(exc)))
                continue
            say(f"{dest}: checksum ok")
            paths.append(dest)
            break
        else:
            tried = "\n".join(f"  {url}: {why}" for url, why in failures)
            offline = all(why.startswith(("cannot connect", "timed out")) for _, why in failures)
            hint = "\n(no mirror could be reached: are you offline?)" if offline else ""
            raise DataError(f"could not download {name} for {dataset} into {target}; tried:\n{tried}{hint}")
    return paths
