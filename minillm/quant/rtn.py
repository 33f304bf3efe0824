"""Round-to-nearest (RTN) quantization: each weight independently to the nearest point of its grid.
The baseline that GPTQ (gptq.py, error compensation across columns) and AWQ (awq.py, activation-aware
rescaling) improve on; both reuse the grids defined here.

  INT8  per-output-channel symmetric absmax:  s_n = max_k |W_nk| / 127,  q = round(W / s) in [-127, 127]
  INT4  group-wise asymmetric (scale + zero point, Jacob et al. 2018, eq. 1):
        over each group g of G consecutive input channels, the range [min(W_g, 0), max(W_g, 0)] is
        split into 15 steps: s = (hi - lo) / 15, z = round(-lo / s), q = clamp(round(W / s) + z, 0, 15),
        W ~= s * (q - z). Keeping 0 inside the range makes zero exactly representable.
  INT3  the same grid with 7 steps (codes 0..7, bits=3), still stored two codes per byte: a
        3-bit grid for measuring accuracy, not a 3-bit file layout.
Shapes: W (N, K) = (out, in); G group size; scale/zero (N, K/G).
"""
import numpy as np

from .formats import pack_int4, unpack_int4

INT4_MAX = 15
INT8_MAX = 127
GROUP_SIZES = (32, 64, 128)
LOW_BITS = (3, 4)                # group-wise grids: INT4 and INT3, both stored in 4-bit nibbles


def _check_w(w, name="w"):
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"{name}: expected a 2-D float array (out, in), got shape {w.shape} dtype {w.dtype}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name}: contains NaN or Inf")
    return w


def check_group_size(group_size, K):
    if group_size not in GROUP_SIZES:
        raise ValueError(f"group_size: expected one of {GROUP_SIZES}, got {group_size!r}")
    if K % group_size:
        raise ValueError(f"group_size: must divide the input size {K}, got {group_size}")


# ------------------------------------------------------------------ INT8, per output channel
def int8_params(w):  # (N, K) -> scale (N,) float32
    """Symmetric absmax scale per output row; an all-zero row gets scale 0 (and codes 0)."""
    return (np.max(np.abs(w), axis=1) / INT8_MAX).astype(np.float32)                # (N,)


def quantize_int8(w):  # (N, K) float -> q (N, K) int8, scale (N,) float32
    w = _check_w(w).astype(np.float32)
    scale = int8_params(w)                                                          # (N,)
    inv = np.divide(1.0, scale, out=np.zeros_like(scale), where=scale > 0)          # 0 -> codes 0
    q = np.clip(np.rint(w * inv[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)     # (N, K)
    return q, scale


def dequantize_int8(q, scale):  # (N, K) int8, (N,) -> (N, K) float32
    return q.astype(np.float32) * scale[:, None]


# ------------------------------------------------------------------ INT4, group-wise asymmetric
def check_bits(bits):
    if bits not in LOW_BITS:
        raise ValueError(f"bits: expected one of {LOW_BITS} for the group-wise grid, got {bits!r}")
    return 2 ** bits - 1


def int4_params(w, group_size, qmax=INT4_MAX):  # (N, K) -> scale (N, K/G) float32, zero (N, K/G) uint8
    """Scale and integer zero point of every group from its range (0 always inside it), for codes
    0..qmax (15 for INT4, 7 for INT3)."""
    N, K = w.shape
    g = w.reshape(N, K // group_size, group_size)                                   # (N, K/G, G)
    lo = np.minimum(g.min(axis=2), 0.0)                                             # (N, K/G)
    hi = np.maximum(g.max(axis=2), 0.0)
    scale = ((hi - lo) / qmax).astype(np.float32)                                   # (N, K/G)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)          # all-zero group: any s works
    zero = np.clip(np.rint(-lo / scale), 0, qmax).astype(np.uint8)                  # (N, K/G)
    return scale, zero


def quantize_to_grid(w, scale, zero, qmin, qmax):  # (N, k), (N, k) or (N, 1) -> codes (N, k) int
    """The RTN step every method shares: q = clamp(round(w / s) + z, qmin, qmax)."""
    return np.clip(np.rint(w / scale) + zero, qmin, qmax)


def quantize_int4(w, group_size=128, bits=4):  # (N, K) -> packed (N, K/2) uint8, scale, zero (N, K/G)
    """Group-wise RTN to codes 0..2^bits - 1 (bits 4 or 3), packed two per byte."""
    w = _check_w(w).astype(np.float32)
    N, K = w.shape
    check_group_size(group_size, K)
    qmax = check_bits(bits)
    scale, zero = int4_params(w, group_size, qmax)
    s = np.repeat(scale, group_size, axis=1)                                        # (N, K)
    z = np.repeat(zero, group_size, axis=1).astype(np.float32)
    q = quantize_to_grid(w, s, z, 0, qmax).astype(np.uint8)                         # (N, K)
    return pack_int4(q), scale, zero


def dequantize_int4(packed, scale, zero, group_size):  # -> (N, K) float32
    q = unpack_int4(packed).astype(np.float32)                                      # (N, K)
    N, K = q.shape
    g = q.reshape(N, K // group_size, group_size) - zero[:, :, None].astype(np.float32)
    return (g * scale[:, :, None]).reshape(N, K).astype(np.float32)
