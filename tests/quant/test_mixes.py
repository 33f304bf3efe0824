"""llama.cpp's file types: on a small Llama whose shapes exercise every rule (grouped queries, rows
that K-blocks do not divide, 8 layers for the first/last-eighth rules, tied and untied output), the
GGUF that quantize_gguf writes is byte for byte the file llama.cpp's quantizer writes from the same
F32 input, with and without an importance matrix. Under `slow`, the same on SmolLM2-135M."""
import ctypes
import os

import numpy as np
import pytest

from ggml_ref import smollm2_path
from llama_cpp_ref import llama_cpp_or_skip
from minillm.io.gguf import read_gguf
from minillm.loaders import save_gguf
from minillm.loaders.gguf_quantize import quantize_gguf
from minillm.model import ModelConfig, Transformer
from minillm.quant.imatrix import Imatrix, load_imatrix, save_imatrix
from minillm.quant.mixes import MIXES, mix_types
from minillm.tokenizer import ByteTokenizer


def _llama_quantize(src, dst, mix, importance=None):
    llama_cpp = llama_cpp_or_skip()
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = MIXES[mix][0], True, 1
    keep = []
    if importance is not None:
        arr = (llama_cpp.llama_model_imatrix_data * (len(importance) + 1))()
        for i, (name, v) in enumerate(importance.items()):
            v = np.ascontiguousarray(v, dtype=np.float32)
            keep.append(v)
            arr[i].name, arr[i].size = name.encode(), len(v)
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        arr[len(importance)].name = None
        p.imatrix = arr
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), p) == 0


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def tiny(request, tmp_path_factory):
    cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=8, n_head=8, n_kv_head=2, d_model=96, ffn_dim=256,
                      max_seq_len=64, tie_embeddings=request.param)
    d = tmp_path_factory.mktemp("mix")
    src = d / "tiny-f32.gguf"
    save_gguf(Transformer(cfg, seed=1), src, tokenizer=ByteTokenizer())
    rng = np.random.default_rng(0)
    im = Imatrix(chunk_count=3, chunk_size=64, datasets=["random"])
    for name, (_, shape, _) in read_gguf(src)[1].items():
        if name.startswith("blk.") and len(shape) == 2:
            im.sums[name] = (rng.random(shape[1]) ** 2 * 50).astype(np.float32)
            im.counts[name] = np.array([rng.integers(1, 200)])
    save_imatrix(d / "imatrix.gguf", im)
    return d, src


@pytest.mark.parametrize("mix", list(MIXES))
def test_mix_file_equals_llama_cpp(tiny, mix):
    d, src = tiny
    for tag, imatrix in (("plain", None), ("imatrix", d / "imatrix.gguf")):
        ref, ours = d / f"ref-{mix}-{tag}.gguf", d / f"ours-{mix}-{tag}.gguf"
        _llama_quantize(src, ref, mix, None if imatrix is None else load_imatrix(imatrix).importance())
        quantize_gguf(src, ours, mix, imatrix=imatrix)
        _, a = read_gguf(ours)
        _, b = read_gguf(ref)
        assert {n: t[0] for n, t in a.items()} == {n: t[0] for n, t in b.items()}, (mix, tag)
        assert ours.read_bytes() == ref.read_bytes(), (mix, tag)


def test_requantize_through_float32(tiny):
    """A quantized input goes through float32, as llama.cpp's allow_requantize does."""
    d, src = tiny
    mid, ref, ours = d / "mid-q4_1.gguf", d / "re-ref.gguf", d / "re-ours.gguf"
    quantize_gguf(src, mid, "Q4_1")
    _llama_quantize(mid, ref, "Q4_K_M")
    quantize_gguf(mid, ours, "Q4_K_M")
    assert ours.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("storage", ["f16", "bf16"])
def test_f16_bf16_input(tiny, storage):
    """F16 and BF16 inputs go through float32 like llama.cpp's; the files match byte for byte."""
    from minillm.io.gguf import read_gguf_typed, write_gguf
    from minillm.io.gguf import ARRAY
    d, src = tiny
    meta, kinds, tensors = read_gguf_typed(src)
    kvs = [(k, ARRAY, (kinds[k][1], v)) if isinstance(kinds[k], tuple) else (k, kinds[k], v) for k, v in meta.items()]
    out = []
    for name, (t, shape, raw) in tensors.items():
        w = raw.view("<f4")
        if len(shape) == 2:
            if storage == "f16":
                t, raw = "f16", w.astype("<f2").view(np.uint8)
            else:
                t, raw = "bf16", (w.view("<u4") >> 16).astype("<u2").view(np.uint8)  # truncated to bf16
        out.append((name, t, shape, raw.tobytes()))
    half, ref, ours = d / f"{storage}.gguf", d / f"{storage}-ref.gguf", d / f"{storage}-ours.gguf"
    write_gguf(half, kvs, out)
    _llama_quantize(half, ref, "Q4_K_M")
    quantize_gguf(half, ours, "Q4_K_M")
    assert ours.read_bytes() == ref.read_bytes()


@pytest.mark.parametrize("mix", ["Q2_K", "Q3_K_M", "Q4_K_M"])
def test_qwen2_mix_equals_llama_cpp(tiny, mix):
    """The same rules on the qwen2 architecture (its q/k/v biases stay F32)."""
    from minillm.io.gguf import ARRAY, read_gguf_typed, write_gguf
    d, src = tiny
    meta, kinds, tensors = read_gguf_typed(src)
    kvs = []
    for k, v in meta.items():
        key, v = k.replace("llama.", "qwen2.", 1), ("qwen2" if k == "general.architecture" else v)
        kvs.append((key, ARRAY, (kinds[k][1], v)) if isinstance(kinds[k], tuple) else (key, kinds[k], v))
    out = [(n, t, s, r.tobytes()) for n, (t, s, r) in tensors.items()]
    rng = np.random.default_rng(0)
    for n, (t, shape, _) in tensors.items():
        if n.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight")):
            out.append((n[:-6] + "bias", "f32", shape[:1], rng.standard_normal(shape[0]).astype("<f4").tobytes()))
    qsrc, ref, ours = d / "qwen2.gguf", d / f"qwen2-ref-{mix}.gguf", d / f"qwen2-ours-{mix}.gguf"
    write_gguf(qsrc, kvs, out)
    _llama_quantize(qsrc, ref, mix)
    quantize_gguf(qsrc, ours, mix)
    assert ours.read_bytes() == ref.read_bytes()


def test_mix_rules_without_llama_cpp():
    """Rules a reader can check by hand, on SmolLM2's shapes (30 layers, 9/3 heads, d 576, FFN 1536)."""
    t = {"token_embd.weight": ("f32", (49152, 576)), "output_norm.weight": ("f32", (576,))}
    for i in range(30):
        t.update({f"blk.{i}.attn_v.weight": ("f32", (192, 576)), f"blk.{i}.ffn_down.weight": ("f32", (576, 1536)),
                  f"blk.{i}.attn_q.weight": ("f32", (576, 576)), f"blk.{i}.attn_norm.weight": ("f32", (576,))})
    m = mix_types(t, "Q4_K_M", "llama", 9, 3, 30)
    assert m["token_embd.weight"] == "q8_0"                      # tied output: Q6_K, 576 % 256 -> Q8_0
    assert m["output_norm.weight"] == "f32" and m["blk.0.attn_norm.weight"] == "f32"
    assert m["blk.0.ffn_down.weight"] == "q6_K" and m["blk.4.ffn_down.weight"] == "q4_K"   # more bits: 0-2, 5, 8 ...
    assert m["blk.5.ffn_down.weight"] == "q6_K" and m["blk.29.ffn_down.weight"] == "q6_K"
    assert m["blk.0.attn_v.weight"] == "q8_0" and m["blk.4.attn_v.weight"] == "q5_0"       # fallbacks of Q6_K, Q4_K
    assert m["blk.3.attn_q.weight"] == "q5_0"
    assert mix_types(t, "Q2_K", "llama", 9, 3, 30)["blk.3.ffn_down.weight"] == "q3_K"
    assert mix_types(t, "Q2_K", "llama", 12, 3, 30)["blk.3.attn_v.weight"] == "q5_0"        # Q4_K -> Q5_0
    with pytest.raises(ValueError, match="mix"):
        mix_types(t, "Q4_K_X", "llama", 9, 3, 30)
    with pytest.raises(ValueError, match="arch"):
        mix_types(t, "Q4_K_M", "gpt2", 9, 3, 30)


@pytest.mark.slow
@pytest.mark.parametrize("mix", ["Q4_K_M"] + (list(MIXES) if os.environ.get("MINILLM_ALL_MIXES") else []))
def test_smollm2_mix_equals_llama_cpp(mix, tmp_path):
    """SmolLM2-135M as F32 (written by llama.cpp from the wheel's Q4_1 file), then the mix by both."""
    src, f32 = smollm2_path(), tmp_path / "f32.gguf"
    llama_cpp = llama_cpp_or_skip()
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = 0, True, 2
    assert llama_cpp.llama_model_quantize(str(src).encode(), str(f32).encode(), p) == 0
    _llama_quantize(f32, tmp_path / "ref.gguf", mix)
    quantize_gguf(f32, tmp_path / "ours.gguf", mix)
    assert (tmp_path / "ours.gguf").read_bytes() == (tmp_path / "ref.gguf").read_bytes()


def test_model_folder_input_equals_its_f32_gguf(tmp_path):
    """An HF folder is quantized as the F32 GGUF save_gguf writes of the same model."""
    from minillm.loaders import save_hf
    cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=2, n_head=4, n_kv_head=2, d_model=256, ffn_dim=512,
                      max_seq_len=64)
    model = Transformer(cfg, seed=5)
    save_hf(model, tmp_path / "hf")
    save_gguf(model, tmp_path / "f32.gguf")
    a = quantize_gguf(str(tmp_path / "hf"), tmp_path / "a.gguf", "Q3_K_M")
    b = quantize_gguf(tmp_path / "f32.gguf", tmp_path / "b.gguf", "Q3_K_M")
    assert a == b and "q3_K" in a.values() and "q5_K" in a.values()
    ta, tb = read_gguf(tmp_path / "a.gguf")[1], read_gguf(tmp_path / "b.gguf")[1]
    for name in tb:
        assert ta[name][0] == tb[name][0] and np.array_equal(ta[name][2], tb[name][2]), name
