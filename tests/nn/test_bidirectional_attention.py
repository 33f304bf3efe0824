"""Bidirectional (encoder) attention: backward against finite differences and torch autograd,
padding keys ignored, bad masks rejected."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.nn.bidirectional_attention import (bidirectional_attention_backward,
                                                bidirectional_attention_forward)
from tests.gradcheck import numerical_grad


def _valid(rng, B, T):
    lengths = rng.integers(1, T + 1, B)
    return np.arange(T)[None, :] < lengths[:, None]                                 # (B, T)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), H=st.integers(1, 3), T=st.integers(1, 6), D=st.integers(1, 5),
       seed=st.integers(0, 2**32 - 1))
def test_bidirectional_attention_backward_matches_finite_differences(B, H, T, D, seed):
    rng = np.random.default_rng(seed)
    q, k, v, dout = rng.standard_normal((4, B, H, T, D))     # float64 on purpose: finite differences
    valid = _valid(rng, B, T)
    dq, dk, dv = bidirectional_attention_backward(dout, bidirectional_attention_forward(q, k, v, valid)[1])
    for x, dx, i in ((q, dq, 0), (k, dk, 1), (v, dv, 2)):
        def loss(x_):
            args = [q, k, v]
            args[i] = x_
            return np.sum(bidirectional_attention_forward(*args, valid)[0] * dout)
        np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-5, atol=1e-7)


def test_bidirectional_attention_matches_torch_and_ignores_padding():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, H, T, D = 2, 3, 7, 4
    q, k, v, dout = rng.standard_normal((4, B, H, T, D))
    valid = _valid(rng, B, T)
    valid[0, :] = True
    valid[1, 4:] = False
    out, cache = bidirectional_attention_forward(q, k, v, valid)
    dq, dk, dv = bidirectional_attention_backward(dout, cache)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=torch.tensor(valid)[:, None, None, :])
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, t in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-9, atol=1e-12)
    # changing a padded key or value changes nothing
    k2, v2 = k.copy(), v.copy()
    k2[1, :, 5], v2[1, :, 6] = 100.0, -100.0
    np.testing.assert_array_equal(bidirectional_attention_forward(q, k2, v2, valid)[0], out)


def test_bidirectional_attention_rejects_bad_masks():
    q = np.zeros((1, 1, 3, 2))
    with pytest.raises(ValueError, match="valid"):
        bidirectional_attention_forward(q, q, q, np.ones((1, 4), bool))
    with pytest.raises(ValueError, match="valid"):
        bidirectional_attention_forward(q, q, q, np.zeros((1, 3), bool))
