"""nn/softmax.log_softmax against torch.log_softmax and its defining properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.nn.softmax import log_softmax


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=3), scale=st.floats(0.1, 1e3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1))
def test_log_softmax_normalises_and_keeps_dtype(shape, scale, dtype, seed):
    z = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)
    out = log_softmax(z)
    assert out.dtype == dtype and out.shape == z.shape
    assert np.all(out <= 0)
    # exp sums to 1 up to the rounding of V terms in the input's precision
    np.testing.assert_allclose(np.exp(out.astype(np.float64)).sum(axis=-1), 1.0, rtol=10 * np.finfo(dtype).eps * shape[-1])
    # invariant to adding a constant per row: only differences of logits matter
    np.testing.assert_allclose(log_softmax(z + dtype(3)), out, atol=50 * np.finfo(dtype).eps * scale)


def test_log_softmax_does_not_overflow():
    out = log_softmax(np.array([1e4, 0.0, -1e4]))
    np.testing.assert_allclose(out, [0.0, -1e4, -2e4])


def test_log_softmax_matches_torch():
    torch = pytest.importorskip("torch")
    z = np.random.default_rng(0).standard_normal((3, 5, 11))
    np.testing.assert_allclose(log_softmax(z), torch.log_softmax(torch.from_numpy(z), -1).numpy(), rtol=1e-12, atol=1e-12)
