"""Thread scaling of the large-batch train step (1 versus 2 ... threads; restored afterwards)."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("threads"), ids=str)
def test_threads(benchmark, case):
    run(benchmark, case)
