import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests' helper modules (fd, booknet)


@pytest.fixture
def kernels_always(monkeypatch):
    """Route even tiny arrays of the Numba wrappers to the kernels (no NumPy path for small sizes)."""
    from scratchprop import _dispatch

    monkeypatch.setattr(_dispatch, "KERNEL_MIN_ELEMENTS", 0)
