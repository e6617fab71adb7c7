"""Chapter 6: a MultiLayerNetExtend (BatchNorm, Dropout) training step with Adam, and Adam alone."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("chapter6"), ids=str)
def test_chapter6(benchmark, case):
    run(benchmark, case)
