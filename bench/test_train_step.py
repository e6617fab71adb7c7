"""One SGD train step of 784-100-10: TwoLayerNet, the book's own class with drop-in layers, torch, and the GEMM floor."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("train_step"), ids=str)
def test_train_step(benchmark, case):
    run(benchmark, case)
