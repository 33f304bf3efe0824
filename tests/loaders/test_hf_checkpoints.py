"""Hugging Face checkpoints (loaders/hf.py) against transformers on the same folder: small random
models of each supported class, saved by transformers in float32, float16, bfloat16 and as shards;
and save_hf folders that transformers loads whole (weights, tokenizer, chat template, generation config)."""
import json
import os

import numpy as np
import pytest

from minillm.loaders import load, load_hf, save_hf
from minillm.tokenizer import BPETokenizer

torch = pytest.importorskip("torch", reason="the reference model runs in torch")
transformers = pytest.importorskip("transformers", reason="transformers is the reference for HF checkpoints")

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rope_theta=5000.0)


def _model(kind, seed=0):
    torch.manual_seed(seed)
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL, tie_word_embeddings=False))
    if kind == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(**SMALL, sliding_window=32))
    if kind == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SMALL, tie_word_embeddings=True))
    cfg = transformers.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    return transformers.GPT2LMHeadModel(cfg)


def _reference_logits(folder, tokens):
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return ref(torch.tensor(tokens)).logits.numpy()


def _randomize_biases(model, seed):
    """transformers starts biases at zero, which would hide a dropped bias: make them matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "gpt2"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_load_hf_matches_transformers(tmp_path, kind, dtype):
    ref = _model(kind)
    _randomize_biases(ref, 1)
    ref.to(getattr(torch, dtype)).save_pretrained(tmp_path)
    tokens = np.random.default_rng(0).integers(0, 300, size=(2, 20))
    want = _reference_logits(tmp_path, tokens)         # the bf16 weights widened to float32 by transformers
    model = load_hf(str(tmp_path))
    got = model.forward(tokens)
    # equal up to float32 summation order over 2 layers of d=64
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


def test_load_hf_reads_float16_and_shards(tmp_path):
    ref = _model("llama", seed=3)
    ref.to(torch.float16).save_pretrained(tmp_path, max_shard_size="20KB")
    assert os.path.exists(tmp_path / "model.safetensors.index.json")
    tokens = np.arange(16)[None] % 300
    np.testing.assert_allclose(load_hf(str(tmp_path)).forward(tokens), _reference_logits(tmp_path, tokens),
                               atol=2e-5, rtol=1e-4)


def test_unknown_model_type_is_one_line_error(tmp_path):
    ref = _model("llama")
    ref.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "falcon"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model_type must be one of .* got 'falcon'") as e:
        load_hf(str(tmp_path))
    assert "\n" not in str(e.value)


def test_truncated_safetensors_is_an_error(tmp_path):
    _model("llama").save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_hf(str(tmp_path))


def _tiny_bpe():
    text = "hello world, the quick brown fox jumps over the lazy dog. " * 20
    return BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_save_hf_folder_loads_whole_in_transformers(tmp_path, kind):
    ref = _model(kind, seed=5)
    _randomize_biases(ref, 2)
    ref.save_pretrained(tmp_path / "src")
    model = load_hf(str(tmp_path / "src"))
    save_hf(model, str(tmp_path / "out"), tokenizer=_tiny_bpe())
    tokens = np.random.default_rng(1).integers(0, 300, size=(1, 12))
    np.testing.assert_allclose(_reference_logits(tmp_path / "out", tokens), model.forward(tokens),
                               atol=2e-5, rtol=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    gen = transformers.GenerationConfig.from_pretrained(tmp_path / "out")
    assert tok.encode("hello world") == _tiny_bpe().encode("hello world")
    assert gen.eos_token_id == _tiny_bpe().special_tokens["<|endoftext|>"]


def test_minillm_load_names_hf_folders_and_refuses_other_paths(tmp_path):
    _model("qwen2").save_pretrained(tmp_path / "m")
    model, tokenizer = load(str(tmp_path / "m"))
    assert model.config.attn_bias and tokenizer is None
    (tmp_path / "x.bin").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a GGUF model"):
        load(str(tmp_path / "x.bin"))
    with pytest.raises(ValueError, match="neither config.json"):
        load(str(tmp_path))


def test_qwen2_gradients_match_torch_autograd(tmp_path):
    """The q/k/v biases (ModelConfig.attn_bias) get their gradients in the hand-written backward."""
    ref = _model("qwen2", seed=7)
    _randomize_biases(ref, 3)
    ref.save_pretrained(tmp_path)
    model = load_hf(str(tmp_path))
    tokens = np.random.default_rng(2).integers(0, 300, size=(2, 10))
    loss, grads = model.loss_and_grads(tokens[:, :-1], tokens[:, 1:])
    logits = ref(torch.tensor(tokens[:, :-1])).logits.reshape(-1, 300)      # no dropout in these configs
    want = torch.nn.functional.cross_entropy(logits, torch.tensor(tokens[:, 1:]).reshape(-1))
    want.backward()
    assert abs(loss - want.item()) < 1e-5
    for name, p in ref.named_parameters():
        if name.endswith("bias"):
            np.testing.assert_allclose(grads[name], p.grad.numpy(), atol=2e-6, rtol=1e-4)


def test_minillm_load_reads_a_run_folder(tmp_path):
    from minillm.cli import main
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--preset", "llama-tiny", "--tokenizer", "byte", "--steps", "2",
                 "--batch-size", "2", "--seq-len", "32", "--fresh"]) in (0, None)
    model, tok = load(str(run))
    assert model.config.vocab_size == 256 and tok.decode(tok.encode("run folder")) == "run folder"
