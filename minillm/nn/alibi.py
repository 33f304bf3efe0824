"""ALiBi, attention with linear biases (Press et al. 2022, "Train Short, Test Long", Sec. 3):
no position embeddings at all; instead each head h adds a fixed penalty proportional to the
query-key distance to its attention scores,

    softmax(q_i k_j^T / sqrt(D) - m_h (i - j)),   j <= i,

with head slopes m_h a geometric sequence: for H a power of two, m_h = 2^(-8 h / H), h = 1..H;
otherwise the slopes of the nearest smaller power of two 2^k, followed by every other slope of
2^(k+1) heads (Sec. 3, footnote; the authors' get_slopes). Unlike RoPE (rope.py), which rotates
q and k, ALiBi leaves them untouched, so it lives inside attention: this module is causal
attention (attention.py, same shapes, same GQA and "queries are the last T of S keys" rule)
with the bias added, forward and backward, in plain NumPy. The bias has no parameters, so the
backward is the softmax-attention backward with P computed from the biased scores.
"""
import math

import numpy as np


def alibi_slopes(n_head):
    """Per-head slopes m_h (H,) float64 (Press et al. 2022, Sec. 3)."""
    if not isinstance(n_head, (int, np.integer)) or n_head < 1:
        raise ValueError(f"n_head: expected a positive int, got {n_head!r}")

    def power_of_two(n):  # 2^(-8/n), 2^(-16/n), ..., 2^(-8)
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    p = 2 ** int(math.floor(math.log2(n_head)))
    slopes = power_of_two(p)
    if p != n_head:          # interleave: the odd-indexed slopes of twice as many heads
        slopes += power_of_two(2 * p)[0::2][:n_head - p]
    return np.asarray(slopes, dtype=np.float64)


def alibi_bias(slopes, T, S, dtype=np.float32):
    """-m_h (i - j) for query i (at position S - T + i) and key j, -inf where j > i:
    (H,), T, S -> (H, T, S)."""
    qpos = np.arange(S - T, S)[:, None]                                  # (T, 1)
    kpos = np.arange(S)[None, :]                                         # (1, S)
    dist = (qpos - kpos).astype(np.float64)                              # (T, S)
    bias = -np.asarray(slopes, dtype=np.float64)[:, None, None] * dist   # (H, T, S)
    return np.where(dist >= 0, bias, -np.inf).astype(dtype)


def _expand_kv(x, H):  # (B, Hkv, S, D) -> (B, H, S, D): each kv head serves H / Hkv query heads
    return np.repeat(x, H // x.shape[1], axis=1)


def alibi_attention_forward(q, k, v, slopes):
    """(B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D), (H,) -> out (B, H, T, D), cache.
    Queries are the last T of the S key positions (a KV cache holds the first S - T)."""
    B, H, T, D = q.shape
    S = k.shape[2]
    if H % k.shape[1] or k.shape != v.shape or k.shape[0] != B or k.shape[3] != D or S < T:
        raise ValueError(f"k, v: expected (B={B}, Hkv | {H}, S >= {T}, D={D}), got {k.shape}, {v.shape}")
    if np.shape(slopes) != (H,):
        raise ValueError(f"slopes: expected shape ({H},), got {np.shape(slopes)}")
    scale = 1.0 / math.sqrt(D)
    kk, vv = _expand_kv(k, H), _expand_kv(v, H)                          # (B, H, S, D)
    s = np.matmul(q, kk.swapaxes(-1, -2)) * scale + alibi_bias(slopes, T, S, q.dtype)  # (B, H, T, S)
    m = s.max(axis=-1, keepdims=True)                                    # (B, H, T, 1)
    p = np.exp(s - m)                                                    # (B, H, T, S)
    l = p.sum(axis=-1, keepdims=True)                                    # (B, H, T, 1)
    out = np.matmul(p / l, vv).astype(q.dtype)                           # (B, H, T, D)
    lse = (m + np.log(l))[..., 0]                                        # (B, H, T)
    return out, (q, k, v, slopes, out, lse, scale)


def alibi_attention_backward(dout, cache):
    """-> dq (B, H, T, D), dk, dv (B, Hkv, S, D). P is rebuilt from lse; dS = P (dP - rowsum(dout * out))."""
    q, k, v, slopes, out, lse, scale = cache
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    kk, vv = _expand_kv(k, H), _expand_kv(v, H)                          # (B, H, S, D)
    s = np.matmul(q, kk.swapaxes(-1, -2)) * scale + alibi_bias(slopes, T, S, q.dtype)  # (B, H, T, S)
    p = np.exp(s - lse[..., None])                                       # (B, H, T, S); 0 where masked
    dvv = np.matmul(p.swapaxes(-1, -2), dout)                            # (B, H, S, D)
    dp = np.matmul(dout, vv.swapaxes(-1, -2))                            # (B, H, T, S)
    Di = np.sum(dout * out, axis=-1, keepdims=True)                      # (B, H, T, 1)
    ds = p * (dp - Di) * scale                                           # (B, H, T, S)
    dq = np.matmul(ds, kk).astype(q.dtype)                               # (B, H, T, D)
    G = H // Hkv                                                         # query heads per kv head
    dk = np.matmul(ds.swapaxes(-1, -2), q).reshape(B, Hkv, G, S, D).sum(axis=2).astype(k.dtype)
    dv = dvv.reshape(B, Hkv, G, S, D).sum(axis=2).astype(v.dtype)        # (B, Hkv, S, D)
    return dq, dk, dv
