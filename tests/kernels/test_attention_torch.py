"""Native attention (forward, backward) against PyTorch's scaled_dot_product_attention and autograd.

Torch's is_causal aligns the mask top-left, so it is used only for S == T; with a cache (S > T)
the bottom-right causal mask of our convention (query i sees keys <= S - T + i) is passed as an
explicit boolean attn_mask. GQA is compared by expanding k, v to H heads (repeat_interleave, the
same head mapping h -> h // G), and the gradient of the expanded k, v is summed back over groups.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.kernels import native

torch = pytest.importorskip("torch")
F = torch.nn.functional
pytestmark = pytest.mark.skipif(native.lib is None, reason="native kernels not built")


def torch_attention(q, k, v, scale):
    """Returns out and a closure computing (dq, dk, dv) for an upstream dout, all float64."""
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    tq, tk, tv = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (q, k, v))
    kk, vv = (t.repeat_interleave(H // Hkv, dim=1) for t in (tk, tv))     # (B, H, S, D)
    if S == T:
        out = F.scaled_dot_product_attention(tq, kk, vv, is_causal=True, scale=scale)
    else:
        mask = torch.arange(S)[None, :] <= (S - T + torch.arange(T))[:, None]   # (T, S)
        out = F.scaled_dot_product_attention(tq, kk, vv, attn_mask=mask, scale=scale)

    def grads(dout):
        out.backward(torch.tensor(dout, dtype=torch.float64))
        return tq.grad.numpy(), tk.grad.numpy(), tv.grad.numpy()

    return out.detach().numpy(), grads


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), G=st.integers(1, 3), T=st.integers(1, 80),
       extra=st.sampled_from([0, 0, 1, 37]), D=st.sampled_from([8, 32, 64]),
       seed=st.integers(0, 2**32 - 1))
def test_native_attention_matches_torch(B, Hkv, G, T, extra, D, seed):
    rng = np.random.default_rng(seed)
    H, S = Hkv * G, T + extra
    q = rng.standard_normal((B, H, T, D), dtype=np.float32)
    k, v = rng.standard_normal((2, B, Hkv, S, D), dtype=np.float32)
    dout = rng.standard_normal((B, H, T, D), dtype=np.float32)
    scale = 1.0 / np.sqrt(D)
    want, torch_grads = torch_attention(q, k, v, scale)

    out, lse = np.empty((B, H, T, D), np.float32), np.empty((B, H, T), np.float32)
    native.attention_forward(out, lse, q, k, v, scale)
    # float32 kernel vs float64 torch: a few ulp per key of a convex combination of O(1) values
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 + 1e-6 * S)

    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    native.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale)
    tdq, tdk, tdv = torch_grads(dout)
    np.testing.assert_allclose(dq, tdq, rtol=1e-4, atol=1e-5 + 2e-6 * S)         # sum over keys
    # dk, dv: torch's grads of the expanded heads, already summed by repeat_interleave's backward
    np.testing.assert_allclose(dk, tdk, rtol=1e-4, atol=1e-5 + 2e-6 * G * T)     # sum over rows
    np.testing.assert_allclose(dv, tdv, rtol=1e-4, atol=1e-5 + 2e-6 * G * T)
