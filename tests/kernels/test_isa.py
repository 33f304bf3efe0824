"""One build, several instruction sets (csrc/isa.h): every kernel variant this CPU can run gives the
results of the variant chosen by default, on the same inputs.

The variant is fixed when the extension loads, so each forced variant (MINILLM_ISA=avx2, generic)
runs this file as a script in a child process, which writes its results to an .npz; the test
compares them with the default variant's results in this process. Tolerances: summation order
(16 vs 8 lanes, FMA contraction) only; the integer (VNNI vs maddubs) product is exact. The row
tiles of the avx512 and avx2 variants run the same float operations in the same order: equal to the bit.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

from minillm import kernels
from minillm.kernels import native

pytestmark = pytest.mark.skipif(native.lib is None, reason="native kernels not built")

ORDER = ("avx512", "avx2", "generic")
TILED = ("q8_0", "q4_0", "q4_1", "q4_K", "q6_K")   # the formats with row tiles (csrc/qtiles.c)


def compute():
    """{name: output} of the native kernels on fixed inputs: both matmul paths, attention forward,
    backward and decode, norms, activations, cross-entropy, AdamW, rope, the int8 product."""
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s, dtype=np.float32)  # noqa: E731
    res = {}
    for M, K, N in ((3, 300, 77), (130, 700, 200)):         # small-M tiles; blocked, 2 K blocks
        x, w = r(M, K), r(N, K)
        res[f"matmul{M}"] = np.zeros((M, N), np.float32)
        native.matmul(res[f"matmul{M}"], x, w)
    B, H, T, D = 2, 4, 40, 64
    q, k, v, dout = r(B, H, T, D), r(B, H, T, D), r(B, H, T, D), r(B, H, T, D)
    out, lse = np.zeros_like(q), np.zeros((B, H, T), np.float32)
    native.attention_forward(out, lse, q, k, v, 0.125)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    native.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, 0.125)
    res.update(out=out, lse=lse, dq=dq, dk=dk, dv=dv)
    dec = np.zeros((B, H, D), np.float32)
    native.attention_decode(dec, r(B, H, D), k, v, np.array([T, 7], np.int32), 0.125)
    res["decode"] = dec
    N, C = 37, 200
    x, w, b, dy = r(N, C), r(C), r(C), r(N, C)
    y, mean, rstd = np.zeros((N, C), np.float32), np.zeros(N, np.float32), np.zeros(N, np.float32)
    native.layernorm_forward(y, mean, rstd, x, w, b, 1e-5)
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
    native.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd)
    res.update(ln=y, ln_dx=dx, ln_dw=dw, ln_db=db)
    y2, rstd2 = np.zeros_like(x), np.zeros(N, np.float32)
    native.rmsnorm_forward(y2, rstd2, x, w, 1e-5)
    dx2, dw2 = np.zeros_like(x), np.zeros_like(w)
    native.rmsnorm_backward(dx2, dw2, dy, x, w, rstd2)
    res.update(rms=y2, rms_dx=dx2, rms_dw=dw2)
    a, g = r(1001), r(1001)
    for name, args in (("gelu", (a,)), ("gelu_bwd", (g, a)), ("swiglu", (a, g))):
        res[name] = np.zeros_like(a)
        getattr(native, {"gelu": "gelu_forward", "gelu_bwd": "gelu_backward", "swiglu": "swiglu_forward"}[name])(
            res[name], *args)
    logits, targets = r(33, 517), rng.integers(0, 517, 33).astype(np.int32)
    loss, dlogits = np.zeros(33, np.float32), np.zeros_like(logits)
    native.cross_entropy(loss, dlogits, logits, targets, 1e-4, 1.0 / 33)
    res.update(ce=loss, ce_grad=dlogits)
    p, m, s = r(999), np.zeros(999, np.float32), np.zeros(999, np.float32)
    for step in (1, 2):
        native.adamw_step(p, r(999), m, s, 1e-3, 0.9, 0.95, 1e-8, 0.1, step, 0.75)
    res["adamw"] = p
    cos, sin = r(T, D // 2), r(T, D // 2)
    res["rope"] = np.zeros_like(q)
    native.rope(res["rope"], q, cos, sin)
    if hasattr(native.lib, "quant_matmul_int8_vnni"):
        from minillm.quant import _native as qn   # above kernels in the layering: tests only
        codes = rng.integers(-127, 128, (40, 256)).astype(np.int8)
        res["int8"] = qn.matmul_int8_vnni(r(5, 256), codes, np.abs(r(40)) + 0.1)
    if hasattr(native.lib, "qgemm"):   # ggml blocks x int8 activations (csrc/qgemm.c), one row and a tile of 8 + 3
        from minillm.quant import _native as qn
        xq = r(2, 256) * np.float32(1e3)          # x's int8 quantization, non-finite and near-overflow blocks too
        xq[0, 40], xq[0, 70], xq[1, 3], xq[1, 200] = np.nan, np.inf, -np.inf, 3e38
        res["quantize_x_q"], res["quantize_x_d"], res["quantize_x_s"] = qn.quantize_x(xq)
        from minillm.quant.formats import GGML_BLOCKS
        for fmt in qn.INT8_ROWS:
            dtype, bs = GGML_BLOCKS[fmt]
            for K in (512, 608) if bs == 32 else (512,):   # 608: rows of 19 blocks, a short last group of 8
                raw = rng.integers(0, 256, (37, K // bs, dtype.itemsize), dtype=np.uint8)
                blocks = raw.view(dtype).reshape(37, K // bs).copy()
                for f in ("d", "dmin", "m"):
                    if f in dtype.names:
                        blocks[f] = (rng.standard_normal(blocks[f].shape) * 0.01).astype(np.float16)
                kernel = qn.GGMLBlockKernel(fmt, blocks, act_int8=True)
                x1, x11 = r(1, K), r(11, K)
                res[f"qgemm_{fmt}_{K}_1"], res[f"qgemm_{fmt}_{K}_11"] = kernel.matmul(x1), kernel.matmul(x11)
                kernel.tiled = False              # the block kernels, where the row tiles (qtiles.c) ran above
                res[f"qgemm_{fmt}_{K}_1_blocks"] = kernel.matmul(x1)
                res[f"qgemm_{fmt}_{K}_11_blocks"] = kernel.matmul(x11)
    if hasattr(native.lib, "paged_step"):   # a decode step storing to and reading a float16 cache
        res["kv_f16_rounding"] = float16_stores_as_numpy()
        from minillm import ModelConfig, Transformer
        from minillm.inference.decode import step_tables
        model = Transformer(ModelConfig(arch="llama", n_layer=1, n_head=4, n_kv_head=2, d_model=64, ffn_dim=96,
                                        vocab_size=50, max_seq_len=64), seed=0)
        layers, head = step_tables(model)
        kc, vc = (r(1, 1, 2, 48, 16).astype(np.float16) for _ in range(2))
        cos, sin = model.rope_tables(np.array([40]))
        res["kv_f16"] = native.decode_step(r(64), layers, kc, vc, 40, 4, 1e-5, False,
                                           np.ascontiguousarray(cos[0]), np.ascontiguousarray(sin[0]), head)
    return res


# float32 values at the edges of float16 rounding: ties to even at several exponents, the largest
# half and the first value that rounds to inf, subnormal halves and their ties, infinities, NaN
EDGES = np.array([1.0, 1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-11 + 2**-30, 2048 + 1, 2048 + 3, -(1 + 2**-11),
                  65504, 65519.99, 65520, -65520, 1e9, np.inf, -np.inf, np.nan, 2**-14, 2**-14 - 2**-25,
                  2**-24, 2**-25, 2**-25 + 2**-40, 3 * 2**-25, 5 * 2**-25, -3 * 2**-25, 1e-10, 2**-15 + 2**-25,
                  0.1, -0.3, 3.14159, 1234.5678, -7.75e-5, 6.0e-8, 5.9e-8], dtype=np.float32)


def float16_stores_as_numpy():
    """1 per EDGES value that the C step stores in a float16 cache as NumPy's astype(float16) does,
    bit for bit: a GPT-2 layer whose k and v weights are zero writes its biases as the key and
    value, so the cache holds float_to_half (or F16C's vcvtps2ph) of the chosen floats."""
    from minillm import ModelConfig, Transformer
    from minillm.inference.decode import step_tables
    model = Transformer(ModelConfig(arch="gpt2", n_layer=1, n_head=2, d_model=32, vocab_size=20, max_seq_len=8), 0)
    w, b = model.params["transformer.h.0.attn.c_attn.weight"], model.params["transformer.h.0.attn.c_attn.bias"]
    w[32:] = 0.0
    b[32:] = np.resize(EDGES, 64)
    layers, _ = step_tables(model)
    kc, vc = np.zeros((2, 1, 1, 2, 4, 16), np.float16)
    native.decode_step(np.ones(32, np.float32), layers, kc, vc, 0, 2, 1e-5, True)
    got = np.concatenate([kc[0, 0, :, 0].ravel(), vc[0, 0, :, 0].ravel()])
    with np.errstate(over="ignore"):                       # 65520 and 1e9 become inf, as intended
        want = b[32:].astype(np.float16)
    return (got.view(np.uint16) == want.view(np.uint16)).astype(np.float32)


def test_float16_stores_round_as_numpy():
    if not hasattr(native.lib, "paged_step"):
        pytest.skip("no decode step in this build")
    assert float16_stores_as_numpy().all()


def run_variant(isa, tmp_path):
    """compute() under MINILLM_ISA=isa in a child process: (variant it reports, results)."""
    path = tmp_path / f"{isa}.npz"
    env = dict(os.environ, MINILLM_ISA=isa)
    done = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = np.load(path)
    return str(data["isa"]), {k: data[k] for k in data.files if k != "isa"}


def test_cpu_features_reports_the_variant():
    info = kernels.cpu_features()
    assert info["isa"] in ORDER + ("native",)
    if info["isa"] == "avx512":
        assert {"avx512f", "avx512bw", "avx512vl", "avx512vnni", "x86-64-v4"} <= set(info["features"])
    if info["isa"] == "avx2":
        assert {"avx2", "fma", "f16c"} <= set(info["features"])


def test_forcing_a_variant_the_cpu_lacks_falls_back(tmp_path):
    info = kernels.cpu_features()
    if info["isa"] not in ORDER or info["requested"] != "auto":
        pytest.skip("needs the multi-variant build under MINILLM_ISA=auto")
    isa, _ = run_variant("avx512", tmp_path)      # the best the CPU has, never more
    assert isa == info["isa"]


def test_bad_isa_request_is_a_clear_error():
    env = dict(os.environ, MINILLM_ISA="avx9")
    done = subprocess.run([sys.executable, "-c", "import minillm.kernels"], env=env, capture_output=True,
                          text=True)
    assert done.returncode != 0 and "MINILLM_ISA: expected one of auto, avx512, avx2, generic, got 'avx9'" in done.stderr


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_lower_variants_match_the_default(isa, tmp_path):
    info = kernels.cpu_features()
    if info["isa"] not in ORDER or info["requested"] != "auto":
        pytest.skip("needs the multi-variant build under MINILLM_ISA=auto")
    if ORDER.index(isa) <= ORDER.index(info["isa"]):
        pytest.skip(f"{isa} is not below this CPU's default variant {info['isa']}")
    got_isa, got = run_variant(isa, tmp_path)
    assert got_isa == isa
    want = compute()
    assert sorted(got) == sorted(want)
    for name in want:
        finite = np.abs(want[name][np.isfinite(want[name])])     # NaN / inf entries compare as such
        scale = (float(finite.max()) if finite.size else 0.0) or 1.0
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=2e-5 * scale, err_msg=name)
    if isa == "avx2" and info["isa"] == "avx512" and os.environ.get("MINILLM_TILES") != "0":
        # both variants multiply by row tiles (csrc/qtiles.c): the same integers, the same float
        # operations in the same order, so the same results to the bit
        for name in want:
            if name.startswith(tuple(f"qgemm_{f}_" for f in TILED)) and not name.endswith("_blocks"):
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


if __name__ == "__main__":   # the child process of run_variant
    np.savez(sys.argv[1], isa=kernels.cpu_features()["isa"], **compute())


def test_the_build_renames_every_function_parts_inc_declares():
    """minillm/kernels/_build.py reads parts.inc's declarations to rename each per variant; a
    function it misses is defined once per variant under one name, and the link fails (the package
    then falls back to NumPy). Every declaration at the start of a line must be found, and the file
    holds declarations only (a function body there hides the declaration after it)."""
    import re
    from minillm.kernels import _build
    text = _build._declarations(open(os.path.join(_build.CSRC, "parts.inc")).read())
    declared = set(re.findall(r"^[A-Za-z_][\w \*]*?\b(\w+)\s*\(", text, re.M))
    assert "{" not in text
    assert declared and declared == {name for _, name, _ in _build._functions(text)}
