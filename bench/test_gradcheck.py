"""The notebook's gradient check: numerical gradient versus backprop (784-100-10, batch 3)."""

import pytest

from .builders import run
from .cases import cases


@pytest.mark.parametrize("case", cases("gradcheck"), ids=str)
def test_gradcheck(benchmark, case):
    run(benchmark, case)
