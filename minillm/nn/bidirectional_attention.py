"""Bidirectional (encoder) scaled dot-product attention, BERT-style (Devlin et al. 2019; Vaswani
et al. 2017, eq. 1): softmax(q k^T / sqrt(D) + mask) v where every position sees every *valid*
position of its row, before and after it. The mask only hides padding keys of a batch of rows of
different lengths. attention.py is the causal sibling (decoders); this one is for token
classifiers, which label a word from both sides of its context.

Plain NumPy: the (B, H, T, T) probabilities are kept for backward, fine for the short rows (T <= a
few hundred) an encoder tags. Backward, with P = softmax(S), S = q k^T * scale:
    dv = P^T dout,   dP = dout v^T,   dS = P * (dP - rowsum(dP * P)),
    dq = dS k * scale,   dk = dS^T q * scale.
"""
import math
from typing import NamedTuple

import numpy as np


class EncoderAttentionCache(NamedTuple):
    q: np.ndarray       # (B, H, T, D)
    k: np.ndarray       # (B, H, T, D)
    v: np.ndarray       # (B, H, T, D)
    p: np.ndarray       # (B, H, T, T) attention probabilities
    scale: float


def bidirectional_attention_forward(q, k, v, valid):  # (B, H, T, D) x 3, (B, T) bool -> (B, H, T, D)
    """valid[b, t]: whether position t of row b is a real token (False = padding, never attended
    to). Every row needs at least one valid position."""
    B, H, T, D = q.shape
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"k, v: expected shape {q.shape}, got {k.shape} and {v.shape}")
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (B, T):
        raise ValueError(f"valid: expected shape {(B, T)}, got {valid.shape}")
    if not valid.any(axis=1).all():
        raise ValueError("valid: every row needs at least one valid position")
    scale = 1.0 / math.sqrt(D)      # a Python float: an np.float64 would promote float32 to float64
    s = (q @ k.transpose(0, 1, 3, 2)) * scale                           # (B, H, T, T)
    s = np.where(valid[:, None, None, :], s, -np.inf)                   # padding keys get weight 0
    s = s - s.max(axis=-1, keepdims=True)          # subtract the row max: exp overflows otherwise
    p = np.exp(s)                                                       # (B, H, T, T)
    p /= p.sum(axis=-1, keepdims=True)
    out = p @ v                                                         # (B, H, T, D)
    return out, EncoderAttentionCache(q, k, v, p, scale)


def bidirectional_attention_backward(dout, cache):  # (B, H, T, D) -> dq, dk, dv
    q, k, v, p, scale = cache
    dv = p.transpose(0, 1, 3, 2) @ dout                                 # (B, H, T, D)
    dp = dout @ v.transpose(0, 1, 3, 2)                                 # (B, H, T, T)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))                # (B, H, T, T) softmax'
    dq = (ds @ k) * scale                                               # (B, H, T, D)
    dk = (ds.transpose(0, 1, 3, 2) @ q) * scale                         # (B, H, T, D)
    return dq, dk, dv
