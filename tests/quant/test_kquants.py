"""The quantizers of every ggml type minillm writes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
Q5_K, Q6_K): round trips through the gguf package's dequantizer, and the same bytes as llama.cpp's
own quantizer (ggml_quantize_chunk) with and without an importance matrix, on random blocks and on
SmolLM2's real tensors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggml_ref import ggml_quantize_or_skip, smollm2_path
from minillm.io.gguf import read_gguf
from minillm.loaders.gguf_quantize import to_float32
from minillm.quant.formats import GGML_BLOCKS
from minillm.quant.ggml_quants import QUANTIZERS, dequantize_blocks, quantize_blocks

TYPES = sorted(QUANTIZERS)
NEW = ["q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q5_K"]
# relative RMS error of a round trip on Gaussian weights, far above what each type reaches
RMS_BOUND = {"q2_K": 0.45, "q3_K": 0.25, "q4_0": 0.15, "q4_1": 0.12, "q4_K": 0.12, "q5_0": 0.07, "q5_1": 0.06,
             "q5_K": 0.06, "q6_K": 0.03, "q8_0": 0.01}


def _w(seed, N, K, kind):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, K)).astype(np.float32) * np.float32(rng.choice([1e-3, 0.05, 3.0]))
    if kind == "zero_blocks":
        w[:, :256] = 0
        w[:, 272:288] = 0
    elif kind == "constant":
        w[:, :256] = 0.25
    elif kind == "outliers":
        w[:, ::37] *= 40
    elif kind == "positive":
        w = np.abs(w)
    elif kind == "negative":
        w = -np.abs(w)
    return w


KINDS = ["normal", "zero_blocks", "constant", "outliers", "positive", "negative"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 3), nb=st.integers(1, 2), fmt=st.sampled_from(NEW),
       weighted=st.booleans())
def test_round_trip_matches_gguf_dequantizer(seed, N, nb, fmt, weighted):
    gguf_quants = pytest.importorskip("gguf.quants", reason="the gguf package is the dequantizer reference")
    from gguf import GGMLQuantizationType
    w = _w(seed, N, 256 * nb, "normal")
    imp = np.random.default_rng(seed).random(256 * nb).astype(np.float32) if weighted else None
    blocks = quantize_blocks(w, fmt, imatrix=imp)
    assert blocks.dtype == GGML_BLOCKS[fmt][0] and blocks.shape == (N, 256 * nb // GGML_BLOCKS[fmt][1])
    raw = blocks.view(np.uint8).reshape(N, -1)
    deq = dequantize_blocks(blocks, fmt)
    np.testing.assert_array_equal(deq, gguf_quants.dequantize(raw, GGMLQuantizationType[fmt.upper()]))
    rms = np.sqrt(np.mean((deq - w) ** 2) / np.mean(w ** 2))
    assert rms < RMS_BOUND[fmt], (fmt, rms)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 3), nb=st.integers(1, 3), fmt=st.sampled_from(TYPES),
       kind=st.sampled_from(KINDS), weighted=st.booleans(), reference=st.booleans())
def test_bytes_match_llama_cpp(seed, N, nb, fmt, kind, weighted, reference):
    """Both paths: the NumPy reference and its Numba fitting routines (ggml_fit.py)."""
    w = _w(seed, N, 256 * nb, kind)
    imp = (np.random.default_rng(seed + 1).random(256 * nb) ** 3 * 5).astype(np.float32) if weighted else None
    theirs = ggml_quantize_or_skip(fmt, w, imp)
    ours = quantize_blocks(w, fmt, imatrix=imp, reference=reference)
    np.testing.assert_array_equal(ours.view(np.uint8).reshape(N, -1), theirs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 4), nb=st.integers(1, 3), fmt=st.sampled_from(TYPES),
       kind=st.sampled_from(KINDS), weighted=st.booleans())
def test_numba_fitting_equals_numpy_reference(seed, N, nb, fmt, kind, weighted):
    """ggml_fit's Numba routines return the NumPy references' bits (no llama.cpp needed)."""
    w = _w(seed, N, 256 * nb, kind)
    imp = (np.random.default_rng(seed + 2).random(256 * nb) ** 2 * 3).astype(np.float32) if weighted else None
    a = quantize_blocks(w, fmt, imatrix=imp).view(np.uint8)
    np.testing.assert_array_equal(a, quantize_blocks(w, fmt, imatrix=imp, reference=True).view(np.uint8))


def test_imatrix_lowers_weighted_error():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 512)).astype(np.float32)
    imp = (rng.random(512) ** 4).astype(np.float32) * 10
    for fmt in NEW:
        e = lambda b: float(np.sum((dequantize_blocks(b, fmt) - w) ** 2 * imp))  # noqa: E731
        assert e(quantize_blocks(w, fmt, imatrix=imp)) < e(quantize_blocks(w, fmt)), fmt


@pytest.mark.parametrize("name", ["blk.0.ffn_down.weight", "blk.7.attn_v.weight", "blk.29.ffn_gate.weight"])
def test_smollm2_tensors_match_llama_cpp(name):
    _, tensors = read_gguf(smollm2_path())
    t, shape, raw = tensors[name]
    w = np.ascontiguousarray(to_float32(t, shape, raw)[:64])                        # 64 rows keep it quick
    rng = np.random.default_rng(0)
    imp = (rng.random(shape[-1]) * np.abs(w).mean(axis=0) * 10).astype(np.float32)
    for fmt in TYPES:
        if shape[-1] % GGML_BLOCKS[fmt][1]:
            continue
        for q in (None, imp):
            ours = quantize_blocks(w, fmt, imatrix=q).view(np.uint8).reshape(len(w), -1)
            np.testing.assert_array_equal(ours, ggml_quantize_or_skip(fmt, w, q), err_msg=f"{name} {fmt}")


@pytest.mark.parametrize("dtype", TYPES)
def test_save_gguf_writes_every_type(tmp_path, dtype):
    from minillm.loaders import load_gguf, save_gguf
    from minillm.model import ModelConfig, Transformer
    cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=1, n_head=4, n_kv_head=2, d_model=256, ffn_dim=512,
                      max_seq_len=32)
    model = Transformer(cfg, seed=2)
    save_gguf(model, tmp_path / "m.gguf", dtype=dtype)
    _, tensors = read_gguf(tmp_path / "m.gguf")
    t, shape, raw = tensors["blk.0.ffn_down.weight"]
    assert t == dtype
    w = model.params["model.layers.0.mlp.down_proj.weight"]
    np.testing.assert_array_equal(raw, quantize_blocks(w, dtype).view(np.uint8).reshape(-1))
    back, _ = load_gguf(tmp_path / "m.gguf", dequantize=True)
    np.testing.assert_array_equal(back.params["model.layers.0.mlp.down_proj.weight"], dequantize_blocks(
        quantize_blocks(w, dtype), dtype))
