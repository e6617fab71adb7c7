"""Each layer's forward and backward (Affine 784->100, Relu (N,100), SoftmaxWithLoss (N,10))."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("layers"), ids=str)
def test_layers(benchmark, case):
    run(benchmark, case)
