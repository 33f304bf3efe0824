"""4-bit NormalFloat with double quantization (Dettmers et al. 2023, "QLoRA", Sec. 3, eqs. 4-6).

Weights are cut into blocks of 64 along the input axis; each block is scaled by its absmax into
[-1, 1] and every value is rounded to the nearest of the 16 NF4 levels (formats.NF4_CODE: quantiles of
a standard normal, so each level is equally likely for normal weights, unlike INT4's uniform grid in
rtn.py). Double quantization then stores the absmax values themselves in 8 bits: subtract their mean,
and quantize blocks of 256 of them symmetrically to int8 with one float32 scale each, taking the
scale overhead from 32/64 = 0.5 to 8/64 + 32/(64*256) ~= 0.127 bits per weight.
"""
import numpy as np

from ..kernels.arith import ceil_div

from .formats import NF4_BLOCK, NF4_CODE, NF4_DQ_BLOCK, pack_int4
from .linear import NF4Linear

_MIDPOINTS = ((NF4_CODE[1:] + NF4_CODE[:-1]) / 2).astype(np.float32)  # decision boundaries


def quantize_nf4(w):  # (N, K) float -> NF4Linear
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % NF4_BLOCK:
        raise ValueError(f"w: expected (N, K) with K a multiple of {NF4_BLOCK}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("w: contains NaN or Inf")
    N, K = w.shape
    blocks = w.reshape(N, K // NF4_BLOCK, NF4_BLOCK)                                 # (N, K/64, 64)
    absmax = np.abs(blocks).max(axis=2).reshape(-1)                                  # (N*K/64,)
    # double quantization of the absmax values (QLoRA eq. 6, with int8 in place of FP8)
    mean = np.float32(absmax.mean())
    r = absmax - mean
    nb2 = ceil_div(r.size, NF4_DQ_BLOCK)
    rp = np.zeros(nb2 * NF4_DQ_BLOCK, dtype=np.float32)
    rp[:r.size] = r
    s2 = (np.abs(rp.reshape(nb2, NF4_DQ_BLOCK)).max(axis=1) / 127).astype(np.float32)  # (nb2,)
    inv2 = np.divide(np.float32(1), s2, out=np.zeros_like(s2), where=s2 > 0)
    code2 = np.clip(np.rint(rp.reshape(nb2, -1) * inv2[:, None]), -127, 127).astype(np.int8).reshape(-1)[:r.size]
    # quantize the weights against the absmax that will actually be stored
    stored = (code2.astype(np.float32) * np.repeat(s2, NF4_DQ_BLOCK)[:r.size] + mean).reshape(N, K // NF4_BLOCK)
    inv = np.divide(np.float32(1), stored, out=np.zeros_like(stored), where=stored > 0)
    q = np.searchsorted(_MIDPOINTS, blocks * inv[:, :, None]).astype(np.uint8)      # nearest level
    return NF4Linear(pack_int4(q.reshape(N, K)), code2, s2, mean)
