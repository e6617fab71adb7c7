"""Start-up: a fresh Python doing imports + the first train step, with a cold and a warm Numba cache."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("compile"), ids=str)
def test_compile(benchmark, case):
    run(benchmark, case)
