import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (fd, booknet)


@pytest.fixture
def force_parallel(monkeypatch):
    """Route every elementwise call of the Numba wrappers to the ``prange`` kernels."""
    import scratchprop.numba as B
    from scratchprop.kernels import config

    monkeypatch.setattr(config, "RELU_PARALLEL_MIN", 0)
    monkeypatch.setattr(config, "SOFTMAX_PARALLEL_MIN", 0)
    monkeypatch.setattr(config, "BLAS_SPIN_S", 0.0)
    monkeypatch.setattr(B, "NUMPY_BELOW", 0)
