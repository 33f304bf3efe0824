"""ggml block weights x int8 activations (csrc/qgemm.c, GGMLLinear(act_int8=True)): the NumPy spec
(matmul_int8_act_reference over ggml_blocks.integer_codes) against dequantize-then-matmul, and the C
kernels' x quantization against quantize_x_int8. The kernels themselves against the spec:
tests/quant/test_ggml_blocks.py (hypothesis over shapes) and tests/kernels/test_isa.py (variants)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.quant import _native
from minillm.quant.formats import GGML_BLOCKS
from minillm.quant.ggml_blocks import INT_CODE_TYPES, dequantize_blocks, integer_codes
from minillm.quant.ggml_quants import quantize_blocks
from minillm.quant.linear import GGMLLinear, quantize_x_int8

from .test_ggml_blocks import random_blocks

native = pytest.mark.skipif(not _native.blocks_available(), reason="C kernels not built")


@pytest.mark.parametrize("fmt", INT_CODE_TYPES)
@pytest.mark.parametrize("extreme", [False, True])
def test_integer_codes_rebuild_the_dequantized_weights(fmt, extreme):
    """w = s u + c per 16 weights: in float64 equal to ggml's own dequantization (float32 products)
    up to that product's rounding."""
    b = random_blocks(fmt, (5, 3), np.random.default_rng(1), extreme=extreme)
    u, s, c = integer_codes(b, fmt)
    assert u.dtype == np.int16 and np.all(u >= (-128 if fmt == "q8_0" else 0)) and np.all(u < 256)
    rebuilt = np.repeat(s, 16, axis=1).astype(np.float64) * u + np.repeat(c, 16, axis=1)
    want = dequantize_blocks(b, fmt).astype(np.float64)
    np.testing.assert_allclose(rebuilt, want, rtol=2**-22, atol=0)


def test_integer_codes_reject_float_types():
    with pytest.raises(ValueError, match="fmt: expected one of"):
        integer_codes(np.zeros((1, 1), np.float16), "f16")


@settings(max_examples=30, deadline=None)
@given(fmt=st.sampled_from(INT_CODE_TYPES), M=st.integers(1, 5), N=st.integers(1, 9), seed=st.integers(0, 2**32 - 1))
def test_reference_is_the_exact_product_up_to_the_activation_rounding(fmt, M, N, seed):
    """|x . w - int8 path| <= sum over blocks of d_x / 2 * sum |w| (each input moves by <= d_x / 2
    when rounded), plus float32 rounding."""
    rng = np.random.default_rng(seed)
    K = 512
    lin = GGMLLinear(fmt, quantize_blocks(rng.standard_normal((N, K)).astype(np.float32), fmt))
    x = (rng.standard_normal((M, K)) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    W = lin.dequantize().astype(np.float64)
    exact = x.astype(np.float64) @ W.T
    got = lin.matmul_int8_act_reference(x)
    _, d = quantize_x_int8(x, 32)                                                   # (M, K/32)
    bound = 0.5 * np.einsum("mb,nb->mn", d.astype(np.float64), np.abs(W).reshape(N, K // 32, 32).sum(axis=2))
    assert np.all(np.abs(got - exact) <= bound * (1 + 1e-5) + 1e-5 * np.abs(exact).max() + 1e-30)


@native
@settings(max_examples=40, deadline=None)
@given(M=st.integers(1, 6), nb=st.integers(1, 9), scale=st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 1e30]),
       seed=st.integers(0, 2**32 - 1))
def test_native_x_quantization_equals_quantize_x_int8(M, nb, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((M, 32 * nb)) * scale).astype(np.float32)
    x[0, :32] = 0.0                                                                 # an all-zero block: d = 0
    q, d, s = _native.quantize_x(x)
    qr, dr = quantize_x_int8(x, 32)
    np.testing.assert_array_equal(q, qr.reshape(M, -1).astype(np.int8))
    np.testing.assert_array_equal(d, dr)
    halves = qr.reshape(M, -1, 16).sum(axis=2) * np.repeat(dr, 2, axis=1)         # d_x * sum of 16 codes
    np.testing.assert_array_equal(s, halves.astype(np.float32))


@native
@pytest.mark.parametrize("fmt", ["q8_0", "q4_0", "q4_1", "q4_K", "q6_K"])
def test_one_row_of_x_at_every_block_count(fmt):
    """M = 1 has its own rows for these formats (csrc/qgemm.c row_b32, row_q4k, row_q6k on AVX-512:
    scales of 16 blocks at a time, pairs of blocks, an odd last block): every block count from 1 to
    two groups of 16 and a remainder (K-quants: 1-5 super-blocks) against the integer reference, with
    NaN in x reaching exactly the outputs it feeds."""
    rng = np.random.default_rng(7)
    per = GGML_BLOCKS[fmt][1]
    for nb in range(1, 36) if per == 32 else range(1, 6):
        b = random_blocks(fmt, (7, nb), rng)
        kernel = _native.GGMLBlockKernel(fmt, b, act_int8=True)
        lin = GGMLLinear(fmt, b, act_int8=True)
        x = rng.standard_normal((1, nb * per)).astype(np.float32)
        want = lin.matmul_int8_act_reference(x)
        atol = 1e-6 * x.shape[1] * np.abs(x).max() * np.abs(lin.dequantize().astype(np.float64)).max()
        np.testing.assert_allclose(kernel.matmul(x), want, rtol=0, atol=atol, err_msg=f"{nb} blocks")
        x[0, -1] = np.nan                                   # the last block: every output reads it
        assert np.isnan(kernel.matmul(x)).all()


@native
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_native_x_quantization_of_non_finite_blocks(bad):
    """A block holding NaN or inf: its scale is quantize_x_int8's (NaN or inf), its codes 0 and its
    code sums NaN; the other blocks of the row, a near-overflow one (3e38) among them, as the
    reference. (The AVX-512 variant takes the largest |x| with a vector max, which drops NaN, so it
    looks for NaN apart.)"""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 160)).astype(np.float32)
    x[0, 37], x[1, 100], x[1, 5] = bad, 3e38, bad
    q, d, s = _native.quantize_x(x)
    with np.errstate(invalid="ignore"):
        qr, dr = quantize_x_int8(x, 32)
    broken = ~np.isfinite(x.reshape(2, 5, 32)).all(axis=2)                          # (M, K/32)
    np.testing.assert_array_equal(d, dr)                                            # NaN and inf where due
    assert broken.sum() == 2 and np.all(q.reshape(2, 5, 32)[broken] == 0)
    assert np.all(np.isnan(s.reshape(2, 5, 2)[broken]))
    np.testing.assert_array_equal(q.reshape(2, 5, 32)[~broken], qr[~broken].astype(np.int8))


@native
def test_native_x_quantization_rejects_bad_k():
    with pytest.raises(ValueError, match="x: expected K a multiple of 32, got 40"):
        _native.quantize_x(np.zeros((1, 40), np.float32))


@native
@pytest.mark.parametrize("fmt", ["q4_1", "q4_K", "q8_0"])
def test_the_switch_between_int8_and_float_activations(fmt):
    """act_int8: up to INT8_MAX_M rows run the int8 kernel (its reference), more rows the float path;
    act_int8=False is the float path at every M; the decode step's kernel follows the flag."""
    from minillm.quant.linear import INT8_MAX_M
    rng = np.random.default_rng(0)
    b = quantize_blocks(rng.standard_normal((40, 256)).astype(np.float32), fmt)
    on, off = GGMLLinear(fmt, b, act_int8=True), GGMLLinear(fmt, b, act_int8=False)
    for M in (1, INT8_MAX_M, INT8_MAX_M + 1):
        x = rng.standard_normal((M, 256)).astype(np.float32)
        exact = off.matmul_reference(x)
        np.testing.assert_allclose(off.matmul(x), exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
        want = on.matmul_int8_act_reference(x) if M <= INT8_MAX_M else exact
        np.testing.assert_allclose(on.matmul(x), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert on.gemv_kernel() is not off.gemv_kernel()
    assert on.gemv_kernel().decode_weight.fmt != off.gemv_kernel().decode_weight.fmt


@native
def test_every_int8_type_is_a_qgemm_type():
    assert set(_native.INT8_ROWS) == set(INT_CODE_TYPES)
    for fmt in INT_CODE_TYPES:
        assert _native.lib.qgemm_supported(_native.GGML_TYPES[fmt].id) == 1
    assert _native.lib.qgemm_supported(_native.GGML_TYPES["f16"].id) == 0
    assert GGML_BLOCKS["q4_K"][1] == 256


def test_load_gguf_rejects_a_non_bool_act_int8(tmp_path):
    from minillm.loaders import load_gguf
    with pytest.raises(TypeError, match="act_int8: expected a bool, got str 'yes'"):
        load_gguf(tmp_path / "none.gguf", act_int8="yes")


def test_smollm2_int8_logits_stay_close_to_the_exact_path():
    """The shipped SmolLM2 Q4_1 file: logits of a chat prompt through int8 activations (the default)
    against float32 activations, the same weights, 32 positions: mean |difference| < 0.5 and max < 3
    on logits spanning ~38 per position (measured: mean 0.25, max 1.86; x rounded per 32 inputs in
    every matmul of 30 layers), and the same greedy next token at >= 90% of the positions (measured
    100%)."""
    import minillm
    from smollm2_ref import smollm2_path
    path = smollm2_path()
    fast, tok = minillm.load(path)
    exact, _ = minillm.load(path, act_int8=False)
    ids = tok.encode_chat([{"role": "user", "content": "What is the capital of France?"}])[:32]   # <= INT8_MAX_M
    a, b = fast.forward(np.array([ids]))[0], exact.forward(np.array([ids]))[0]
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() < 3.0
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.9


def test_exact_flag_keeps_float_activations(tmp_path):
    """`--exact` (generate, chat, serve, eval) loads a quantized GGUF with act_int8=False; without it
    the layers quantize x (the default)."""
    import argparse
    from minillm import ModelConfig, Transformer
    from minillm.cli.generate import add_sampling_args, load_model_arg
    from minillm.loaders import save_gguf
    from minillm.tokenizer import ByteTokenizer
    cfg = ModelConfig.preset("llama-tiny", vocab_size=300, d_model=64, n_head=4, n_kv_head=2, ffn_dim=128)
    save_gguf(Transformer(cfg, seed=0), tmp_path / "m.gguf", dtype="q8_0", tokenizer=ByteTokenizer())
    p = argparse.ArgumentParser()
    add_sampling_args(p, 8)
    for flags, want in (([], True), (["--exact"], False)):
        model, _ = load_model_arg(p.parse_args(["--model", str(tmp_path / "m.gguf"), *flags]))
        assert model.quantized and {q.act_int8 for q in model.quantized.values()} == {want}


@native
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(list(_native.INT8_ROWS)), M=st.integers(2, 20), N=st.integers(1, 12),
       nb=st.integers(1, 4), odd=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_a_rows_result_does_not_depend_on_the_rows_beside_it(fmt, M, N, nb, odd, seed):
    """Batch invariance: row m of x times W is the same float, to the bit, alone (M = 1: the
    single-row kernel) or among M rows (tiles of 8 and their remainders), so a token's logits do
    not depend on the batch the serving engine or a speculative verification put it in."""
    rng = np.random.default_rng(seed)
    nb = nb * (4 if GGML_BLOCKS[fmt][1] == 32 else 1) + (int(odd) if GGML_BLOCKS[fmt][1] == 32 else 0)
    k = _native.GGMLBlockKernel(fmt, random_blocks(fmt, (N, nb), rng), act_int8=True)
    x = rng.standard_normal((M, k.K)).astype(np.float32)
    together = k.matmul(x)
    for m in range(M):
        assert np.array_equal(k.matmul(x[m:m + 1])[0], together[m]), f"row {m} of {M}"


@native
@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(["q8_0", "q4_0", "q4_1", "q4_K", "q6_K"]), N=st.integers(1, 41),
       nb=st.integers(1, 3), cut=st.data(), seed=st.integers(0, 2**32 - 1))
def test_one_x_row_result_does_not_depend_on_the_weight_rows_beside_it(fmt, N, nb, cut, seed):
    """At M = 1 the rows of W run as 4 streams side by side (csrc/qgemm.c rows_streams), grouped by
    their count: any run of rows a..b gives, bit for bit, the outputs a..b of the whole W -- the
    rows in a group, a group's leftovers and a W of 1-3 rows alike."""
    rng = np.random.default_rng(seed)
    per = GGML_BLOCKS[fmt][1]
    b = random_blocks(fmt, (N, nb if per == 256 else 8 * nb + 1), rng)
    x = rng.standard_normal((1, b.shape[1] * per)).astype(np.float32)
    whole = _native.GGMLBlockKernel(fmt, b, act_int8=True).matmul(x)
    lo = cut.draw(st.integers(0, N - 1))
    hi = cut.draw(st.integers(lo + 1, N))
    part = _native.GGMLBlockKernel(fmt, np.ascontiguousarray(b[lo:hi]), act_int8=True).matmul(x)
    np.testing.assert_array_equal(part, whole[:, lo:hi])
    np.testing.assert_allclose(whole, GGMLLinear(fmt, b, act_int8=True).matmul_int8_act_reference(x),
                               rtol=0, atol=1e-5 * np.abs(x).sum() * np.abs(GGMLLinear(fmt, b).dequantize()).max())
