"""Causal scaled dot-product attention (Vaswani et al. 2017, eq. 1) with grouped-query heads
(Ainslie et al. 2023): softmax(q k^T / sqrt(D) + mask) v. The kernels (reference.py, csrc/) are
tiled with an online softmax, so only the (B, H, T) log-sum-exp is kept for backward, not the
(B, H, T, S) probabilities."""
import numpy as np

from .. import kernels


def attention_forward(q, k, v):  # (B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D) -> (B, H, T, D)
    B, H, T, D = q.shape
    if H % k.shape[1]:
        raise ValueError(f"k: n_head {H} must be a multiple of n_kv_head {k.shape[1]}")
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    scale = 1.0 / np.sqrt(D)
    out = np.empty_like(q)                                               # (B, H, T, D)
    lse = np.empty((B, H, T), dtype=q.dtype)                             # (B, H, T)
    kernels.attention_forward(out, lse, q, k, v, scale)
    return out, (q, k, v, out, lse, scale)


def attention_backward(dout, cache):  # (B, H, T, D) -> dq, dk, dv
    q, k, v, out, lse, scale = cache
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    kernels.attention_backward(dq, dk, dv, np.ascontiguousarray(dout), q, k, v, out, lse, scale)
    return dq, dk, dv
