"""kernels/arith.ceil_div equals math.ceil of the exact quotient for every integer pair."""
import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from minillm.kernels.arith import ceil_div


@given(a=st.integers(-10**12, 10**12), b=st.integers(1, 10**6))
def test_ceil_div_is_the_exact_ceiling(a, b):
    assert ceil_div(a, b) == math.ceil(Fraction(a, b))


def test_ceil_div_counts_blocks():
    assert [ceil_div(n, 16) for n in (0, 1, 16, 17, 32)] == [0, 1, 1, 2, 2]
