"""GGUF: files minillm writes are read back by the `gguf` package with the same tensors (names, shapes,
types, dequantized values, rotary permutation), load_gguf restores the model and its tokenizer, bad
files raise clear errors, and (when llama-cpp-python is installed) llama.cpp loads them and computes
the same logits."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.loaders import load_gguf, save_gguf
from minillm.loaders.gguf import _permute_rope, _unpermute_rope
from minillm.quant.ggml_quants import dequantize_blocks, quantize_blocks
from llama_cpp_ref import llama_cpp_or_skip

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize  # noqa: E402


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig.preset("llama-tiny", vocab_size=300, d_model=256, n_head=4, n_kv_head=2, ffn_dim=512)
    return Transformer(cfg, seed=1)


def test_rope_permutation_round_trip_and_semantics():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(32, 3)
    np.testing.assert_array_equal(_unpermute_rope(_permute_rope(w, 4), 4), w)
    # head 0 of HF order: rows 0..3 first halves, 4..7 second halves -> ggml pairs (0,4), (1,5), ...
    np.testing.assert_array_equal(_permute_rope(w, 4)[:8, 0], w[[0, 4, 1, 5, 2, 6, 3, 7], 0])


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0", "q4_0", "q4_K"])
def test_gguf_package_reads_same_tensors(model, dtype, tmp_path):
    path = tmp_path / f"m-{dtype}.gguf"
    save_gguf(model, path, dtype=dtype)
    reader = gguf.GGUFReader(str(path))
    t = {x.name: x for x in reader.tensors}
    cfg = model.config
    assert len(t) == len(model.params)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["llama.attention.head_count_kv"].contents() == cfg.n_kv_head
    for hf, gg, n_rope in [("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", cfg.n_head),
                           ("model.layers.1.self_attn.k_proj.weight", "blk.1.attn_k.weight", cfg.n_kv_head),
                           ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", None),
                           ("model.norm.weight", "output_norm.weight", None)]:
        w = model.params[hf]
        w = _permute_rope(w, n_rope) if n_rope else w
        got = dequantize(t[gg].data, t[gg].tensor_type).reshape(w.shape)
        if w.ndim == 1 or dtype == "f32":
            np.testing.assert_array_equal(got, w)
        elif dtype == "f16":
            np.testing.assert_array_equal(got, w.astype(np.float16).astype(np.float32))
        else:
            fmt = {"q8_0": "q8_0", "q4_0": "q4_0", "q4_K": "q4_K"}[dtype]
            assert t[gg].tensor_type.name.lower() == fmt.lower()
            np.testing.assert_array_equal(got, dequantize_blocks(quantize_blocks(w, fmt), fmt))
    if dtype in ("q4_0", "q4_K"):
        assert t["output.weight"].tensor_type.name == "Q6_K"      # as llama.cpp's 4-bit files do


@pytest.mark.parametrize("dtype", ["f32", "q8_0"])
def test_load_gguf_round_trip(model, dtype, tmp_path):
    path = tmp_path / "m.gguf"
    save_gguf(model, path, dtype=dtype)
    back, tok = load_gguf(path)
    assert tok is None and back.config.n_kv_head == model.config.n_kv_head
    tokens = np.arange(17)[None] % 300
    ref = model.forward(tokens)
    out = back.forward(tokens)
    if dtype == "f32":
        np.testing.assert_array_equal(out, ref)
    else:
        assert np.abs(out - ref).max() < (0.02 if dtype == "q8_0" else 0.2) * np.abs(ref).max()


def test_tokenizer_metadata_round_trip(tmp_path):
    from minillm.tokenizer import BPETokenizer
    from minillm.tokenizer import ByteTokenizer
    from minillm.train import corpus_text
    text = corpus_text()[:20000]
    tok = BPETokenizer.train(text, vocab_size=300, special_tokens=["<|endoftext|>"])
    cfg = ModelConfig.preset("llama-tiny", vocab_size=320)
    save_gguf(Transformer(cfg), tmp_path / "t.gguf", tokenizer=tok)
    _, back = load_gguf(tmp_path / "t.gguf")
    s = "def f(x):\n    return x  # ünïcode"
    assert back.encode(s) == tok.encode(s) and back.decode(tok.encode(s)) == s
    r = gguf.GGUFReader(str(tmp_path / "t.gguf"))
    assert r.fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == 320
    save_gguf(Transformer(cfg), tmp_path / "b.gguf", tokenizer=ByteTokenizer())
    assert isinstance(load_gguf(tmp_path / "b.gguf")[1], ByteTokenizer)


def test_errors(model, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        save_gguf(model, tmp_path / "x.gguf", dtype="q7_K")
    with pytest.raises(ValueError, match="Llama"):
        save_gguf(Transformer(ModelConfig.preset("gpt2-tiny")), tmp_path / "x.gguf")
    path = tmp_path / "m.gguf"
    save_gguf(model, path, dtype="q8_0")
    raw = path.read_bytes()
    (tmp_path / "trunc.gguf").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_gguf(tmp_path / "trunc.gguf")
    (tmp_path / "magic.gguf").write_bytes(b"GGML" + raw[4:])
    with pytest.raises(ValueError, match="magic"):
        load_gguf(tmp_path / "magic.gguf")
    # a tensor type minillm does not read (I8), written by the gguf package
    w = gguf.GGUFWriter(str(tmp_path / "q5.gguf"), "llama")
    w.add_tensor("token_embd.weight", np.zeros((2, 256), np.uint8).reshape(2, 256), raw_shape=(2, 256),
                 raw_dtype=gguf.GGMLQuantizationType.I8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="does not read"):
        load_gguf(tmp_path / "q5.gguf")


@pytest.mark.parametrize("dtype", ["f32", "q8_0", "q4_0"])
def test_llama_cpp_loads_and_agrees(model, dtype, tmp_path):
    llama_cpp = llama_cpp_or_skip()
    path = tmp_path / "m.gguf"
    save_gguf(model, path, dtype=dtype)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
    tokens = [int(t) for t in (np.arange(12) * 7 % 300)]
    llm.eval(tokens)
    theirs = np.array(llm.scores[:len(tokens)], dtype=np.float32)
    ours = load_gguf(path)[0].forward(np.array([tokens]))[0]
    # llama.cpp quantizes activations to Q8 for quantized matmuls: compare loosely for those
    tol = 1e-3 if dtype == "f32" else 0.05
    assert np.abs(theirs - ours).max() < tol * np.abs(ours).max() + 1e-4
