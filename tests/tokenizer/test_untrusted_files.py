"""Tokenizer files from elsewhere (hardening, items 5-6): regexes with catastrophic backtracking are
rejected, gzip expansion is bounded, tiktoken ranks stay in the C kernel's range, very long tokens
load in linear time, and SentencePiece models cut short, with unknown piece types or NaN scores are
errors, as in the libraries that define the formats."""
import base64
import gzip
import math
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.tokenizer import BPETokenizer, UnigramTokenizer, bpe_io, patterns
from minillm.tokenizer.sentencepiece_model import parse_message

CATASTROPHIC = r"(\w|\w\w)+$|\s"          # the example: seconds on 30 characters


def _ranks_file(path, ranks, gz=False):
    raw = "".join(f"{base64.b64encode(b).decode()} {r}\n" for b, r in ranks.items()).encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


BYTES = {bytes([x]): x for x in range(256)}


def test_catastrophic_pattern_is_rejected_at_load():
    with pytest.raises(ValueError, match="backtracks catastrophically"):
        BPETokenizer.from_tiktoken(BYTES, CATASTROPHIC)
    with pytest.raises(ValueError, match="backtracks catastrophically"):
        patterns.resolve(r"(?:\w+\s?)+$")                            # nested, quadratic-to-exponential
    for name in patterns.NAMES:                                      # what real tokenizers use passes
        assert patterns.resolve(name)
    tok = BPETokenizer.from_tiktoken(BYTES, r"\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+")
    assert tok.decode(tok.encode("héllo 12, world!")) == "héllo 12, world!"


def test_minillm_bpe_file_with_a_catastrophic_pattern_is_rejected(tmp_path):
    tok = BPETokenizer.from_tiktoken(BYTES, "gpt2")
    tok.save(tmp_path / "t.bpe")
    text = (tmp_path / "t.bpe").read_text()
    body = text[:text.rindex("sha256 ")].replace(f"pattern {bpe_io.json.dumps(patterns.GPT2)}",
                                                   f"pattern {bpe_io.json.dumps(CATASTROPHIC)}")
    digest = bpe_io.hashlib.sha256(body.encode()).hexdigest()    # a consistent, hostile file
    (tmp_path / "t.bpe").write_text(body + f"sha256 {digest}\n")
    with pytest.raises(ValueError, match="backtracks catastrophically"):
        BPETokenizer.load(tmp_path / "t.bpe")


def test_gzip_expansion_is_bounded(tmp_path):
    p = tmp_path / "bomb.tiktoken"
    p.write_bytes(gzip.compress(b"\n" * 100_000))
    with pytest.raises(ValueError, match="decompresses to more than 1000 bytes"):
        bpe_io._read_bytes(p, "path", limit=1000)
    assert bpe_io._read_bytes(p, "path") == b"\n" * 100_000
    p.write_bytes(gzip.compress(b"abc") + gzip.compress(b"def"))        # two members, as gzip.decompress
    assert bpe_io._read_bytes(p, "path") == b"abcdef"
    p.write_bytes(gzip.compress(b"abc" * 1000)[:-30])
    with pytest.raises(ValueError, match="truncated gzip data|corrupt gzip data"):
        bpe_io._read_bytes(p, "path")
    assert bpe_io.MAX_DECOMPRESSED < 2**30


@pytest.mark.parametrize("rank", [-1, 2**31 - 1, 2**31, 2**64])
def test_tiktoken_ranks_outside_the_kernel_range_are_errors(tmp_path, rank):
    ranks = {**BYTES, b"ab": rank}
    with pytest.raises(ValueError, match=r"rank .* outside \[0, 2147483647\)|ranks in \[0, 2147483647\)"):
        BPETokenizer.from_tiktoken(_ranks_file(tmp_path / "r.tiktoken", ranks), "gpt2")
    with pytest.raises(ValueError, match="ranks in"):
        BPETokenizer.from_tiktoken(ranks, "gpt2")


@settings(max_examples=30, deadline=None)
@given(tokens=st.lists(st.binary(min_size=2, max_size=12), max_size=30, unique=True))
def test_tiktoken_merge_table_equals_every_split(tokens):
    """The length-indexed split search finds exactly the pairs the plain O(len^2) loop finds."""
    ranks = dict(BYTES)
    for t in tokens:
        ranks.setdefault(t, len(ranks))
    want = {}
    for t, r in ranks.items():
        for k in range(1, len(t)):
            x, y = ranks.get(t[:k]), ranks.get(t[k:])
            if x is not None and y is not None:
                want[(x, y)] = (r, r)
    assert BPETokenizer.from_tiktoken(ranks, "gpt2").merges == want


def test_a_one_megabyte_token_loads(tmp_path):
    """The old split loop was quadratic in a token's length (400 KB: > 20 s, 1 MB: minutes); run in
    a subprocess whose timeout turns such a hang into a failure."""
    script = textwrap.dedent(f"""
        from minillm.tokenizer import BPETokenizer
        ranks = {{bytes([x]): x for x in range(256)}}
        ranks[b"ab" * 500_000] = 256
        tok = BPETokenizer.from_tiktoken(ranks, "gpt2")
        print(len(tok.vocab))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["257"], r.stderr[-1000:]


# ------------------------------------------------------------------------------ SentencePiece
def _field(number, wire, payload):
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def _piece(text, score, kind):
    return _field(1, 2, text.encode()) + _field(2, 5, struct.pack("<f", score)) + _field(3, 0, bytes([kind]))


def _model(pieces, trainer=True, normalizer=True):
    """A ModelProto: pieces, then trainer_spec (unigram) and normalizer_spec, as spm_train orders them."""
    out = b"".join(_field(1, 2, _piece(*p)) for p in pieces)
    if trainer:
        out += _field(2, 2, _field(3, 0, b"\x01"))
    if normalizer:
        out += _field(3, 2, _field(3, 0, b"\x01"))
    return out


PIECES = [("<unk>", 0.0, 2), ("a", -1.0, 1), ("b", -2.0, 1), ("ab", -1.5, 1)]


def test_sentencepiece_model_checks(tmp_path):
    p = tmp_path / "m.model"
    p.write_bytes(_model(PIECES))
    tok = UnigramTokenizer.load(p)
    assert tok.encode("abab")[-2:] == [3, 3]                    # after the unknown dummy-prefix "▁"
    assert len(parse_message(_model(PIECES))[1]) == 4
    blob = _model(PIECES)
    cut = blob[:len(b"".join(_field(1, 2, _piece(*x)) for x in PIECES[:3]))]     # at a record boundary
    p.write_bytes(cut)
    with pytest.raises(ValueError, match="m.model: .*truncated"):
        UnigramTokenizer.load(p)
    p.write_bytes(_model(PIECES, normalizer=False))
    with pytest.raises(ValueError, match="truncated"):
        UnigramTokenizer.load(p)
    for bad, match in ((("x", -1.0, 0), "type 0"), (("x", -1.0, 7), "type 7"),
                       (("x", math.nan, 1), "score nan"), (("x", -math.inf, 1), "score -inf")):
        p.write_bytes(_model(PIECES + [bad]))
        with pytest.raises(ValueError, match=match):
            UnigramTokenizer.load(p)


@pytest.mark.parametrize("edit", [lambda d: d.update(added_tokens=7), lambda d: d["model"].update(vocab=[1]),
                                  lambda d: d["added_tokens"][0].pop("content")], ids=["int", "list", "missing"])
def test_tokenizer_json_of_the_wrong_shape_is_one_error(tmp_path, edit):
    """Found by the fuzz suite: tokenizer_from_hf raised TypeError/KeyError/AttributeError."""
    from minillm.tokenizer.hf_tokenizer import tokenizer_from_hf
    bpe_io.save_hf(BPETokenizer.train("hello world " * 20, 260), tmp_path / "tokenizer.json")
    doc = bpe_io.json.loads((tmp_path / "tokenizer.json").read_text())
    doc["added_tokens"] = [{"id": 300, "content": "<|x|>", "special": True}]
    edit(doc)
    (tmp_path / "tokenizer.json").write_text(bpe_io.json.dumps(doc))
    with pytest.raises(ValueError, match="tokenizer.json: malformed tokenizer.json"):
        tokenizer_from_hf(tmp_path)
