"""Unigram LM tokenizer: round trips, Viterbi vs n-best vs sampling, save/load, bad input, and
parity with the sentencepiece library on models it trains (Unigram and BPE, byte fallback)."""
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.tokenizer import UnigramTokenizer
from minillm.tokenizer import sentencepiece_model
from minillm.tokenizer.unigram import BYTE

CORPUS = ("The quick brown fox jumps over the lazy dog. It's 2024; the dog's 3 friends aren't here!\n"
          "def f(x):\n    return x ** 2  # squares the number 12345\n\n"
          "Tokenizers cut text into pieces; a unigram model scores every piece.\n") * 30
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@pytest.fixture(scope="module")
def uni():
    return UnigramTokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])


@settings(max_examples=150, deadline=None)
@given(s=ANY_TEXT)
def test_round_trip_any_unicode(uni, s):
    assert uni.decode(uni.encode(s)) == s


def test_learned_pieces_are_corpus_substrings(uni):
    learned = [p for p, _, t in uni.pieces if t == 1]
    assert all(p in CORPUS for p in learned)
    assert any(len(p) > 3 for p in learned)  # EM found multi-character pieces
    assert 300 < len(uni) <= 400  # a tiny repetitive corpus may support fewer pieces than asked


def test_split_digits_and_coverage():
    tok = UnigramTokenizer.train(CORPUS + "\u00e9" * 1, 350, split_digits=True, character_coverage=0.999)
    pieces = [p for p, _, t in tok.pieces if t == 1]
    assert not any(len(p) > 1 and any(c.isdigit() for c in p) for p in pieces)
    assert "\u00e9" not in pieces  # too rare for the coverage: byte fallback
    ids = tok.encode("\u00e9 2024")
    assert tok.decode(ids) == "\u00e9 2024" and tok.pieces[ids[0]][2] == BYTE


def _path_score(tok, ids):
    return sum(tok.pieces[i][1] for i in ids)


def test_viterbi_is_the_best_of_nbest(uni):
    s = "the lazy fox returns"
    best = uni.nbest(s, 5)
    assert best[0][0] == uni.encode(s)
    scores = [sc for _, sc in best]
    assert scores == sorted(scores, reverse=True) and len({tuple(i) for i, _ in best}) == len(best)
    for ids, sc in best:
        assert uni.decode(ids) == s
        assert math.isclose(_path_score(uni, ids), sc, rel_tol=1e-9)


def test_sample_encode_distribution(uni):
    # alpha = 0 (uniform over segmentations) must give several; large alpha -> the Viterbi path
    s = "Tokenizers, the lazy dog"
    rng = np.random.default_rng(0)
    seen = {tuple(uni.sample_encode(s, alpha=0.0, rng=rng)) for _ in range(50)}
    assert len(seen) > 5 and all(uni.decode(list(x)) == s for x in seen)
    assert uni.sample_encode(s, alpha=50.0, rng=rng) == uni.encode(s)


def test_save_load(tmp_path, uni):
    uni.save(tmp_path / "u.model")
    again = UnigramTokenizer.load(tmp_path / "u.model")
    assert again.pieces == uni.pieces
    s = CORPUS[:300] + "<|endoftext|>"
    assert again.encode(s, allowed_special="all") == uni.encode(s, allowed_special="all")
    data = (tmp_path / "u.model").read_bytes()
    (tmp_path / "cut.model").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        UnigramTokenizer.load(tmp_path / "cut.model")
    (tmp_path / "junk.model").write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        UnigramTokenizer.load(tmp_path / "junk.model")


def test_special_tokens(uni):
    eot = uni.special_tokens["<|endoftext|>"]
    ids = uni.encode("a<|endoftext|>b", allowed_special={"<|endoftext|>"})
    assert eot in ids and uni.decode(ids) == "a<|endoftext|>b"
    assert eot not in uni.encode("a<|endoftext|>b")
    with pytest.raises(ValueError, match="not special tokens"):
        uni.encode("x", allowed_special={"<nope>"})


def test_bad_input():
    with pytest.raises(ValueError, match="vocab_size: must be >"):
        UnigramTokenizer.train(CORPUS, 259)
    with pytest.raises(TypeError, match="text_or_iterator"):
        UnigramTokenizer.train(42, 400)
    tok = UnigramTokenizer.train(CORPUS, 330)
    with pytest.raises(TypeError, match="text: expected str"):
        tok.encode(None)
    with pytest.raises(ValueError, match="not a token id"):
        tok.decode([10**6])


def test_protobuf_reader_rejects_truncation():
    with pytest.raises(ValueError, match="runs past the end|truncated"):
        sentencepiece_model.parse_message(b"\x0a\x10abc")


@pytest.mark.parametrize("data, match", [
    (b"\x08\x05\x12\x00\x1a\x00", r"field 1 \(a piece\): expected a sub-message, got a varint"),   # pieces as a varint
    (b"\x0a\x02\x08\x05\x12\x00\x1a\x00", r"field 1: expected bytes, got a varint"),   # piece string as a varint
    (b"\x0a\x00\x10\x07\x1a\x00", r"field 2: expected bytes, got a varint"),        # trainer_spec as a varint
    (b"\x0a\x00\x12\x02\x1a\x00\x1a\x00", r"field 3: expected a varint, got bytes"),  # model_type as bytes
])
def test_protobuf_fields_of_the_wrong_wire_type_are_value_errors(data, match):
    """A record whose wire type does not fit its field (a mutated file) is a ValueError naming the
    field, which load() reports as not a model, never a TypeError from where the value is used."""
    with pytest.raises(ValueError, match=match):
        sentencepiece_model.parse_model(data)


# ---------------------------------------------------------------------------- sentencepiece parity
spm = None


def _sp_models():
    global spm
    spm = pytest.importorskip("sentencepiece")
    models = {}
    for model_type in ("unigram", "bpe"):
        for rule in ("identity", "nmt_nfkc"):
            buf = io.BytesIO()
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(CORPUS.splitlines()), model_writer=buf, vocab_size=420, hard_vocab_limit=False,
                model_type=model_type, byte_fallback=True, normalization_rule_name=rule, minloglevel=2,
                num_threads=1)
            models[(model_type, rule)] = buf.getvalue()
    return models


@pytest.fixture(scope="module")
def sp_pairs():
    return {key: (spm.SentencePieceProcessor(model_proto=blob), UnigramTokenizer.load(_write(key, blob)))
            for key, blob in _sp_models().items()}


def _write(key, blob, _dir=[]):
    import tempfile
    if not _dir:
        _dir.append(tempfile.mkdtemp())
    path = f"{_dir[0]}/{key[0]}_{key[1]}.model"
    with open(path, "wb") as f:
        f.write(blob)
    return path


FRAGMENTS = ["  ", " ", "\u2581", "\t", "\n", "the", "The", " dog", "12345", "\ufb01", "\u2460", "\uff28", "e\u0301",
             "中文", "🙂", "x", "'s", "!!", "quick"]
TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), ANY_TEXT), max_size=8).map("".join)


@settings(max_examples=200, deadline=None)
@given(s=TEXT, key=st.sampled_from([("unigram", "identity"), ("unigram", "nmt_nfkc"), ("bpe", "identity"),
                                     ("bpe", "nmt_nfkc")]))
def test_sentencepiece_parity(sp_pairs, s, key):
    sp, ours = sp_pairs[key]
    assert ours.encode(s) == sp.encode(s)
    if key[1] == "identity":
        assert ours.decode(sp.encode(s)) == sp.decode(sp.encode(s))
