"""Every ggml block type minillm reads: the NumPy dequantizers (quant/ggml_blocks.py) equal the gguf
package's bit for bit on random blocks, extreme scales included; the fused C kernels
(csrc/ggml_blocks.c) equal dequantize-then-matmul; GGMLLinear runs them, also inside decode_step."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer, kernels
from minillm.inference.decode import forward_cached
from minillm.inference.kv_cache import KVCache
from minillm.io.ggml_types import GGML_TYPES
from minillm.quant import _native
from minillm.quant.formats import GGML_BLOCKS
from minillm.quant.ggml_blocks import dequantize_blocks
from minillm.quant.linear import GGMLLinear

FMTS = sorted(GGML_BLOCKS)
SCALE_FIELDS = ("d", "dmin", "m")
# finite fp16 scales a file can hold, from the largest (65504) to the smallest subnormal (2^-24)
EXTREME = np.array([65504.0, -65504.0, 2.0**-24, -(2.0**-24), 2.0**-14, 0.0, -0.0, 1.0, -1.0], np.float16)
native = pytest.mark.skipif(not _native.blocks_available(), reason="C kernels not built")


def random_blocks(fmt, shape, rng, scale=0.02, extreme=False):
    """Blocks of type fmt (shape (N, nb)) with random codes and finite random scales: every bit
    pattern of the code bytes is a valid block; fp16 fields are drawn, so no NaN/Inf enters."""
    dtype, _ = GGML_BLOCKS[fmt]
    raw = rng.integers(0, 256, (*shape, dtype.itemsize), dtype=np.uint8)
    b = raw.view(dtype).reshape(shape).copy()
    if fmt == "f16":
        return (rng.standard_normal(shape) * scale * 30).astype(np.float16)
    if fmt == "bf16":
        v = (rng.standard_normal(shape) * scale * 30).astype(np.float32)
        return (v.view(np.uint32) >> 16).astype(np.uint16)
    for f in SCALE_FIELDS:
        if f in dtype.names:
            v = (rng.standard_normal(b[f].shape) * scale).astype(np.float16)
            if extreme:
                v = np.where(rng.random(v.shape) < 0.5, rng.choice(EXTREME, v.shape), v).astype(np.float16)
            b[f] = v
    return b


def test_block_sizes_equal_the_gguf_packages():
    gguf = pytest.importorskip("gguf")
    for fmt, (dtype, bs) in GGML_BLOCKS.items():
        q = gguf.GGMLQuantizationType(GGML_TYPES[fmt].id)
        assert q.name.lower() == fmt.lower()
        assert gguf.GGML_QUANT_SIZES[q] == (bs, dtype.itemsize)


@native
def test_c_block_sizes_equal_formats_py():
    from minillm._native import ffi, lib
    for fmt, (dtype, bs) in GGML_BLOCKS.items():
        weights, nbytes = ffi.new("int64_t*"), ffi.new("int64_t*")
        assert lib.ggml_block_size(GGML_TYPES[fmt].id, weights, nbytes) == 0
        assert (weights[0], nbytes[0]) == (bs, dtype.itemsize)
    assert lib.ggml_block_size(GGML_TYPES["f32"].id, weights, nbytes) == -1   # not a block type


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FMTS), N=st.integers(1, 3), nb=st.integers(1, 3), extreme=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_dequantize_equals_the_gguf_packages(fmt, N, nb, extreme, seed):
    gq = pytest.importorskip("gguf.quants")
    gguf = pytest.importorskip("gguf")
    bs = GGML_BLOCKS[fmt][1]
    b = random_blocks(fmt, (N, nb * (64 if bs == 1 else 1)), np.random.default_rng(seed), extreme=extreme)
    ours = dequantize_blocks(b, fmt)
    want = gq.dequantize(b.view(np.uint8).reshape(N, -1), gguf.GGMLQuantizationType(GGML_TYPES[fmt].id))
    assert ours.dtype == np.float32 and ours.shape == want.shape
    assert np.isfinite(ours).all()                     # finite scales never make NaN or Inf
    np.testing.assert_array_equal(ours, want)


def test_dequantize_rejects_bad_input():
    b = random_blocks("q4_1", (2, 1), np.random.default_rng(0))
    with pytest.raises(ValueError, match="fmt"):
        dequantize_blocks(b, "q7_0")
    with pytest.raises(TypeError, match="q5_1"):
        dequantize_blocks(b, "q5_1")


@native
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(FMTS), N=st.integers(1, 40), nb=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_native_dequant_rows_equal_the_reference(fmt, N, nb, seed):
    """Bit for bit: every product a q is exact in float32 and each weight is rounded once, as in NumPy."""
    b = random_blocks(fmt, (N, nb * (48 if GGML_BLOCKS[fmt][1] == 1 else 9)), np.random.default_rng(seed),
                      extreme=True)
    k = _native.GGMLBlockKernel(fmt, b)
    n0 = N // 3
    np.testing.assert_array_equal(k.dequant_rows(n0, N), dequantize_blocks(b, fmt)[n0:])


@native
@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FMTS), M=st.integers(1, 12), N=st.integers(1, 40), nb=st.integers(1, 3),
       odd=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_fused_matmul_equals_dequantize_then_matmul(fmt, M, N, nb, odd, seed):
    """M = 1 (GEMV), odd and small M (GEMM tiles of 8), K one to three blocks (or, for F16/BF16,
    any length). The kernel sums a_i (q . x) + c_i sum(x) per run of 16 in float32, in another order
    than float64's x @ W^T: at most K float32 roundings of terms bounded by max|x| max|W|."""
    rng = np.random.default_rng(seed)
    bs = GGML_BLOCKS[fmt][1]
    nblocks = nb * (256 // bs) if bs > 1 else nb * 64 + odd   # K = nb super-blocks' worth
    b = random_blocks(fmt, (N, nblocks), rng)
    W = dequantize_blocks(b, fmt)                                                 # (N, K)
    x = rng.standard_normal((M, W.shape[1])).astype(np.float32)                   # (M, K)
    want = x.astype(np.float64) @ W.T.astype(np.float64)
    atol = 1e-6 * W.shape[1] * np.abs(x).max() * np.abs(W).max()   # K roundings of 2^-24-relative terms
    np.testing.assert_allclose(_native.GGMLBlockKernel(fmt, b).matmul(x), want, rtol=0, atol=atol)
    np.testing.assert_allclose(GGMLLinear(fmt, b).matmul(x), want, rtol=0, atol=atol)   # (quant.c for 4 types)


@native
def test_prefill_sized_matmul_and_the_kernel_reject_bad_input():
    rng = np.random.default_rng(0)
    b = random_blocks("q4_1", (300, 3), rng)
    lin = GGMLLinear("q4_1", b)
    x = rng.standard_normal((40, 96)).astype(np.float32)        # M > 8: decoded tiles + dense GEMM
    np.testing.assert_allclose(lin.matmul(x), lin.matmul_reference(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"x: expected shape \(M, 96\)"):
        lin.matmul(x[:, :64])
    with pytest.raises(TypeError, match="blocks"):
        _native.GGMLBlockKernel("q4_1", b.view(np.uint8))
    with pytest.raises(ValueError, match="fmt"):
        _native.GGMLBlockKernel("q9_9", b)
    with pytest.raises(ValueError, match="rows"):
        lin.gemv_kernel().dequant_rows(5, 400)


def _block_model(fmts, seed=0):
    """A small Llama whose linears (and head) are ggml blocks of the given types, in turn."""
    cfg = ModelConfig(arch="llama", vocab_size=60, n_layer=2, n_head=4, n_kv_head=2, d_model=256, ffn_dim=512,
                      max_seq_len=64)
    model = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    names = [n for n, w in model.params.items() if w.ndim == 2 and n != "model.embed_tokens.weight"]
    quantized = {}
    for i, name in enumerate(names):
        fmt = fmts[i % len(fmts)]
        N, K = model.params[name].shape
        quantized[name] = GGMLLinear(fmt, random_blocks(fmt, (N, K // GGML_BLOCKS[fmt][1]), rng, scale=0.002))
    return Transformer(cfg, params=model.params, quantized=quantized)


@native
@pytest.mark.skipif(kernels.decode_step is None, reason="C kernels not built")
@pytest.mark.parametrize("fmts, act_int8", [(["q4_1", "q5_0", "q5_1", "bf16"], False),
                                            (["q2_K", "q3_K", "q5_K", "f16"], False),
                                            (["q8_0", "q4_0", "q4_K", "q6_K"], False),
                                            (["q4_1", "q8_0", "q4_0", "q5_0", "q5_1"], True),
                                            (["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"], True)])
def test_decode_step_runs_every_block_type_like_the_python_path(fmts, act_int8):
    model = _block_model(fmts)
    for q in model.quantized.values():
        q.act_int8 = act_int8
    prompt, steps = np.array([[3, 1, 4, 1, 5]]), [9, 2, 6]
    logits, calls = [], []
    step = kernels.decode_step

    def counted(*args, **kwargs):  # proves the one-call step ran
        calls.append(1)
        return step(*args, **kwargs)
    for fn in (counted, None):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "decode_step", fn)
            kv = KVCache.allocate(model.config, 1, 16)
            forward_cached(model, prompt, kv)
            logits.append(np.array([forward_cached(model, np.array([[t]]), kv)[0, -1] for t in steps]))
    assert len(calls) == len(steps)
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-5)


@native
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(list(_native.INT8_ROWS)), M=st.integers(1, 32), N=st.integers(1, 40),
       nb=st.integers(1, 5), extreme=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_int8_activation_rows_equal_their_integer_reference(fmt, M, N, nb, extreme, seed):
    """act_int8: x rounded to int8 per 32 inputs, exact integer block sums (csrc/qgemm.c); equal to
    matmul_int8_act_reference (float64 over the same codes) up to float32 rounding, for one row,
    odd row counts, tiles of 8 and their remainders, N not a multiple of anything, extreme scales."""
    rng = np.random.default_rng(seed)
    nb = nb * (8 if GGML_BLOCKS[fmt][1] == 32 else 1) + (rng.integers(0, 3) if GGML_BLOCKS[fmt][1] == 32 else 0)
    b = random_blocks(fmt, (N, nb), rng, extreme=extreme)
    lin = GGMLLinear(fmt, b, act_int8=True)
    x = rng.standard_normal((M, lin.shape[1])).astype(np.float32)
    want = lin.matmul_int8_act_reference(x)
    atol = 1e-6 * x.shape[1] * np.abs(x).max() * np.abs(lin.dequantize().astype(np.float64)).max()
    np.testing.assert_allclose(_native.GGMLBlockKernel(fmt, b, act_int8=True).matmul(x), want, rtol=0, atol=atol)
    np.testing.assert_allclose(lin.matmul(x), want, rtol=0, atol=atol)      # M <= INT8_MAX_M: the same kernel
    assert lin.gemv_kernel() is not None                     # decode_step runs these rows too
