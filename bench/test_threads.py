"""Thread scaling of the large-batch train step (1 versus 2 ... threads; restored afterwards)."""
import pytest

from .cases import cases, run


@pytest.mark.parametrize("case", cases("threads"), ids=str)
def test_threads(benchmark, case):
    run(benchmark, case)
