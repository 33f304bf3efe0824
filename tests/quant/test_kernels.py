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


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(["int8", "int4", "nf4", "q8_0", "q4_0", "q4_K", "q6_K"]),
       M=st.sampled_from([1, 2, 3, 4, 5, 9, 17]), N=st.integers(1, 40), kb=st.integers(1, 3),
       G=st.sampled_from([32, 64, 128]), seed=st.integers(0, 2**32 - 1))
def test_fused_kernel_equals_dequantize_then_matmul(fmt, M, N, kb, G, seed):
    rng = np.random.default_rng(seed)
    K = 256 * kb
    w = rng.standard_normal((N, K)).astype(np.float32) * 0.1
    x = rng.standard_normal((M, K)).astype(np.float32)
    lin = _make(fmt, w, G)
    got = lin.matmul(x)
    want = x.astype(np.float64) @ lin.dequantize().T.astype(np.float64)
    # different summation order: float32 rounding of a K-term sum of |x||w| terms
    tol = 4 * K * np.finfo(np.float32).eps * (np.abs(x) @ np.abs(lin.dequantize()).T)
    assert got.shape == (M, N) and got.dtype == np.float32
    assert np.all(np.abs(got - want) <= tol + 1e-30)


@pytest.mark.parametrize("fmt", ["int8", "int4", "q4_K", "q6_K", "q8_0", "q4_0", "nf4"])
def test_prefill_tile_path(fmt):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((300, 512)).astype(np.float32)
    x = rng.standard_normal((33, 512)).astype(np.float32)
    lin = _make(fmt, w, 128)
    np.testing.assert_allclose(lin.matmul(x), lin.matmul_reference(x), rtol=1e-4, atol=1e-3)


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
