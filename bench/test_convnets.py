"""Chapters 7-8: SimpleConvNet and DeepConvNet, an Adam training step at batch 100 and accuracy
over 10,000 images: our classes, the book-style classes on our layers, and torch."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("convnets"), ids=str)
def test_convnets(benchmark, case):
    run(benchmark, case)
