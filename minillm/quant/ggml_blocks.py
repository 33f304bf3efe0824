"""Dequantizers of every ggml block type minillm reads from GGUF files (ggml-quants.c,
dequantize_row_*): the NumPy reference that csrc/ggml_blocks.c's fused kernels are checked against,
and itself checked to equal the gguf package's (gguf.quants.dequantize) bit for bit. Layouts are in
formats.py; the quantizers, for the types minillm also writes, in ggml_quants.py.

  F16, BF16   one 16-bit float per weight                                   16 bits/weight
  Q8_0        blocks of 32: w = d q, q int8                                  8.5
  Q4_0, Q5_0  blocks of 32: w = d (q - 8), d (q - 16); q 4 / 5 bits          4.5, 5.5
  Q4_1, Q5_1  blocks of 32: w = d q + m                                      5.0, 6.0
  Q2_K        256 = 16 sub-blocks of 16: w = d sc_j q - dmin m_j, q 2 bits, (sc_j, m_j) 4+4 bits   2.625
  Q3_K        256 = 16 x 16: w = d (s_j - 32) (q - 4 [high bit clear]), s_j 6 bits            3.4375
  Q4_K, Q5_K  256 = 8 x 32: w = d sc_j q - dmin m_j, (sc_j, m_j) 6+6 bits    4.5, 5.5
  Q6_K        256 = 16 x 16: w = d sc_j (q - 32), sc_j int8, q 6 bits        6.5625

Each function takes blocks (nb,) of the type's dtype and returns (nb, block) float32, computing every
product in float32 in the order ggml's reference does, so results are exact, not merely close.
"""
import numpy as np

from .formats import GGML_BLOCKS, QK_K

F32 = np.float32


def _f16(a):  # fp16 field -> (nb, 1) float32
    return a.astype(F32)[:, None]


def _nibbles32(qs):  # (nb, 16) -> (nb, 32) uint8: byte j holds weight j (low) and j + 16 (high)
    return np.concatenate([qs & 0xF, qs >> 4], axis=1)


def _high_bits32(qh):  # (nb, 4) uint8 = one little-endian u32 -> (nb, 32): bit j of it, j = 0..31
    return np.unpackbits(qh, axis=1, bitorder="little")


def _f16_blocks(b):
    return b.astype(F32)[:, None]


def _bf16_blocks(b):
    return (b.astype(np.uint32) << 16).view(F32)[:, None]


def _q8_0(b):
    return b["qs"].astype(F32) * _f16(b["d"])


def _q4_0(b):
    return _f16(b["d"]) * (_nibbles32(b["qs"]).astype(np.int8) - np.int8(8)).astype(F32)


def _q4_1(b):
    return _f16(b["d"]) * _nibbles32(b["qs"]).astype(F32) + _f16(b["m"])


def _q5(b):  # the 5-bit codes of Q5_0 / Q5_1, (nb, 32) uint8
    return _nibbles32(b["qs"]) | (_high_bits32(b["qh"]) << 4)


def _q5_0(b):
    return _f16(b["d"]) * (_q5(b).astype(np.int8) - np.int8(16)).astype(F32)


def _q5_1(b):
    return _f16(b["d"]) * _q5(b).astype(F32) + _f16(b["m"])


def _crumbs(qs, runs):  # (nb, 32 * runs) uint8 -> (nb, 4 * 32 * runs): 2-bit fields, shift 0,2,4,6 per run of 32
    q = qs.reshape(len(qs), runs, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
    return (q & 3).reshape(len(qs), -1)


def _q2_k(b):
    nb = len(b)
    sc = b["scales"]                                                                # (nb, 16)
    dl = (_f16(b["d"]) * (sc & 0xF).astype(F32))[:, :, None]                        # (nb, 16, 1)
    ml = (_f16(b["dmin"]) * (sc >> 4).astype(F32))[:, :, None]
    q = _crumbs(b["qs"], 2).reshape(nb, 16, 16).astype(F32)
    return (dl * q - ml).reshape(nb, QK_K)


def unpack_scales_q3_k(s):  # (nb, 12) -> (nb, 16) int: the sixteen 6-bit scales, before the - 32
    lo = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)                  # low 4 bits
    hi = (s[:, 8:12].reshape(-1, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3
    return lo | (hi.reshape(-1, 16) << 4)


def _q3_k(b):
    nb = len(b)
    dl = (_f16(b["d"]) * (unpack_scales_q3_k(b["scales"]).astype(np.int8) - np.int8(32)).astype(F32))
    q = _crumbs(b["qs"], 2).astype(np.int8)                                          # (nb, 256)
    hbit = np.unpackbits(b["hmask"][:, None, :], axis=1, bitorder="little")          # (nb, 8, 32): bit j of hmask[l]
    q = (q - ((hbit.reshape(nb, QK_K) ^ 1) << 2).astype(np.int8)).astype(F32)        # high bit clear: q - 4
    return (dl[:, :, None] * q.reshape(nb, 16, 16)).reshape(nb, QK_K)


def unpack_scales_k4(s):  # (nb, 12) -> sc, m (nb, 8) uint8 (ggml's get_scale_min_k4)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc, m


def _k4_codes(qs):  # (nb, 128) -> (nb, 8, 32): 32-byte runs, low nibbles = sub-block 2i, high = 2i + 1
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 0xF, q >> 4], axis=2).reshape(-1, 8, 32)


def _q4_k(b):
    sc, m = unpack_scales_k4(b["scales"])
    d = (_f16(b["d"]) * sc.astype(F32))[:, :, None]                                  # (nb, 8, 1)
    dm = (_f16(b["dmin"]) * m.astype(F32))[:, :, None]
    return (d * _k4_codes(b["qs"]).astype(F32) - dm).reshape(-1, QK_K)


def _q5_k(b):
    sc, m = unpack_scales_k4(b["scales"])
    d = (_f16(b["d"]) * sc.astype(F32))[:, :, None]
    dm = (_f16(b["dmin"]) * m.astype(F32))[:, :, None]
    hbit = np.unpackbits(b["qh"][:, None, :], axis=1, bitorder="little")             # (nb, 8, 32): bit j -> sub-block j
    q = _k4_codes(b["qs"]) | (hbit << 4)
    return (d * q.astype(F32) - dm).reshape(-1, QK_K)


def _q6_k(b):
    nb = len(b)
    d = (_f16(b["d"]) * b["scales"].astype(F32))[:, :, None]                         # (nb, 16, 1)
    ql = b["ql"].reshape(nb, 2, 2, 32)                                               # (nb, half, 2, 32)
    lo = np.concatenate([ql & 0xF, ql >> 4], axis=2)                                 # runs 0, 1, 2, 3
    hi = _crumbs(b["qh"], 2).reshape(nb, 2, 4, 32)
    q = ((lo | (hi << 4)).astype(np.int8) - np.int8(32)).reshape(nb, 16, 16).astype(F32)
    return (d * q).reshape(nb, QK_K)


DEQUANTIZERS = {"f16": _f16_blocks, "bf16": _bf16_blocks, "q8_0": _q8_0, "q4_0": _q4_0, "q4_1": _q4_1,
                "q5_0": _q5_0, "q5_1": _q5_1, "q2_K": _q2_k, "q3_K": _q3_k, "q4_K": _q4_k, "q5_K": _q5_k,
                "q6_K": _q6_k}
assert set(DEQUANTIZERS) == set(GGML_BLOCKS)


def dequantize_blocks(blocks, fmt):  # (N, nb) blocks -> (N, nb * block) float32
    """Decode a tensor stored as ggml blocks of type fmt (a key of formats.GGML_BLOCKS)."""
    if fmt not in GGML_BLOCKS:
        raise ValueError(f"fmt: expected one of {sorted(GGML_BLOCKS)}, got {fmt!r}")
    dtype, bs = GGML_BLOCKS[fmt]
    blocks = np.asarray(blocks)
    if blocks.dtype != dtype:
        raise TypeError(f"blocks: expected the {fmt} block dtype {dtype}, got {blocks.dtype}")
    if blocks.ndim == 0:
        raise ValueError(f"blocks: expected at least one axis, got shape {blocks.shape}")
    shape = blocks.shape
    y = DEQUANTIZERS[fmt](blocks.reshape(-1))                                        # (nb, bs)
    return y.reshape(*shape[:-1], shape[-1] * bs).astype(F32, copy=False)


# ---------------------------------------------------------------------------------------------
# Integer codes: every block type as w = s u + c with integer codes u and, per 16 weights, a float
# scale s and offset c (the form csrc/qgemm.c's int8-activation kernels compute in). u . x_q then
# sums exactly in integers. Q8_0 keeps its signed codes (c = 0); the others' codes are unsigned.

def _codes_q(b, fmt):  # the 32-weight types -> u (nb, 32), s, c (nb, 2)
    d = b["d"].astype(F32)
    if fmt == "q8_0":
        return b["qs"].astype(np.int16), d, np.zeros_like(d)
    u = _nibbles32(b["qs"]) if fmt in ("q4_0", "q4_1") else _q5(b)
    if fmt in ("q4_1", "q5_1"):
        return u.astype(np.int16), d, b["m"].astype(F32)
    return u.astype(np.int16), d, F32(-8.0 if fmt == "q4_0" else -16.0) * d


def _codes_k(b, fmt):  # the K-quants -> u (nb, 256), s, c (nb, 16 or 8)
    nb = len(b)
    if fmt in ("q4_K", "q5_K"):
        sc, m = unpack_scales_k4(b["scales"])
        u = _k4_codes(b["qs"])
        if fmt == "q5_K":
            u = u | (np.unpackbits(b["qh"][:, None, :], axis=1, bitorder="little") << 4)
        return u.reshape(nb, QK_K), _f16(b["d"]) * sc.astype(F32), -(_f16(b["dmin"]) * m.astype(F32))
    if fmt == "q2_K":
        sc = b["scales"]
        return (_crumbs(b["qs"], 2), _f16(b["d"]) * (sc & 0xF).astype(F32), -(_f16(b["dmin"]) * (sc >> 4).astype(F32)))
    if fmt == "q3_K":
        s = _f16(b["d"]) * (unpack_scales_q3_k(b["scales"]).astype(np.int8) - np.int8(32)).astype(F32)
        hbit = np.unpackbits(b["hmask"][:, None, :], axis=1, bitorder="little").reshape(nb, QK_K)
        return _crumbs(b["qs"], 2) | (hbit << 2), s, F32(-4.0) * s
    ql = b["ql"].reshape(nb, 2, 2, 32)                                               # q6_K
    u = np.concatenate([ql & 0xF, ql >> 4], axis=2) | (_crumbs(b["qh"], 2).reshape(nb, 2, 4, 32) << 4)
    s = _f16(b["d"]) * b["scales"].astype(F32)
    return u.reshape(nb, QK_K), s, F32(-32.0) * s


INT_CODE_TYPES = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")


def integer_codes(blocks, fmt):  # (N, nb) blocks -> u (N, K) int16, s (N, K/16) float32, c (N, K/16) float32
    """The block type as integer codes with a scale and an offset per 16 weights: w = s u + c for
    every weight (equal to dequantize_blocks up to float32 rounding of the product; exact in reals)."""
    if fmt not in INT_CODE_TYPES:
        raise ValueError(f"fmt: expected one of {INT_CODE_TYPES}, got {fmt!r}")
    blocks = np.asarray(blocks)
    N, nb = blocks.shape
    flat = blocks.reshape(-1)
    u, s, c = (_codes_q if GGML_BLOCKS[fmt][1] == 32 else _codes_k)(flat, fmt)
    s, c = s.reshape(len(flat), -1), c.reshape(len(flat), -1)                       # (nb, groups)
    per16 = GGML_BLOCKS[fmt][1] // 16                                                # halves of 16 per block
    s, c = np.repeat(s, per16 // s.shape[1], axis=1), np.repeat(c, per16 // c.shape[1], axis=1)
    return (u.astype(np.int16).reshape(N, -1), s.astype(F32).reshape(N, -1), c.astype(F32).reshape(N, -1))
