"""Quantized weight layouts, declared once: the block dtypes of ggml's GGUF formats (ggml-common.h),
the nibble packing shared by every 4-bit format here, and the NF4 code book (Dettmers et al. 2023,
"QLoRA", Sec. 3 and Appendix E). Only layouts and bit-level packing live here; how values are chosen
(round-to-nearest, GPTQ, AWQ, ggml's quantizers) lives in rtn.py, gptq.py, awq.py, ggml_quants.py.

Every dtype's itemsize is asserted against sizeof() of the same struct in csrc/quant.h, which carries
the matching _Static_assert: a single byte of drift would make GGUF files unreadable by llama.cpp.
"""
import numpy as np

from ..io.ggml_types import GGML_TYPES

# ---------------------------------------------------------------- ggml block formats (ggml-common.h)
QK8_0 = 32
BLOCK_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (QK8_0,))])               # w ~= d * qs
assert BLOCK_Q8_0.itemsize == 2 + QK8_0

QK4_0 = 32
BLOCK_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (QK4_0 // 2,))])          # w ~= d * (nibble - 8)
assert BLOCK_Q4_0.itemsize == 2 + QK4_0 // 2

QK_K = 256            # super-block of the K-quants
K_SCALE_SIZE = 12     # eight 6-bit scales and eight 6-bit mins packed into 12 bytes
BLOCK_Q4_K = np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (K_SCALE_SIZE,)),
                       ("qs", "u1", (QK_K // 2,))])       # w ~= d * sc_j * q - dmin * m_j, j = sub-block of 32
assert BLOCK_Q4_K.itemsize == 2 + 2 + K_SCALE_SIZE + QK_K // 2

BLOCK_Q6_K = np.dtype([("ql", "u1", (QK_K // 2,)), ("qh", "u1", (QK_K // 4,)), ("scales", "i1", (QK_K // 16,)),
                       ("d", "<f2")])                     # w ~= d * sc_j * (q - 32), j = sub-block of 16
assert BLOCK_Q6_K.itemsize == QK_K // 2 + QK_K // 4 + QK_K // 16 + 2

# name -> (block dtype, weights per block); ids and sizes are io/ggml_types.py's table, checked here
GGML_BLOCKS = {"q8_0": (BLOCK_Q8_0, QK8_0), "q4_0": (BLOCK_Q4_0, QK4_0),
               "q4_K": (BLOCK_Q4_K, QK_K), "q6_K": (BLOCK_Q6_K, QK_K)}
assert all((dtype.itemsize, block) == (GGML_TYPES[name].block_bytes, GGML_TYPES[name].block_size)
           for name, (dtype, block) in GGML_BLOCKS.items())

# ---------------------------------------------------------------- NF4 (QLoRA, Appendix E)
# The 16 quantiles of N(0, 1) rescaled to [-1, 1], with an exact zero: equal-mass bins for normally
# distributed weights, which is why 4-bit NormalFloat beats uniform INT4 at the same size.
NF4_CODE = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                     -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                     0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                     0.44070982403373718, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=np.float32)
NF4_BLOCK = 64          # weights per absmax (QLoRA's block size)
NF4_DQ_BLOCK = 256      # absmax values per second-level scale (double quantization)

# ---------------------------------------------------------------- INT4 nibble packing
# Within each run of 32 weights, byte j holds weight j in its low nibble and weight j + 16 in its high
# nibble (ggml's Q4_0 order). Unpacking a 16-byte load with `& 0xF` and `>> 4` then yields two
# contiguous runs of 16 weights, so SIMD kernels need no shuffles.
PACK_RUN = 32


def pack_int4(q):  # (..., K) uint8 in [0, 15] -> (..., K/2) uint8
    """Pack 4-bit codes two per byte in the run-of-32 order above. K must be a multiple of 32."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise TypeError(f"q: expected integer codes, got {q.dtype}")
    if q.shape[-1] % PACK_RUN:
        raise ValueError(f"q: last axis must be a multiple of {PACK_RUN}, got {q.shape[-1]}")
    if q.size and (q.min() < 0 or q.max() > 15):
        raise ValueError(f"q: codes must lie in [0, 15], got [{q.min()}, {q.max()}]")
    K = q.shape[-1]
    r = q.astype(np.uint8).reshape(*q.shape[:-1], K // PACK_RUN, 2, PACK_RUN // 2)  # (..., K/32, 2, 16)
    return (r[..., 0, :] | (r[..., 1, :] << 4)).reshape(*q.shape[:-1], K // 2)     # (..., K/2)


def unpack_int4(p):  # (..., K/2) uint8 -> (..., K) uint8
    """Inverse of pack_int4."""
    p = np.asarray(p)
    if p.dtype != np.uint8:
        raise TypeError(f"p: expected uint8, got {p.dtype}")
    if p.shape[-1] % (PACK_RUN // 2):
        raise ValueError(f"p: last axis must be a multiple of {PACK_RUN // 2}, got {p.shape[-1]}")
    K2 = p.shape[-1]
    r = p.reshape(*p.shape[:-1], K2 // (PACK_RUN // 2), 1, PACK_RUN // 2)           # (..., K/32, 1, 16)
    return np.concatenate([r & 0x0F, r >> 4], axis=-2).reshape(*p.shape[:-1], 2 * K2)


def fp16_round(x):
    """float32 -> nearest float16 (ties to even, as ggml's GGML_FP32_TO_FP16) -> float32."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
