"""load_gguf on bad files: each a one-line ValueError naming the file and what is wrong, and a
qwen2 file read against transformers' own GGUF loader. The files are small models written here."""
import struct

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.io.gguf import ARRAY, F32, I32, STRING, U32, read_gguf, write_gguf
from minillm.loaders import load, load_gguf, save_gguf


def _value_type(v):
    if isinstance(v, str):
        return STRING, v
    if isinstance(v, bool) or isinstance(v, int):
        return U32, int(v)
    if isinstance(v, float):
        return F32, v
    etype = STRING if isinstance(v[0], str) else F32 if isinstance(v[0], float) else I32
    return ARRAY, (etype, v)


def rewrite(src, dst, drop=(), **changes):
    """Copy a GGUF file with metadata keys changed (dots written as __ in the keyword names)."""
    meta, tensors = read_gguf(src)
    meta = {k: v for k, v in meta.items() if k not in drop}
    meta.update({k.replace("__", "."): v for k, v in changes.items()})
    kvs = [(k, *_value_type(v)) for k, v in meta.items()]
    write_gguf(dst, kvs, [(n, t, s, raw.tobytes()) for n, (t, s, raw) in tensors.items()])


@pytest.fixture
def tiny_gguf(tmp_path):
    cfg = ModelConfig.preset("llama-tiny", vocab_size=300)
    path = tmp_path / "tiny.gguf"
    save_gguf(Transformer(cfg, seed=0), path, dtype="q8_0")
    return path


def _one_line(e):
    assert "\n" not in str(e.value)
    return str(e.value)


def test_unknown_architecture(tiny_gguf, tmp_path):
    bad = tmp_path / "falcon.gguf"
    rewrite(tiny_gguf, bad, general__architecture="falcon")
    with pytest.raises(ValueError, match="general.architecture 'falcon' is not supported") as e:
        load_gguf(bad)
    assert str(bad) in _one_line(e)


def test_unknown_pre_tokenizer(tiny_gguf, tmp_path):
    tokens = [bytes([b]).decode("latin-1") for b in range(256)]  # placeholder texts; never reached
    bad = tmp_path / "pre.gguf"
    rewrite(tiny_gguf, bad, tokenizer__ggml__model="gpt2", tokenizer__ggml__pre="my-new-model",
            tokenizer__ggml__tokens=tokens, tokenizer__ggml__merges=["a b"])
    with pytest.raises(ValueError, match="unknown pre-tokenizer 'my-new-model'") as e:
        load(bad)
    _one_line(e)


def test_unsupported_block_type(tiny_gguf, tmp_path):
    data = bytearray(tiny_gguf.read_bytes())
    name = b"blk.0.attn_q.weight"
    at = data.index(name) + len(name)                 # then u32 n_dims, u64 dims[n], u32 type
    n_dims = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, 16)   # 16: GGML_TYPE_IQ2_XXS
    bad = tmp_path / "iq2.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="'blk.0.attn_q.weight' has ggml type 16, which minillm does not read") as e:
        load_gguf(bad)
    _one_line(e)


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_file(tiny_gguf, tmp_path, keep):
    data = tiny_gguf.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(ValueError, match="truncated or corrupted GGUF") as e:
        load_gguf(bad)
    _one_line(e)


def test_dequantize_gives_float_params_equal_to_the_quantized_layers(tiny_gguf):
    q, _ = load_gguf(tiny_gguf, act_int8=False)          # float32 activations: the exact path
    f, _ = load_gguf(tiny_gguf, dequantize=True)
    assert q.quantized and not f.quantized
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    for name, layer in q.quantized.items():
        # the fused kernel multiplies by the same decoded weights: float32 summation order only
        np.testing.assert_allclose(layer.matmul(x), x @ f.params[name].T, atol=1e-3, rtol=1e-3)


def _qwen2_gguf(tmp_path):
    """A random Qwen2 model written the way llama.cpp's converter names its tensors (no rotary
    permutation for qwen2), with the transformers-side weights to compare against."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, rope_theta=1e6,
                                   tie_word_embeddings=False, rms_norm_eps=1e-6, max_position_embeddings=64)
    ref = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    per_layer = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                 "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                 "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down"}
    tensors = []
    for name, p in ref.state_dict().items():
        base, kind = name.rsplit(".", 1)
        if base.startswith("model.layers."):
            i, rest = base[len("model.layers."):].split(".", 1)
            gg = f"blk.{i}.{per_layer[rest]}.{kind}"
        else:
            gg = f"{names[base]}.{kind}"
        a = p.detach().numpy().astype(np.float32)
        tensors.append((gg, "f32", a.shape, a.tobytes()))
    meta = [("general.architecture", STRING, "qwen2"), ("qwen2.block_count", U32, 2),
            ("qwen2.context_length", U32, 64), ("qwen2.embedding_length", U32, 64),
            ("qwen2.feed_forward_length", U32, 96), ("qwen2.attention.head_count", U32, 4),
            ("qwen2.attention.head_count_kv", U32, 2), ("qwen2.rope.freq_base", F32, 1e6),
            ("qwen2.attention.layer_norm_rms_epsilon", F32, 1e-6), ("tokenizer.ggml.model", STRING, "no_vocab")]
    path = tmp_path / "qwen2.gguf"
    write_gguf(path, meta, tensors)
    return path, ref, torch


def test_qwen2_gguf_matches_transformers(tmp_path):
    path, ref, torch = _qwen2_gguf(tmp_path)
    model, tokenizer = load_gguf(path)
    assert tokenizer is None and model.config.attn_bias
    tokens = np.random.default_rng(0).integers(0, 300, size=(1, 16))
    with torch.no_grad():
        want = ref(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(model.forward(tokens), want, atol=2e-5, rtol=1e-4)
