"""Rotary position embedding, RoPE (Su et al. 2021, eq. 34), in the "rotate half" channel layout of
Hugging Face Llama: channel i is paired with channel i + D/2 and the pair is rotated by angle
pos * inv_freq[i], inv_freq[i] = base^(-2i/D).

rope_parameters is the one place where the frequencies are chosen; scaled variants for long
contexts extend it through its `scaling` argument (a Hugging Face style rope_scaling dict)."""
import numpy as np

from .. import kernels


def rope_parameters(head_dim, base=10000.0, scaling=None, seq_len=None):
    """-> (inv_freq (D/2,) float64, attention_factor float). Without scaling: base^(-2i/D), 1.0."""
    if head_dim % 2:
        raise ValueError(f"head_dim: RoPE needs an even head dimension, got {head_dim}")
    inv_freq = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # (D/2,)
    if scaling is None or scaling.get("rope_type", scaling.get("type", "default")) == "default":
        return inv_freq, 1.0
    raise ValueError(f"scaling: unsupported rope_type {scaling.get('rope_type', scaling.get('type'))!r}")


def rope_tables(positions, inv_freq, attention_factor=1.0, dtype=np.float32):
    """cos and sin of pos * inv_freq for each position: (T,) int, (D/2,) -> (T, D/2), (T, D/2).
    Angles are computed in float64 (float32 loses precision for positions beyond ~10^4)."""
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    return ((np.cos(ang) * attention_factor).astype(dtype),
            (np.sin(ang) * attention_factor).astype(dtype))


def rope_forward(x, cos, sin):  # (B, H, T, D), (T, D/2), (T, D/2) -> (B, H, T, D)
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    kernels.rope(out, x, cos, sin)
    return out, (cos, sin)


def rope_backward(dout, cache):  # the rotation is orthogonal: its transpose rotates by -angle
    cos, sin = cache
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(dout)
    kernels.rope(dx, dout, cos, np.ascontiguousarray(-sin))
    return dx
