"""Formats: nibble packing round trips, and dequantize(quantize(w)) within each format's derived error
bound (hypothesis over shapes and value ranges, including all-zero and constant groups)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.quant.formats import NF4_CODE, pack_int4, unpack_int4
from minillm.quant.nf4 import quantize_nf4
from minillm.quant.rtn import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8

EPS = np.finfo(np.float32).eps


def _weights(seed, N, K, kind, magnitude):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((N, K)) * magnitude).astype(np.float32)
    if kind == "zero_groups":
        w[:, :32] = 0.0
    elif kind == "constant_groups":
        w[:, :32] = np.float32(magnitude)
        w[0, 32:64] = -np.float32(magnitude)
    elif kind == "all_zero":
        w[:] = 0.0
    return w


shapes = dict(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 6), K=st.sampled_from([64, 128, 256, 384]),
              kind=st.sampled_from(["normal", "zero_groups", "constant_groups", "all_zero"]),
              magnitude=st.sampled_from([1e-6, 1e-2, 1.0, 300.0]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 5), runs=st.integers(1, 4))
def test_pack_unpack_int4_round_trip(seed, rows, runs):
    q = np.random.default_rng(seed).integers(0, 16, (rows, 32 * runs)).astype(np.uint8)
    p = pack_int4(q)
    assert p.shape == (rows, 16 * runs) and p.dtype == np.uint8
    np.testing.assert_array_equal(unpack_int4(p), q)
    np.testing.assert_array_equal(pack_int4(unpack_int4(p)), p)


def test_pack_layout_is_ggml_q4_0_order():
    q = np.arange(32, dtype=np.uint8) % 16
    p = pack_int4(q)
    assert p[0] == q[0] | (q[16] << 4) and p[15] == q[15] | (q[31] << 4)


def test_pack_rejects_bad_codes():
    with pytest.raises(ValueError, match="codes"):
        pack_int4(np.full(32, 16))
    with pytest.raises(ValueError, match="multiple of 32"):
        pack_int4(np.zeros(31, dtype=np.uint8))


@settings(max_examples=30, deadline=None)
@given(**shapes)
def test_int8_error_bound(seed, N, K, kind, magnitude):
    w = _weights(seed, N, K, kind, magnitude)
    q, scale = quantize_int8(w)
    err = np.abs(dequantize_int8(q, scale) - w)
    # rounding: scale/2 per weight; float32 arithmetic adds a few ulps of |w|
    bound = scale[:, None] / 2 + 4 * EPS * np.abs(w).max(axis=1, keepdims=True)
    assert np.all(err <= bound)
    assert np.all(dequantize_int8(q, scale)[w == 0] == 0)


@settings(max_examples=30, deadline=None)
@given(G=st.sampled_from([32, 64, 128]), bits=st.sampled_from([4, 3]), **shapes)
def test_int4_error_bound(seed, N, K, kind, magnitude, G, bits):
    if K % G:
        G = 32
    w = _weights(seed, N, K, kind, magnitude)
    packed, scale, zero = quantize_int4(w, G, bits)
    np.testing.assert_array_equal(pack_int4(unpack_int4(packed)), packed)
    assert unpack_int4(packed).max() <= 2 ** bits - 1 and zero.max() <= 2 ** bits - 1   # INT3: codes 0..7
    err = np.abs(dequantize_int4(packed, scale, zero, G) - w)
    s = np.repeat(scale, G, axis=1)
    # s/2 from rounding (the rounded zero point moves the grid by <= s/2, and clamping then costs
    # <= s/2 as well, never both); float32 adds a few ulps of the range
    bound = s / 2 + 16 * EPS * (np.abs(w) + (2 ** bits - 1) * s)
    assert np.all(err <= bound)
    zero_groups = np.all(w.reshape(N, -1, G) == 0, axis=2)
    assert np.all(dequantize_int4(packed, scale, zero, G).reshape(N, -1, G)[zero_groups] == 0)


@settings(max_examples=25, deadline=None)
@given(**shapes)
def test_nf4_error_bound(seed, N, K, kind, magnitude):
    w = _weights(seed, N, K, kind, magnitude)
    lin = quantize_nf4(w)
    a = np.repeat(lin.absmax(), 64, axis=1)                                       # stored absmax
    err = np.abs(lin.dequantize() - w)
    half_gap = np.max(np.diff(NF4_CODE)) / 2
    # nearest level: half the widest gap times the stored absmax; where double quantization stored
    # an absmax below the true one, values beyond it clip by the difference
    bound = a * half_gap + np.maximum(0, np.abs(w) - a) + 8 * EPS * np.abs(w).max()
    assert np.all(err <= bound)


def test_nf4_double_quantization_size():
    w = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
    lin = quantize_nf4(w)
    # 4 bits + 8/64 (int8 absmax) + 32/(64*256) (second-level scale) + the one float mean
    assert abs(lin.bits_per_weight - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-3
