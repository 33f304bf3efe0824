"""Chat templates (render/parse inverses), the `minillm tokenizer` CLI, cached_bpe, and the GPT-2 /
Hugging Face file formats (checked against the `tokenizers` library when installed)."""
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from minillm.cli import main
from minillm.tokenizer import BPETokenizer, bpe_io, cached_bpe, patterns, templates

CORPUS = "The cat sat on the mat. The dog sat on the log! 12 + 30 = 42;\n" * 40

CONTENT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30).filter(
    lambda s: not any(t in s for t in ("<|im_", "[INST]", "[/INST]", "<s>", "</s>", "<<SYS>>", "<</SYS>>"))
    and not s.startswith(" ") and not s.endswith(" ") and "  " not in s)
ROLE_MSGS = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), CONTENT), max_size=5)


@settings(max_examples=100, deadline=None)
@given(msgs=ROLE_MSGS, gen=st.booleans())
def test_chatml_round_trip(msgs, gen):
    messages = [{"role": r, "content": c} for r, c in msgs]
    assert templates.parse(templates.render(messages, "chatml", gen), "chatml") == messages


@settings(max_examples=100, deadline=None)
@given(system=st.one_of(st.none(), CONTENT), turns=st.lists(CONTENT, min_size=1, max_size=5))
def test_llama2_round_trip(system, turns):
    messages = ([{"role": "system", "content": system}] if system is not None else [])
    messages += [{"role": "user" if k % 2 == 0 else "assistant", "content": c} for k, c in enumerate(turns)]
    text = templates.render(messages, "llama2")
    assert templates.parse(text, "llama2") == messages
    assert text.startswith("<s>[INST] ") and text.count("<s>") == (len(turns) + 1) // 2


def test_llama2_layout_matches_meta_reference():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    assert templates.render(msgs, "llama2") == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]")
    with pytest.raises(ValueError, match="alternate"):
        templates.render([{"role": "assistant", "content": "x"}], "llama2")


def test_template_encode_uses_special_tokens():
    tok = BPETokenizer.train(CORPUS, 300, special_tokens=templates.special_tokens("chatml"))
    msgs = [{"role": "user", "content": "the cat"}]
    ids = templates.encode(tok, msgs, "chatml", add_generation_prompt=True)
    assert ids[0] == tok.special_tokens["<|im_start|>"] and tok.special_tokens["<|im_end|>"] in ids
    assert tok.decode(ids) == templates.render(msgs, "chatml", True)
    with pytest.raises(ValueError, match="lacks"):
        templates.encode(BPETokenizer.train(CORPUS, 300), msgs, "chatml")


def test_cli_train_encode_decode(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)
    for kind, out in (("bpe", tmp_path / "t.bpe"), ("unigram", tmp_path / "t.uni")):
        assert main(["tokenizer", "train", str(corpus), "--type", kind, "--vocab-size", "320",
                     "--out", str(out)]) == 0
        assert ("merges" if kind == "bpe" else "pieces") in capsys.readouterr().err  # the progress bar
        assert main(["tokenizer", "encode", "--model", str(out), "--text", "The cat sat."]) == 0
        ids = capsys.readouterr().out.split()
        assert main(["tokenizer", "decode", "--model", str(out)] + ids) == 0
        assert capsys.readouterr().out == "The cat sat."


def test_cached_bpe(tmp_path):
    a = cached_bpe(CORPUS, 300, tmp_path)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".bpe")
    b = cached_bpe(CORPUS, 300, tmp_path)
    assert a.merges == b.merges and os.listdir(tmp_path) == files
    cached_bpe(CORPUS, 301, tmp_path)
    assert len(os.listdir(tmp_path)) == 2  # a different vocab_size is a different key
    (tmp_path / files[0]).write_text("garbage")  # a corrupt cache entry is retrained
    assert cached_bpe(CORPUS, 300, tmp_path).merges == a.merges


def test_gpt2_files_round_trip(tmp_path):
    tok = BPETokenizer.train(CORPUS, 300, pattern=patterns.GPT2, special_tokens=["<|endoftext|>"])
    bpe_io.save_gpt2(tok, tmp_path / "vocab.json", tmp_path / "merges.txt")
    again = bpe_io.load_gpt2(BPETokenizer, tmp_path / "vocab.json", tmp_path / "merges.txt")
    s = CORPUS[:100] + " ünï 🙂"
    assert again.encode(s) == tok.encode(s) and again.special_tokens == tok.special_tokens
    assert json.loads((tmp_path / "vocab.json").read_text())["\u0120the"] == tok.encode(" the")[0]


def test_hf_tokenizer_json_parity(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = BPETokenizer.train(CORPUS, 320, pattern=patterns.GPT2, special_tokens=["<|endoftext|>"])
    bpe_io.save_hf(tok, tmp_path / "tokenizer.json")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for s in [CORPUS[:200], "The  cat's 1234 ünï 🙂\n\n x", "<|endoftext|>the"]:
        assert hf.encode(s).ids == tok.encode(s, allowed_special="all")
        assert hf.decode(tok.encode(s, allowed_special="all"), skip_special_tokens=False) == s
    again = bpe_io.load_hf(BPETokenizer, tmp_path / "tokenizer.json")
    assert again.merges == tok.merges and again.pattern == tok.pattern
