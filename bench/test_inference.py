"""Inference: predict + accuracy over 10,000 and 60,000 MNIST digits."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("inference"), ids=str)
def test_inference(benchmark, case):
    run(benchmark, case)
