"""What the ``scratchprop`` commands share: :class:`CLIError` and one-line messages, Ctrl-C held
while Numba starts or compiles, the backend's set-up, loading the data and checking output paths."""

import contextlib
import os
import signal
import threading
from pathlib import Path

N_CLASSES = 10


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status ``code``."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def one_line(text):
    """Join a multi-line message into one line."""
    out = ""
    for part in (p.strip() for p in str(text).splitlines()):
        if part:
            out += part if not out else (" " if out.endswith(":") else "; ") + part
    return out


@contextlib.contextmanager
def deferred_interrupt():
    """Hold a Ctrl-C that arrives while Numba imports, compiles or loads kernels until that is done.

    Inside those, a KeyboardInterrupt can be swallowed (llvmlite's ctypes
    callbacks print "Exception ignored" and carry on) or turn into another
    error; held, it is raised here afterwards and ends the run with one line.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: hit.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


def warm_up(net, optimizer=None):
    """Load (or compile) the kernels a run of ``net`` (and ``optimizer``, a name) uses, with Ctrl-C
    held (see above). ``np.random`` is left as it was (Dropout draws from it)."""
    if net.backend_name != "numba":
        return
    import numpy as np

    from .net import TwoLayerNet
    from .train import make_optimizer

    with deferred_interrupt():
        if isinstance(net, TwoLayerNet):
            tiny = TwoLayerNet(4, 3, 2, backend="numba", dtype=net.dtype, seed=0)
            x, t = np.zeros((2, 4), net.dtype), np.array([0, 1])
            tiny.train_step(x, t, 0.1)
            tiny.loss(x, t)
            if optimizer in (None, "sgd"):
                return
        elif hasattr(net, "input_dim"):  # a convnet: its own layers, on a few images
            tiny = type(net)(**net.config(), backend="numba", dtype=net.dtype, seed=0)
            x, t = np.zeros((8, *net.input_dim), net.dtype), np.arange(8) % net.output_size
        else:  # arrays big enough for the kernels (small ones run NumPy code)
            cfg = {**net.config(), "input_size": 16, "hidden_size_list": [32], "output_size": 10}
            tiny = type(net)(**cfg, backend="numba", dtype=net.dtype, seed=0)
            x, t = np.zeros((32, 16), net.dtype), np.arange(32) % 10
        saved = np.random.get_state()
        try:
            grads = tiny.gradient(x, t)
            make_optimizer(tiny, optimizer).update(tiny.params, grads)
            tiny.predict(x)
        finally:
            np.random.set_state(saved)


_NUMBA_ENV = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY")


def _start_numba():
    """Import Numba and start its threads now, so a bad environment is one line, not a traceback."""
    count = os.environ.get("NUMBA_NUM_THREADS")
    if count is not None and not (count.strip().isdigit() and int(count) > 0):
        raise CLIError(f"NUMBA_NUM_THREADS={count}: must be a positive integer; unset it or fix it")
    try:
        import numba

        from . import threads  # noqa: F401 - the threading-layer preference, before the launch

        numba.get_num_threads()  # launches Numba's threads: a bad count or layer fails here
    except ImportError as exc:
        raise CLIError(
            f"--backend numba needs numba, which is not importable ({exc}); try --backend numpy"
        ) from None
    except (ValueError, RuntimeError, OSError) as exc:
        env = [f"{k}={os.environ[k]}" for k in _NUMBA_ENV if k in os.environ]
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if env:
            raise CLIError(
                f"{' '.join(env)}: Numba cannot start its threads with this setting "
                f"({first}); unset it or fix it"
            ) from None
        raise CLIError(f"Numba cannot start its threads ({first})") from None


def setup_backend(name, threads=None):
    """Check ``--threads``, import the chosen backend (only that one); returns a threads label."""
    from .backends import get_backend

    if threads is not None and name != "numba":
        raise CLIError(
            "--threads applies to --backend numba only (NumPy's BLAS follows "
            "OPENBLAS_NUM_THREADS / OMP_NUM_THREADS)"
        )
    if name == "numba":
        with deferred_interrupt():
            _start_numba()
    if threads is not None:
        import numba

        top = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= top:
            raise CLIError(f"--threads must be between 1 and {top} (NUMBA_NUM_THREADS), got {threads}")
    try:
        with deferred_interrupt():
            get_backend(name)
    except ImportError as exc:
        raise CLIError(f"backend {name!r} is not available ({exc}); try --backend numpy") from None
    from .sysinfo import blas_thread_label

    if name != "numba":
        return blas_thread_label()
    import numba

    from . import numba as backend
    from .sysinfo import kernels_blas

    if threads is not None:
        backend.set_num_threads(threads)
    name, _, kthreads = kernels_blas()
    blas = f"{name} {kthreads}" if kthreads else f"{name}, {blas_thread_label()}"
    return f"numba {numba.get_num_threads()}, kernels' BLAS {blas}"


def load_data(root, dataset, images=False):
    """The data set's ``(x, t), (x_test, t_test)``: ``x`` rows ``(N, H*W)``, or with ``images``
    ``(N, 1, H, W)`` (for the convnets; the loader's own reshape, no extra copy)."""
    from .data import DEBIAN_FASHION_MNIST_DIR, load_mnist

    if root is None and dataset == "fashion-mnist" and not DEBIAN_FASHION_MNIST_DIR.is_dir():
        raise CLIError(
            "fashion-mnist is not bundled; get it with 'scratchprop download --dataset "
            "fashion-mnist --root DIR' and pass --data DIR, or install Debian's "
            f"dataset-fashion-mnist package ({DEBIAN_FASHION_MNIST_DIR})"
        )
    if root is not None and not Path(root).is_dir():
        raise CLIError(f"--data {root}: no such directory")
    (x, t), (xt, tt) = load_mnist(root, flatten=not images, dataset=dataset)
    where = f"--data {root}" if root is not None else dataset
    for name, some in (("training", x), ("test", xt)):
        if len(some) == 0:
            raise CLIError(f"{where}: the {name} set has no images")
    if x.shape[1:] != xt.shape[1:]:
        have = (
            f"are {x.shape[2]}x{x.shape[3]} but test images {xt.shape[2]}x{xt.shape[3]}"
            if images
            else f"have {x.shape[1]} pixels but test images {xt.shape[1]}"
        )
        raise CLIError(f"{where}: training images {have}: the two sets must have the same image size")
    return (x, t), (xt, tt)


def check_output(option, path):
    """Before any work: ``path`` can be written (see ``_atomic.check_writable``); else exit 2."""
    from ._atomic import check_writable

    try:
        check_writable(path)
    except OSError as exc:
        raise CLIError(f"{option} {exc}") from None
