"""Byte-level BPE: round trips, trainer agreement (reference == incremental == C), C vs Python
encode paths, special-token rules, offsets, streaming, files and bad input."""
import bisect
import itertools
import random

import pytest
from hypothesis import given, settings, strategies as st

from minillm.tokenizer import BPETokenizer, _native_bpe, bpe_train, patterns
from minillm.tokenizer.bpe import count_pieces

needs_native = pytest.mark.skipif(not _native_bpe.available(), reason="C extension not built")

CORPUS = ("The quick brown fox jumps over the lazy dog. It's 2024; the dog's 3 friends aren't here!\n"
          "def f(x):\n    return x ** 2  # squares\n\n") * 20

# Text without lone surrogates (they have no UTF-8 form), from all of Unicode.
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])


def test_minbpe_example():
    # "aaabdaaabac": (a,a)->256; then (256,a) and (a,b) both count 2 and the smaller pair (a,b)
    # wins the tie -> 257; then (256,257) -> 258
    tok = BPETokenizer.train("aaabdaaabac", 256 + 3, pattern=patterns.GPT2, method="reference")
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.merge_list() == [(97, 97), (97, 98), (256, 257)]


@settings(max_examples=200, deadline=None)
@given(s=ANY_TEXT)
def test_round_trip_any_unicode(trained, s):
    # the corpus is ASCII: everything else must fall back to byte tokens and still round-trip
    ids = trained.encode(s)
    assert trained.decode(ids) == s
    assert trained.decode_bytes(ids) == s.encode("utf-8")
    assert trained.encode_ordinary_reference(s) == ids


def _random_words(seed):
    rng = random.Random(seed)
    alphabet = rng.choice([b"ab", b"abc", b"abcd", b"xyz "])  # small alphabets make count ties common
    return {tuple(rng.choice(alphabet) for _ in range(rng.randint(1, 9))): rng.randint(1, 5)
            for _ in range(rng.randint(1, 40))}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_merges=st.integers(0, 40))
def test_trainers_agree(seed, n_merges):
    words = _random_words(seed)
    ref = bpe_train.train_reference(words, n_merges)
    assert bpe_train.train_incremental(words, n_merges) == ref
    if _native_bpe.available():
        assert _native_bpe.train_native(words, n_merges, chunk=7) == ref


def test_trainers_agree_on_text():
    words = count_pieces(CORPUS + "aaaa aaaaa ababab", patterns.CL100K)
    ref = bpe_train.train_reference(words, 120)
    assert bpe_train.train_incremental(words, 120) == ref
    if _native_bpe.available():
        assert _native_bpe.train_native(words, 120) == ref


def test_tie_break_is_smallest_pair():
    words = {tuple(b"cd"): 2, tuple(b"ab"): 2, tuple(b"xy"): 1}
    for train in (bpe_train.train_reference, bpe_train.train_incremental):
        assert train(words, 3) == [(97, 98, 2), (99, 100, 2), (120, 121, 1)]


def test_train_runs_out_of_pairs():
    tok = BPETokenizer.train("ab ab", 1000, special_tokens=["<s>"])
    assert len(tok.merges) == 2  # (a, b) and (" ", ab): nothing more to merge
    assert tok.special_tokens == {"<s>": 258}


@needs_native
@settings(max_examples=150, deadline=None)
@given(s=ANY_TEXT, which=st.sampled_from(sorted(patterns.BUILTIN)))
def test_native_split_matches_regex(s, which):
    b = s.encode("utf-8")
    ends = _native_bpe.split(b, patterns.BUILTIN[which]).tolist()
    pieces = [b[i:j].decode("utf-8") for i, j in zip([0] + ends, ends)]
    assert pieces == patterns.split_reference(s, which)


TRICKY = ["'s", "'S", "'ll", "'LL", "\u017f", "'\u017f", "  ", "\n", "\r\n", " \n ", "\t", "123", "4567",
          "ab", "AB", "Ab", "aB", "\u0301", "\u02b0", "\u01c5", "x", " ", "!", "?!", "/", "//", "\u00a0",
          "\u3000", "中", "🙂", "\u2028", "٣", "Ⅻ", "_", "'"]


@needs_native
@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.sampled_from(TRICKY), max_size=12), which=st.sampled_from(sorted(patterns.BUILTIN)))
def test_native_split_matches_regex_tricky(parts, which):
    s = "".join(parts)
    b = s.encode("utf-8")
    ends = _native_bpe.split(b, patterns.BUILTIN[which]).tolist()
    assert [b[i:j].decode() for i, j in zip([0] + ends, ends)] == patterns.split_reference(s, which)


@needs_native
@settings(max_examples=100, deadline=None)
@given(s=ANY_TEXT)
def test_native_merge_matches_reference(trained, s):
    b = s.encode("utf-8")
    assert trained._native.merge(b) == trained._merge_reference(b)


@needs_native
def test_native_long_piece_uses_heap_path(trained):
    piece = ("the dog " * 200).replace(" ", "").encode()  # one 1200-byte piece: heap-based merge loop
    assert trained._native.merge(piece) == trained._merge_reference(piece)


def test_custom_pattern_goes_through_regex():
    tok = BPETokenizer.train(CORPUS, 300, pattern=r"\w+|\s+|[^\w\s]+")
    s = "foo bar, baz! " * 3
    assert tok.encode(s) == tok.encode_ordinary_reference(s)
    assert tok.decode(tok.encode(s)) == s


def test_special_tokens_follow_tiktoken_rules(trained):
    eot = trained.special_tokens["<|endoftext|>"]
    s = "hi<|endoftext|>there"
    with pytest.raises(ValueError, match="special token"):
        trained.encode(s)
    assert trained.encode(s, allowed_special="all") == trained.encode("hi") + [eot] + trained.encode("there")
    assert trained.encode(s, allowed_special={"<|endoftext|>"}) == trained.encode(s, allowed_special="all")
    plain = trained.encode(s, disallowed_special=())
    assert eot not in plain and trained.decode(plain) == s
    with pytest.raises(ValueError, match="not special tokens"):
        trained.encode(s, allowed_special={"<|nope|>"})


@settings(max_examples=100, deadline=None)
@given(s=ANY_TEXT)
def test_offsets_and_per_token_bytes(trained, s):
    ids = trained.encode(s)
    text, offsets = trained.decode_with_offsets(ids)
    parts = trained.decode_tokens_bytes(ids)
    assert text == s and b"".join(parts) == s.encode()
    char_starts = list(itertools.accumulate((len(c.encode()) for c in s), initial=0))[:-1]
    byte_pos = list(itertools.accumulate(map(len, parts), initial=0))[:-1]
    # each token's offset is the character that contains its first byte
    assert offsets == [bisect.bisect_right(char_starts, p) - 1 for p in byte_pos]


@settings(max_examples=100, deadline=None)
@given(s=ANY_TEXT)
def test_stream_decoder_never_emits_partial_characters(trained, s):
    dec = trained.stream_decoder()
    out = []
    # special-token text is ordinary text here (hypothesis also tries the package's string constants)
    for i in trained.encode(s, disallowed_special=()):
        piece = dec.feed([i])
        assert "\ufffd" not in piece or "\ufffd" in s
        out.append(piece)
    out.append(dec.flush())
    assert "".join(out) == s


def test_invalid_utf8_decodes_with_replacement(trained):
    assert trained.decode([0xE4, 0xB8]) == "\ufffd"  # a truncated 3-byte character, like tiktoken
    assert trained.decode_bytes([0xE4, 0xB8]) == b"\xe4\xb8"


def test_save_load_round_trip(tmp_path, trained):
    path = tmp_path / "tok.bpe"
    trained.save(path)
    again = BPETokenizer.load(path)
    s = CORPUS[:200] + "<|endoftext|> ünïcödé"
    assert again.encode(s, allowed_special="all") == trained.encode(s, allowed_special="all")
    assert again.merges == trained.merges and again.special_tokens == trained.special_tokens
    assert again.pattern == trained.pattern


def test_corrupt_files_raise(tmp_path, trained):
    path = tmp_path / "tok.bpe"
    trained.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.bpe").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        BPETokenizer.load(tmp_path / "trunc.bpe")
    (tmp_path / "edit.bpe").write_bytes(data.replace(b"\n97 61\n", b"\n97 62\n"))
    with pytest.raises(ValueError, match="corrupt"):
        BPETokenizer.load(tmp_path / "edit.bpe")
    (tmp_path / "junk.bpe").write_bytes(b"\x00\xff garbage")
    with pytest.raises(ValueError, match="not a minillm BPE file"):
        BPETokenizer.load(tmp_path / "junk.bpe")


def test_bad_input_raises(trained):
    with pytest.raises(TypeError, match="text: expected str"):
        trained.encode(b"bytes")
    with pytest.raises(TypeError, match="text_or_iterator"):
        BPETokenizer.train(123, 300)
    with pytest.raises(TypeError, match="item 1"):
        BPETokenizer.train(["ok", 5], 300)
    with pytest.raises(ValueError, match="vocab_size: must be >= 256 \\+ 2"):
        BPETokenizer.train("abc", 257, special_tokens=["<a>", "<b>"])
    with pytest.raises(ValueError, match="not a token id"):
        trained.decode([10**9])
    with pytest.raises(ValueError, match="pattern"):
        BPETokenizer.train("abc", 300, pattern="(unclosed")


def test_lone_surrogates_become_replacement_characters(trained):
    assert trained.decode(trained.encode("a\ud800b")) == "a\ufffdb"


def test_pure_python_fallback_matches_native(monkeypatch, trained):
    # MINILLM_KERNELS=numpy is how the package runs without a compiler: every path in Python
    monkeypatch.setenv("MINILLM_KERNELS", "numpy")
    tok = BPETokenizer.train(CORPUS, 400, special_tokens=["<|endoftext|>"])
    assert tok._native is None
    assert tok.merges == trained.merges
    s = CORPUS[:500] + " ünï 🙂 <|endoftext|>"
    assert tok.encode(s, allowed_special="all") == trained.encode(s, allowed_special="all")


@needs_native
@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe4\xb8"])
def test_native_split_rejects_invalid_utf8(bad):
    # the C scanner indexes a 0x110000-entry table by code point: bad bytes must never reach it
    with pytest.raises(ValueError, match="not valid UTF-8"):
        _native_bpe.split(b"ok " + bad, patterns.BUILTIN[patterns.CL100K])
