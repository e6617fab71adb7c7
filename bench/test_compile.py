"""Start-up: a fresh Python doing imports + the first train step, with a cold and a warm Numba cache."""
import pytest

from .cases import cases, run


@pytest.mark.parametrize("case", cases("compile"), ids=str)
def test_compile(benchmark, case):
    run(benchmark, case)
