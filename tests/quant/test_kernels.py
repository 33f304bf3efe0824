"""Fused dequant-matmul kernels (csrc/quant.c) equal dequantize-then-matmul within float32 rounding,
for every format, on the decode (M <= 4), small-batch and tiled prefill paths."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.quant import _native
from minillm.quant.ggml_quants import quantize_blocks
from minillm.quant.linear import GGMLLinear, Int4Linear, Int8Linear
from minillm.quant.llm_int8 import quantize_llm_int8
from minillm.quant.nf4 import quantize_nf4
from minillm.quant.rtn import quantize_int4, quantize_int8

pytestmark = pytest.mark.skipif(not _native.available(), reason="native extension not built")


def _make(fmt, w, G):
    if fmt == "int8":
        return Int8Linear(*quantize_int8(w))
    if fmt == "int4":
        return Int4Linear(*quantize_int4(w, G), G)
    if fmt == "nf4":
        return quantize_nf4(w)
    return GGMLLinear(fmt, quantize_blocks(w, fmt))


# weights per block of each format (INT4: its group size G; INT8 has no blocks, any K works)
BLOCK = {"int8": 1, "nf4": 64, "q8_0": 32, "q4_0": 32, "q4_K": 256, "q6_K": 256}
FORMATS = ["int8", "int4", "nf4", "q8_0", "q4_0", "q4_K", "q6_K"]


def _weights(rng, N, K, block, kinds):  # (N, K) float32: each block of each row gets one kind
    w = np.empty((N, K), dtype=np.float32)
    for n in range(N):
        for k0 in range(0, K, block):
            kind = kinds[rng.integers(len(kinds))]
            b = rng.standard_normal(min(block, K - k0)).astype(np.float32)
            if kind == "zero":
                b[:] = 0
            elif kind == "constant":
                b[:] = rng.choice([-0.7, 0.25, 3.0])
            elif kind == "large":                  # fp16 block scales stay finite up to 65504
                b *= 300
            elif kind == "tiny":                   # block scales near or below fp16's subnormals
                b *= 1e-6
            elif kind == "outlier":                # one weight far outside the rest of its block
                b *= 0.01
                b[rng.integers(b.size)] = rng.choice([-5.0, 5.0])
            elif kind == "positive":               # INT4 / Q4_K zero points at the edge of the range
                b = np.abs(b)
            w[n, k0:k0 + b.size] = b
    return w


def _check_against_dequantized(lin, x, block):
    """got == x @ dequantize().T up to float32 rounding of the sums the kernel forms. Offset formats
    (INT4's zero point, Q4_0's 8, Q4_K's mins) sum s*q*x and s*z*x separately, terms up to a few times
    the block's largest |w| * |x|, so the bound uses the block maximum of |W| rather than |W| itself."""
    W = lin.dequantize().astype(np.float64)                                          # (N, K)
    N, K = W.shape
    bmax = np.abs(W).reshape(N, -1, block).max(axis=2, keepdims=True)               # (N, K/block, 1)
    bound = np.broadcast_to(bmax, (N, K // block, block)).reshape(N, K)              # (N, K)
    got = lin.matmul(x)
    want = x.astype(np.float64) @ W.T                                                # (M, N)
    # float32 rounding of K-term sums (each term below ~4 * block max |w| * |x|): <= K * eps * sum
    tol = 4 * K * np.finfo(np.float32).eps * (np.abs(x).astype(np.float64) @ (4 * bound).T)
    assert got.shape == want.shape and got.dtype == np.float32
    bad = np.abs(got - want) > tol + 1e-30
    assert not bad.any(), f"max error {np.abs(got - want).max()} vs tol {tol[bad].min()}"


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FORMATS), M=st.sampled_from([1, 2, 3, 4, 5, 9, 17]), N=st.integers(1, 37),
       nblocks=st.integers(1, 11), G=st.sampled_from([32, 64, 128]), extra=st.integers(0, 31),
       kinds=st.lists(st.sampled_from(["normal", "zero", "constant", "large", "tiny", "outlier", "positive"]),
                      min_size=1, max_size=3), x_scale=st.sampled_from([1.0, 1e-3, 1e3]),
       seed=st.integers(0, 2**32 - 1))
def test_fused_kernel_equals_dequantize_then_matmul(fmt, M, N, nblocks, G, extra, kinds, x_scale, seed):
    """Every format, decode (M <= 4) and small-batch paths, K = one block up to eleven blocks (INT8: any
    K, including ones no SIMD width divides), odd N, zero/constant/extreme/outlier blocks."""
    rng = np.random.default_rng(seed)
    block = G if fmt == "int4" else BLOCK[fmt]
    K = 32 * nblocks + extra if fmt == "int8" else block * nblocks
    w = _weights(rng, N, K, 32 if fmt == "int8" else block, kinds)
    x = (rng.standard_normal((M, K)) * x_scale).astype(np.float32)
    x[:, rng.integers(K)] = 0                                                        # a zero input
    _check_against_dequantized(_make(fmt, w, G), x, 1 if fmt == "int8" else block)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("M", [1, 3])
def test_fused_kernel_decode_shapes(fmt, M):
    """Layer shapes of a real decode step (one block-aligned K of 768 or 2048, N not a multiple of 8),
    large enough that OpenMP splits the rows across threads."""
    rng = np.random.default_rng(11)
    for N, K in [(771, 768), (1023, 2048)]:
        w = _weights(rng, N, K, 256, ["normal", "normal", "outlier", "zero"])
        x = rng.standard_normal((M, K)).astype(np.float32)
        _check_against_dequantized(_make(fmt, w, 128), x, 128 if fmt == "int4" else BLOCK[fmt])


@pytest.mark.parametrize("fmt", ["int8", "int4", "q4_K", "q6_K", "q8_0", "q4_0", "nf4"])
def test_prefill_tile_path(fmt):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 512)).astype(np.float32)
    x = rng.standard_normal((33, 512)).astype(np.float32)
    lin = _make(fmt, w, 128)
    np.testing.assert_allclose(lin.matmul(x), lin.matmul_reference(x), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("K", [257, 294, 383])
def test_int8_generic_path_with_k_past_one_block_buffer(K):
    """INT8 rows whose length is no multiple of 64 and over 256 (the generic path's block buffer):
    its last block is short, so the kernel must decode only the K % 64 weights left, not a whole
    block past the end of the row."""
    rng = np.random.default_rng(K)
    w = rng.standard_normal((32, K)).astype(np.float32)
    lin = _make("int8", w, 128)
    x = rng.standard_normal((17, K)).astype(np.float32)                # M > 4: the generic path
    np.testing.assert_allclose(lin.matmul(x), lin.matmul_reference(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(lin._kernel.dequant_rows(3, 9), lin.dequantize()[3:9])


def test_int8_vnni_matches_integer_reference():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((70, 300)).astype(np.float32)
    x = rng.standard_normal((6, 300)).astype(np.float32)
    x[:, 7] *= 30                                                    # an outlier channel
    lin = quantize_llm_int8(w, x)
    assert list(lin.outliers) == [7]
    got = lin.matmul(x)
    want = lin.matmul_reference(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)     # int32 sums are exact in both
    # and the decomposition stays close to the float product
    ref = x @ w.T
    assert np.abs(got - ref).max() < 0.03 * np.abs(ref).max()


def test_bad_inputs_raise():
    lin = _make("int4", np.zeros((4, 64), np.float32), 32)
    with pytest.raises(ValueError, match="expected shape"):
        lin.matmul(np.zeros((2, 63), np.float32))
    with pytest.raises(TypeError, match="float"):
        lin.matmul(np.zeros((2, 64), np.int32))
    with pytest.raises(ValueError, match="bytes"):
        _native.matmul("int4", np.zeros((1, 64), np.float32), lin.packed[:2], lin.scale, lin.zero, 32, 4, 32, 8)
    with pytest.raises(ValueError, match="fmt"):
        _native.matmul("q5_K", np.zeros((1, 64), np.float32), lin.packed, None, None, 0, 4, 32, 0)
    with pytest.raises(TypeError, match="scale"):
        _native.Kernel("int4", 4, 64, lin.packed, lin.scale.astype(np.float64), lin.zero, 32, 32, 8)
    with pytest.raises(TypeError, match="x"):                                   # the kernel's own check
        lin._kernel.matmul(np.zeros((2, 64), np.float32)[:, ::1].T.copy().T)
    with pytest.raises(ValueError, match="rows"):
        lin._kernel.dequant_rows(0, 5)
    for fmt, K, G in [("q4_0", 48, 0), ("q4_K", 128, 0), ("nf4", 96, 0), ("int4", 64, 48)]:  # partial blocks
        with pytest.raises(ValueError, match="does not fit"):
            _native.Kernel(fmt, 4, K, lin.packed, None, None, G, 32, 8)
    # the layer converts what it can: float64 and non-contiguous x give the same answer
    x = np.random.default_rng(0).standard_normal((3, 128))[:, ::2]
    np.testing.assert_array_equal(lin.matmul(x), lin.matmul(np.ascontiguousarray(x, dtype=np.float32)))
    assert lin.matmul(np.zeros((0, 64), np.float32)).shape == (0, 4)


@settings(max_examples=20, deadline=None)
@given(M=st.integers(1, 4), N=st.integers(1, 33), G=st.sampled_from([64, 128]), kb=st.integers(1, 3),
       seed=st.integers(0, 2**32 - 1))
def test_int4_int8_activation_path_matches_its_integer_reference(M, N, G, kb, seed):
    rng = np.random.default_rng(seed)
    K = 128 * kb
    w = rng.standard_normal((N, K)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32) * 3
    lin = Int4Linear(*quantize_int4(w, G), G, act_int8=True)
    got = lin.matmul(x)
    want = lin.matmul_int8_act_reference(x)
    # integer sums are exact on both sides; only the per-group float scaling is rounded
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # activation rounding costs at most d_x/2 per input: a loose check against the exact product
    exact = lin.matmul_reference(x)
    bound = (np.abs(x).max() / 127 / 2) * np.abs(lin.dequantize()).sum(axis=1)[None, :] + 1e-4
    assert np.all(np.abs(got - exact) <= bound)


@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from(["q8_0", "q4_0", "q4_K", "q6_K"]), M=st.integers(1, 4), N=st.integers(1, 37),
       nblocks=st.integers(1, 3), kinds=st.lists(st.sampled_from(["normal", "zero", "constant", "large", "outlier"]),
                                                 min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_ggml_int8_activation_path_matches_its_integer_reference(fmt, M, N, nblocks, kinds, seed):
    rng = np.random.default_rng(seed)
    K = BLOCK[fmt] * nblocks * (8 if BLOCK[fmt] == 32 else 1)
    w = _weights(rng, N, K, BLOCK[fmt], kinds)
    x = rng.standard_normal((M, K)).astype(np.float32) * 3
    x[:, :32] = 0                                                    # an all-zero block of x: d_x = 0
    lin = GGMLLinear(fmt, quantize_blocks(w, fmt), act_int8=True)
    got = lin.matmul(x)
    want = lin.matmul_int8_act_reference(x)
    # integer block sums are exact on both sides; float32 rounding enters through the block scales
    # (d_w * d_x, one product each) and the K/32-term float sum over blocks
    W = np.abs(lin.dequantize())
    xmax = np.abs(x).reshape(M, -1, 32).max(axis=2).repeat(32, axis=1)              # (M, K): |q_x| d_x <= this
    tol = 8 * K * np.finfo(np.float32).eps * (xmax @ (4 * W).T) + 1e-30
    assert np.all(np.abs(got - want) <= tol)
    # activation rounding costs at most d_x / 2 per input against the exact product
    exact = lin.matmul_reference(x)
    assert np.all(np.abs(got - exact) <= (xmax / 254) @ W.T + tol)
