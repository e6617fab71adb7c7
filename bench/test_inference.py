"""Inference: predict + accuracy over 10,000 and 60,000 MNIST digits."""
import pytest

from .cases import cases, run


@pytest.mark.parametrize("case", cases("inference"), ids=str)
def test_inference(benchmark, case):
    run(benchmark, case)
