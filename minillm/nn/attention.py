"""Causal scaled dot-product attention (Vaswani et al. 2017, eq. 1) with grouped-query heads
(Ainslie et al. 2023): softmax(q k^T / sqrt(D) + mask) v. The kernels (reference.py, csrc/) are
tiled with an online softmax, so only the (B, H, T) log-sum-exp is kept for backward, not the
(B, H, T, S) probabilities."""
from typing import NamedTuple

import numpy as np

from .. import kernels


class AttentionCache(NamedTuple):
    """What attention_forward keeps for attention_backward."""
    q: np.ndarray       # (B, H, T, D)
    k: np.ndarray       # (B, Hkv, S, D)
    v: np.ndarray       # (B, Hkv, S, D)
    out: np.ndarray     # (B, H, T, D)
    lse: np.ndarray     # (B, H, T) log-sum-exp of each query row's scores
    scale: float        # 1 / sqrt(D)
    bias: np.ndarray    # additive score bias broadcastable to (B, H, T, S), or None


def attention_forward(q, k, v, bias=None):  # (B, H, T, D), (B, Hkv, S, D) x 2 -> (B, H, T, D), cache
    """bias: None, or a constant additive score bias broadcastable to (B, H, T, S) (ALiBi)."""
    B, H, T, D = q.shape
    if H % k.shape[1]:
        raise ValueError(f"k: n_head {H} must be a multiple of n_kv_head {k.shape[1]}")
    q, k, v = (np.ascontiguousarray(a) for a in (q, k, v))
    scale = 1.0 / np.sqrt(D)
    out = np.empty_like(q)                                               # (B, H, T, D)
    lse = np.empty((B, H, T), dtype=q.dtype)                             # (B, H, T)
    kernels.attention_forward(out, lse, q, k, v, scale, bias)
    return out, AttentionCache(q, k, v, out, lse, scale, bias)


def attention_backward(dout, cache):  # (B, H, T, D) -> dq, dk, dv
    c = cache
    dq, dk, dv = np.empty_like(c.q), np.empty_like(c.k), np.empty_like(c.v)
    kernels.attention_backward(dq, dk, dv, np.ascontiguousarray(dout), c.q, c.k, c.v, c.out, c.lse, c.scale, c.bias)
    return dq, dk, dv


# ------------------------------------------------------------------ packed sequences
def segment_bounds(segments, T):  # (T,) int -> [(start, end)], the runs of equal ids
    """Document spans of a packed row: a new document starts wherever the id changes."""
    seg = np.asarray(segments)
    if seg.shape != (T,) or seg.dtype.kind not in "iu":
        raise ValueError(f"segments: expected an int array of shape ({T},), got {seg.shape} {seg.dtype}")
    starts = [0] + [int(t) for t in np.flatnonzero(seg[1:] != seg[:-1]) + 1]
    return list(zip(starts, starts[1:] + [T]))


def segmented_attention_forward(q, k, v, bounds):  # (B, H, T, D), (B, Hkv, T, D) x 2 -> (B, H, T, D)
    """Causal attention within each [start, end) span and none across spans: the block-diagonal
    causal mask of sequence packing, computed exactly by one causal attention call per document
    (cheaper than a masked (T, T) score matrix, and it reuses the tested kernels)."""
    out = np.empty_like(q)                                               # (B, H, T, D)
    caches = []
    for s, e in bounds:
        out[:, :, s:e], c = attention_forward(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e])
        caches.append(c)
    return out, (bounds, caches)


def segmented_attention_backward(dout, cache):  # (B, H, T, D) -> dq, dk, dv
    bounds, caches = cache
    B, H, T, D = dout.shape
    Hkv = caches[0].k.shape[1]
    dq = np.empty_like(dout)                                             # (B, H, T, D)
    dk = np.empty((B, Hkv, T, D), dtype=dout.dtype)                      # (B, Hkv, T, D)
    dv = np.empty_like(dk)
    for (s, e), c in zip(bounds, caches):
        dq[:, :, s:e], dk[:, :, s:e], dv[:, :, s:e] = attention_backward(dout[:, :, s:e], c)
    return dq, dk, dv
