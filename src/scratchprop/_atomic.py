"""Write a file so that nothing a user saved is ever lost: temp file, then rename.

The target must be a regular file or not exist yet: a directory, a device or
a FIFO is refused. A symbolic link is written through: its target is
replaced, the link stays. Our temporary files are named ``.NAME.*.tmp``;
one left behind by a killed process is removed by the next write to the same
place once it is :data:`STALE_S` old.
"""

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["atomic_write", "check_writable", "STALE_S"]

#: Seconds after which a temporary file of ours is taken as left behind by a killed process.
STALE_S = 3600


def _target(path):
    """The file to replace: ``path``, or where its symbolic link points."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_writable(path):
    """Raise OSError (naming ``path``) unless ``path`` can be written as :func:`atomic_write` will.

    Checked before long work starts: the directory exists and takes a new
    file, and the target is a regular file or does not exist yet.
    """
    target = _target(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise OSError(f"{path}: {kind}; give a file name")
    parent = target.parent
    if not parent.is_dir():
        raise OSError(f"{path}: directory {parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OSError(f"{path}: cannot write in {parent} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def _remove_stale(target):
    now = time.time()
    for old in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STALE_S:
                old.unlink()


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file next to ``path`` for writing; on success move it onto ``path``.

    If the ``with`` block raises, the temporary file is removed and ``path``
    is untouched. ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8, ``newline=""``).
    Errors name ``path``, never the temporary file.
    """
    shown = path
    path = _target(path)
    check_writable(shown)
    _remove_stale(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    except OSError as exc:
        raise OSError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
