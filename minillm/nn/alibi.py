"""ALiBi, attention with linear biases (Press et al. 2022, "Train Short, Test Long", Sec. 3):
no position embeddings at all; instead each head h adds a fixed penalty proportional to the
query-key distance to its attention scores,

    softmax(q_i k_j^T / sqrt(D) - m_h (i - j)),   j <= i,

with head slopes m_h a geometric sequence: for H a power of two, m_h = 2^(-8 h / H), h = 1..H;
otherwise the slopes of the nearest smaller power of two 2^k, followed by every other slope of
2^(k+1) heads (Sec. 3, footnote; the authors' get_slopes). Unlike RoPE (rope.py), which rotates
q and k, ALiBi leaves them untouched, so it lives inside attention: this module builds the bias and
hands it to causal attention (attention.py, same shapes, same GQA and "queries are the last T
of S keys" rule), whose reference kernel adds it to the scores. The bias has no parameters, so
the backward is the softmax-attention backward with P computed from the biased scores.
"""
import math

import numpy as np

from .attention import attention_backward, attention_forward


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


def alibi_attention_forward(q, k, v, slopes):
    """(B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D), (H,) -> out (B, H, T, D), cache.
    Queries are the last T of the S key positions (a KV cache holds the first S - T)."""
    B, H, T, D = q.shape
    S = k.shape[2]
    if H % k.shape[1] or k.shape != v.shape or k.shape[0] != B or k.shape[3] != D or S < T:
        raise ValueError(f"k, v: expected (B={B}, Hkv | {H}, S >= {T}, D={D}), got {k.shape}, {v.shape}")
    if np.shape(slopes) != (H,):
        raise ValueError(f"slopes: expected shape ({H},), got {np.shape(slopes)}")
    return attention_forward(q, k, v, bias=alibi_bias(slopes, T, S, q.dtype))  # bias (H, T, S)


def alibi_attention_backward(dout, cache):
    """-> dq (B, H, T, D), dk, dv (B, Hkv, S, D): attention's backward with the (constant) bias."""
    return attention_backward(dout, cache)
