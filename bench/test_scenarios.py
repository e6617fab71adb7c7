"""The train step as users run it: NumPy work, a pause or float32 images between steps."""

import pytest

from . import scenarios
from .cases import cases


@pytest.mark.parametrize("case", cases("scenario"), ids=str)
def test_scenario(benchmark, case):
    scenarios.run(benchmark, case)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_train_end_to_end(benchmark, backend):
    scenarios.run_train(benchmark, backend)
