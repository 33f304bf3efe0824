"""ggml block formats: our bytes dequantize exactly as the gguf package's NumPy dequantizer does,
Q8_0/Q4_0 quantize to the same bytes as its quantizer, and (when llama-cpp-python is installed)
Q4_K/Q6_K/Q8_0/Q4_0 quantize to the same bytes as llama.cpp's own quantizer."""
import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.quant.formats import GGML_BLOCKS
from minillm.quant.ggml_quants import dequantize_blocks, nearest_int, quantize_blocks

gguf_quants = pytest.importorskip("gguf.quants")
from gguf import GGMLQuantizationType  # noqa: E402

TYPES = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0,
         "q4_K": GGMLQuantizationType.Q4_K, "q6_K": GGMLQuantizationType.Q6_K}


def _w(seed, N, K, kind):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, K)).astype(np.float32) * np.float32(rng.choice([1e-3, 0.05, 3.0]))
    if kind == "zero_blocks":
        w[:, :256] = 0
    elif kind == "constant":
        w[:, :256] = 0.25
    elif kind == "outliers":
        w[:, ::37] *= 40
    elif kind == "positive":
        w = np.abs(w)
    return w


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 4), nb=st.integers(1, 2),
       kind=st.sampled_from(["normal", "zero_blocks", "constant", "outliers", "positive"]),
       fmt=st.sampled_from(sorted(TYPES)))
def test_dequantize_matches_gguf_package(seed, N, nb, kind, fmt):
    w = _w(seed, N, 256 * nb, kind)
    blocks = quantize_blocks(w, fmt)
    raw = blocks.view(np.uint8).reshape(N, -1)
    assert raw.shape[1] == 256 * nb // GGML_BLOCKS[fmt][1] * GGML_BLOCKS[fmt][0].itemsize
    np.testing.assert_array_equal(dequantize_blocks(blocks, fmt), gguf_quants.dequantize(raw, TYPES[fmt]))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 4), nb=st.integers(1, 3),
       kind=st.sampled_from(["normal", "zero_blocks", "constant", "outliers", "positive"]),
       fmt=st.sampled_from(["q8_0", "q4_0"]))
def test_q8_0_q4_0_bytes_match_gguf_quantizer(seed, N, nb, kind, fmt):
    w = _w(seed, N, 256 * nb, kind)
    ours = quantize_blocks(w, fmt).view(np.uint8).reshape(N, -1)
    np.testing.assert_array_equal(ours, gguf_quants.quantize(w, TYPES[fmt]))


def test_nearest_int_is_round_half_even():
    f = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999998, 7.5, 1e6 + 0.5], dtype=np.float32)
    np.testing.assert_array_equal(nearest_int(f), np.rint(f).astype(np.int32))


def test_imatrix_lowers_weighted_error():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((32, 512)).astype(np.float32)
    imp = (rng.random(512) ** 4).astype(np.float32) * 10
    for fmt in ("q4_0", "q4_K", "q6_K"):
        e = lambda b: float(np.sum((dequantize_blocks(b, fmt) - w) ** 2 * imp))  # noqa: E731
        assert e(quantize_blocks(w, fmt, imatrix=imp)) < e(quantize_blocks(w, fmt))


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiple of 256"):
        quantize_blocks(np.zeros((2, 32), np.float32), "q4_K")
    with pytest.raises(ValueError, match="fmt"):
        quantize_blocks(np.zeros((2, 32), np.float32), "q7_K")
    with pytest.raises(ValueError, match="NaN"):
        quantize_blocks(np.full((1, 32), np.nan, np.float32), "q8_0")
    with pytest.raises(TypeError, match="block dtype"):
        dequantize_blocks(np.zeros((1, 2), np.uint8), "q8_0")


# ------------------------------------------------------------------ against llama.cpp itself
def _llama_quantize_row(fmt, w, imatrix=None):
    """llama.cpp's ggml_quantize_chunk (no importance matrix), via llama-cpp-python's libggml."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import glob
    import os
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    cands = sorted(glob.glob(os.path.join(libdir, "libggml-base.so*")) + glob.glob(os.path.join(libdir, "libggml.so*")))
    if not cands:
        pytest.skip("llama-cpp-python ships no libggml to call")
    lib = ctypes.CDLL(cands[0])
    fn = lib.ggml_quantize_chunk
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int64, ctypes.c_void_p]
    N, K = w.shape
    dtype, bs = GGML_BLOCKS[fmt]
    out = np.zeros(N * K // bs * dtype.itemsize, dtype=np.uint8)
    w = np.ascontiguousarray(w, dtype=np.float32)
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    fn(int(TYPES[fmt]), w.ctypes.data, out.ctypes.data, 0, N, K, None if im is None else im.ctypes.data)
    return out.reshape(N, -1)


@pytest.mark.parametrize("fmt", ["q4_K", "q6_K", "q8_0", "q4_0"])
@pytest.mark.parametrize("kind", ["normal", "zero_blocks", "outliers", "positive"])
def test_bytes_match_llama_cpp(fmt, kind):
    w = _w(7, 8, 1024, kind)
    theirs = _llama_quantize_row(fmt, w)
    np.testing.assert_array_equal(quantize_blocks(w, fmt).view(np.uint8).reshape(8, -1), theirs)


@pytest.mark.parametrize("fmt", ["q4_K", "q6_K", "q4_0"])
def test_imatrix_bytes_match_llama_cpp(fmt):
    w = _w(11, 8, 1024, "outliers")
    imatrix = (np.random.default_rng(2).random(1024) ** 3 * 5).astype(np.float32)
    theirs = _llama_quantize_row(fmt, w, imatrix)
    ours = quantize_blocks(w, fmt, imatrix=imatrix).view(np.uint8).reshape(8, -1)
    np.testing.assert_array_equal(ours, theirs)
