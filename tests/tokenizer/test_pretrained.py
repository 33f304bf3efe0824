"""Tokenizers of published models: named pre-tokenizers (against Hugging Face tokenizers' Split
steps, an independent regex engine), SentencePiece-style BPE (against sentencepiece itself), the
GGUF vocabulary reader's errors, and sandboxed chat templates (against transformers' renderer)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_cpp_ref import llama_cpp_or_skip

from minillm.tokenizer import chat_template, pretokenizers
from minillm.tokenizer.gguf_vocab import tokenizer_from_gguf

# characters that exercise every class the regexes name: letters of several scripts and cases,
# digits of several scripts, other numbers, punctuation, symbols, emoji, every kind of space
ALPHABET = list("abcXYZ'sdtlvemr019 \t\n\r.,!?;:-_()[]{}<>|$+=^~`@#%&*/\\\"") + \
    list("éßÀΩωЖж中文日本語한국어العربيةहिन्दी٣٤٥½²Ⅻ\u00a0\u2003\u3000😀👍🏽🇫🇷\u200d")
texts = st.text(alphabet=ALPHABET, max_size=40)


@settings(max_examples=60, deadline=None)
@given(text=texts, family=st.sampled_from(sorted(pretokenizers.FAMILIES)))
def test_split_pieces_concatenate_to_the_text(text, family):
    pieces = pretokenizers.split(text, pretokenizers.FAMILIES[family][0])
    assert "".join(pieces) == text and all(pieces)


@settings(max_examples=80, deadline=None)
@given(text=texts, family=st.sampled_from(["default", "gpt2", "llama3", "smollm", "qwen2", "falcon", "gpt-4o"]))
def test_split_matches_hugging_face_split_steps(text, family):
    tokenizers = pytest.importorskip("tokenizers", reason="Hugging Face tokenizers is the independent regex engine")
    pre = tokenizers.pre_tokenizers
    steps = [pre.Split(tokenizers.Regex(e), behavior="isolated") for e in pretokenizers.FAMILIES[family][0]]
    want = [p for p, _ in pre.Sequence(steps).pre_tokenize_str(text)]
    assert pretokenizers.split(text, pretokenizers.FAMILIES[family][0]) == want


def test_smollm_splits_every_digit_where_gpt2_does_not():
    assert pretokenizers.split("a 123", pretokenizers.resolve("smollm")) == ["a", " ", "1", "2", "3"]
    assert pretokenizers.split("a 123", pretokenizers.resolve("gpt2")) == ["a", " 123"]
    assert pretokenizers.resolve("llama-bpe") == pretokenizers.resolve("llama3")


def test_unknown_pre_tokenizer_is_a_clear_error():
    with pytest.raises(ValueError, match="tokenizer.ggml.pre: unknown pre-tokenizer 'nonsense'"):
        pretokenizers.resolve("nonsense")
    meta = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "nonsense",
            "tokenizer.ggml.tokens": ["a"], "tokenizer.ggml.merges": []}
    with pytest.raises(ValueError, match="unknown pre-tokenizer 'nonsense'"):
        tokenizer_from_gguf(meta, "f.gguf")


def test_unknown_tokenizer_model_is_a_clear_error():
    with pytest.raises(ValueError, match="f.gguf: tokenizer.ggml.model 'bert' is not supported"):
        tokenizer_from_gguf({"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": ["a"]}, "f.gguf")
    assert tokenizer_from_gguf({"tokenizer.ggml.model": "no_vocab"}) is None


# ------------------------------------------------------------------ SentencePiece-style BPE
@pytest.fixture(scope="module")
def sentencepiece_pair(tmp_path_factory):
    """A sentencepiece BPE model (byte fallback, Llama-2's settings) and the same vocabulary read
    as a GGUF "llama" tokenizer, the way llama.cpp's converter writes it."""
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is the reference for SPM vocabularies")
    import pydoc_data.topics
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(pydoc_data.topics.topics.values()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "m"), vocab_size=800,
                                   model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, add_dummy_prefix=True, minloglevel=2,
                                   num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "m.model"))
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1 for i in range(n)]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
            "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)], "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": sp.bos_id(), "tokenizer.ggml.eos_token_id": sp.eos_id(),
            "tokenizer.ggml.unknown_token_id": sp.unk_id()}
    return sp, tokenizer_from_gguf(meta, "spm.gguf")


@settings(max_examples=80, deadline=None)
@given(text=texts)
def test_sentencepiece_bpe_matches_sentencepiece(sentencepiece_pair, text):
    sp, tok = sentencepiece_pair
    assert tok.encode(text, add_bos=False) == sp.encode(text)
    assert tok.encode(text)[:1] == [sp.bos_id()]          # a "llama" vocabulary adds BOS by default
    assert tok.decode(tok.encode(text), skip_special=True) == sp.decode(sp.encode(text))


# ------------------------------------------------------------------ chat templates
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
WITH_SYSTEM_CHECK = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
                     "supported') }}{% endif %}{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] | trim }}"
                     "{{ eos_token }}\n{% endfor %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! ünïcödé 中文"}, {"role": "user", "content": "Bye"}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_matches_transformers(messages, add_generation_prompt):
    utils = pytest.importorskip("transformers.utils.chat_template_utils",
                                reason="transformers' renderer is the reference")
    want = utils.render_jinja_template(conversations=[messages], chat_template=CHATML,
                                       add_generation_prompt=add_generation_prompt)[0][0]
    assert chat_template.render(CHATML, messages, add_generation_prompt) == want


def test_template_that_raises_is_one_line_value_error():
    specials = {"bos_token": "<s>", "eos_token": "</s>"}
    assert chat_template.render(WITH_SYSTEM_CHECK, CONVERSATIONS[0], special_tokens=specials) == \
        "<s>[USER] What is the capital of France?</s>\n"
    with pytest.raises(ValueError, match="refused the messages: System role not supported") as e:
        chat_template.render(WITH_SYSTEM_CHECK, CONVERSATIONS[1], special_tokens=specials)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("source", [
    "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__() }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{% set x = cycler.__init__.__globals__ %}{{ x }}",
])
def test_template_reaching_for_python_internals_fails_cleanly(source):
    with pytest.raises(ValueError, match="chat_template: (blocked by the sandbox|rendering failed)") as e:
        chat_template.render(source, CONVERSATIONS[0])
    assert "\n" not in str(e.value)


def test_template_syntax_error_names_the_line():
    with pytest.raises(ValueError, match="chat_template: syntax error on line 2"):
        chat_template.render("ok\n{% for m in messages %}", CONVERSATIONS[0])


@pytest.fixture(scope="module")
def sentencepiece_llama_cpp(sentencepiece_pair, tmp_path_factory):
    """The same "llama" vocabulary written by save_gguf and read by llama.cpp (vocabulary only)."""
    llama_cpp = llama_cpp_or_skip()
    from minillm import ModelConfig, Transformer
    from minillm.loaders import save_gguf
    tok = sentencepiece_pair[1]
    path = tmp_path_factory.mktemp("spm_gguf") / "spm.gguf"
    tiny = Transformer(ModelConfig(arch="llama", vocab_size=tok.n_vocab, n_layer=1, n_head=1, d_model=32, ffn_dim=32))
    save_gguf(tiny, path, tokenizer=tok)
    return tok, llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(texts, st.builds(lambda a, b: a + "</s>" + b, texts, texts)), special=st.booleans())
def test_sentencepiece_bpe_matches_llama_cpp(sentencepiece_llama_cpp, text, special):
    """Also after a special token, where llama.cpp (unlike sentencepiece) prepends a space again."""
    tok, ref = sentencepiece_llama_cpp
    want = ref.tokenize(text.encode("utf-8"), add_bos=True, special=special)
    assert tok.encode(text, allowed_special="all" if special else frozenset()) == want


@pytest.fixture(scope="module")
def sentencepiece_tokenizer_json(sentencepiece_llama_cpp, tmp_path_factory):
    """The GGUF vocabulary converted to tokenizer.json by transformers, and read back by minillm."""
    transformers = pytest.importorskip("transformers", reason="transformers converts GGUF vocabularies")
    pytest.importorskip("gguf")
    from minillm import ModelConfig, Transformer
    from minillm.loaders import save_gguf
    from minillm.tokenizer.hf_tokenizer import tokenizer_from_hf
    tok = sentencepiece_llama_cpp[0]
    folder = tmp_path_factory.mktemp("spm_hf")
    tiny = Transformer(ModelConfig(arch="llama", vocab_size=tok.n_vocab, n_layer=1, n_head=1, d_model=32, ffn_dim=32))
    save_gguf(tiny, folder / "spm.gguf", tokenizer=tok)
    ref = transformers.AutoTokenizer.from_pretrained(folder, gguf_file="spm.gguf")
    ref.save_pretrained(folder / "hf")
    return tokenizer_from_hf(str(folder / "hf")), ref


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(texts, st.builds(lambda a, b: a + "</s>" + b, texts, texts)))
def test_sentencepiece_tokenizer_json_matches_transformers(sentencepiece_tokenizer_json, text):
    tok, ref = sentencepiece_tokenizer_json
    assert tok.encode(text, allowed_special="all") == ref.encode(text)
