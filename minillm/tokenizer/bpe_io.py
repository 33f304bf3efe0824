"""BPE files: minillm's own text format, tiktoken `.tiktoken` ranks, GPT-2 `vocab.json` + `merges.txt`,
and the BPE subset of Hugging Face `tokenizer.json`.

minillm format (UTF-8 text, one record a line, written atomically):

    minillm-bpe 1
    mode merges                  # or "ranks": tiktoken-style, merges derived from the tokens
    pattern "<regex as a JSON string>"
    special 1
    "<|endoftext|>" 50256        # JSON string, id
    tokens 50256
    0 21                         # id, bytes in hex (every ordinary token, bytes first)
    ...
    merges 49999                 # mode merges only: left right merged, in rank order
    32 116 256
    ...
    sha256 <hex digest of all the lines above>

The digest makes a truncated or edited file fail loudly at load time.

GPT-2 files spell bytes as printable characters (bytes_to_unicode: printable Latin-1 bytes map to
themselves, the other 68 bytes to U+0100...), so "Ġthe" is b" the".
"""
import base64
import hashlib
import json
import os
import zlib

from ..io.atomic import write_bytes_atomic
from ..io.jsonl import parse_json
from . import patterns

MAGIC = "minillm-bpe 1"
MAX_DECOMPRESSED = 1 << 28   # bytes a gzip'ed tokenizer file may expand to (o200k's ranks: 3.6 MB)
NONE_RANK = 2**31 - 1        # csrc/bpe.c's "no merge" rank: a real rank must stay below it


def _read_bytes(path, what, limit=MAX_DECOMPRESSED):
    """The file's bytes, gunzipped when it starts with gzip's magic; at most `limit` bytes after
    decompression (a few KB of gzip can expand to gigabytes), else a ValueError."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"{what}: expected a path, got {type(path).__name__}")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    out, size = [], 0
    try:
        while data:                            # one decompressor per gzip member, as gzip.decompress
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(data, limit - size + 1)
            out.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{path}: decompresses to more than {limit} bytes; refusing to expand it")
            if not d.eof:
                raise ValueError(f"{path}: truncated gzip data")
            data = d.unused_data.lstrip(b"\0")
            if data[:2] != b"\x1f\x8b":
                break                          # trailing garbage after the last member: ignored, as gzip does
    except zlib.error as e:
        raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    return b"".join(out)


# ------------------------------------------------------------------------------ minillm format
def save(tok, path):
    mode = "ranks" if tok.whole_pieces else "merges"
    lines = [MAGIC, f"mode {mode}", f"pattern {json.dumps(tok.pattern)}", f"special {len(tok.special_tokens)}"]
    lines += [f"{json.dumps(s)} {i}" for s, i in tok.special_tokens.items()]
    order = sorted(tok.vocab, key=lambda i: (len(tok.vocab[i]) > 1, i))  # bytes first
    lines.append(f"tokens {len(order)}")
    lines += [f"{i} {tok.vocab[i].hex()}" for i in order]
    if mode == "merges":
        ranked = sorted(tok.merges.items(), key=lambda kv: kv[1][0])
        lines.append(f"merges {len(ranked)}")
        lines += [f"{a} {b} {c}" for (a, b), (_, c) in ranked]
    body = "\n".join(lines) + "\n"
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    write_bytes_atomic(path, (body + f"sha256 {digest}\n").encode("utf-8"))


def load(cls, path):
    data = _read_bytes(path, "path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a minillm BPE file (not UTF-8)") from None
    body, sep, tail = text.rpartition("sha256 ")
    if not text.startswith(MAGIC + "\n"):
        raise ValueError(f"{path}: not a minillm BPE file (expected first line {MAGIC!r})")
    if not sep or hashlib.sha256(body.encode("utf-8")).hexdigest() != tail.strip():
        raise ValueError(f"{path}: corrupt or truncated minillm BPE file (sha256 mismatch)")
    lines = body.splitlines()[1:]
    pos = 0

    def field(name):
        nonlocal pos
        key, _, value = lines[pos].partition(" ")
        if key != name:
            raise ValueError(f"{path}: line {pos + 2}: expected {name!r}, got {key!r}")
        pos += 1
        return value

    try:
        mode = field("mode")
        pattern = json.loads(field("pattern"))
        special = {}
        for _ in range(int(field("special"))):
            s, i = lines[pos].rsplit(" ", 1)
            special[json.loads(s)] = int(i)
            pos += 1
        vocab = {}
        for _ in range(int(field("tokens"))):
            i, h = lines[pos].split(" ")
            vocab[int(i)] = bytes.fromhex(h)
            pos += 1
        if mode == "ranks":
            return from_tiktoken(cls, {b: i for i, b in vocab.items()}, pattern, special)
        merges = {}
        for k in range(int(field("merges"))):
            a, b, c = map(int, lines[pos].split(" "))
            merges[(a, b)] = (k, c)
            pos += 1
    except (IndexError, ValueError, RecursionError) as e:
        raise ValueError(f"{path}: malformed minillm BPE file near line {pos + 2}: {e}") from None
    by_bytes = {b: i for i, b in vocab.items()}
    byte_ids = [by_bytes.get(bytes([x]), -1) for x in range(256)]
    return cls(merges, vocab, pattern, special, byte_ids=byte_ids)


# ------------------------------------------------------------------------------ tiktoken
def read_tiktoken_ranks(path):
    """{bytes: rank} from a .tiktoken file: one "<base64 token> <rank>" per line, plain or gzip."""
    data = _read_bytes(path, "path_or_ranks")
    ranks = {}
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError("expected '<base64> <rank>'")
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except ValueError as e:
            raise ValueError(f"{path}: line {n} is not a .tiktoken record ({e}): {line[:60]!r}") from None
        if token in ranks:
            raise ValueError(f"{path}: line {n}: token {token!r} appears twice")
        if not 0 <= rank < NONE_RANK:
            raise ValueError(f"{path}: line {n}: rank {rank} is outside [0, {NONE_RANK})")
        ranks[token] = rank
    if not ranks:
        raise ValueError(f"{path}: no .tiktoken records found")
    return ranks


def from_tiktoken(cls, path_or_ranks, pattern, special_tokens=None):
    ranks = path_or_ranks if isinstance(path_or_ranks, dict) else read_tiktoken_ranks(path_or_ranks)
    for b, r in ranks.items():
        if not isinstance(b, bytes) or isinstance(r, bool) or not isinstance(r, int):
            raise TypeError(f"path_or_ranks: expected {{bytes: int}}, found {b!r}: {r!r}")
        if not 0 <= r < NONE_RANK or not b:
            raise ValueError(f"path_or_ranks: expected non-empty tokens with ranks in [0, {NONE_RANK}), "
                             f"found {b[:20]!r}: {r}")
    missing = [x for x in range(256) if bytes([x]) not in ranks]
    if missing:
        raise ValueError(f"path_or_ranks: byte-level BPE needs all 256 single bytes; missing {missing[:8]}...")
    if len(set(ranks.values())) != len(ranks):
        raise ValueError("path_or_ranks: two tokens share a rank")
    # tiktoken merges any adjacent pair whose concatenation is a token, at that token's rank: enter
    # every split (x, y) of every token, so the pair table answers exactly tiktoken's question.
    # subtle: a split point k needs a token of length k and one of length len(t) - k, so only the
    # lengths that occur are tried: trying every k costs O(len(t)^2) (one 400 KB token: minutes)
    merges = {}
    lengths = sorted({len(t) for t in ranks})
    have = set(lengths)
    for t, r in ranks.items():
        L = len(t)
        for k in lengths:
            if k >= L:
                break
            if L - k in have:
                x, y = ranks.get(t[:k]), ranks.get(t[k:])
                if x is not None and y is not None:
                    merges[(x, y)] = (r, r)
    vocab = {r: b for b, r in ranks.items()}
    byte_ids = [ranks[bytes([x])] for x in range(256)]
    return cls(merges, vocab, pattern, special_tokens, byte_ids=byte_ids, whole_pieces=True)


def write_tiktoken(tok, path):
    """A .tiktoken rank file of the ordinary tokens (ranks = ids)."""
    lines = [f"{base64.b64encode(b).decode('ascii')} {i}" for i, b in sorted(tok.vocab.items())]
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("ascii"))


# ------------------------------------------------------------------------------ GPT-2 / HF
def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (encoder.py, Radford et al. 2019)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)  # unprintable bytes get the code points after Latin-1
            extra += 1
    return chars


BYTE_TO_UNICODE = bytes_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}


def to_gpt2(b):
    """Token bytes -> GPT-2's printable spelling (b" the" -> "Ġthe")."""
    return "".join(BYTE_TO_UNICODE[x] for x in b)


def from_gpt2(s, where):
    """Inverse of to_gpt2; `where` names the source in the error for a character outside the alphabet."""
    try:
        return bytes(UNICODE_TO_BYTE[c] for c in s)
    except KeyError as e:
        raise ValueError(f"{where}: {s!r} has a character outside GPT-2's byte alphabet: {e}") from None


def from_vocab_and_merges(cls, vocab_str, merge_lines, pattern, special_tokens, where):
    """vocab_str {gpt2 string: id}; merge_lines ["a b" or (a, b)] in rank order -> a merges-mode
    BPETokenizer (`cls`). Entries of vocab_str named in special_tokens are special, not byte tokens.
    Used for GPT-2 files, tokenizer.json and GGUF's "gpt2" vocabularies."""
    special_tokens = dict(special_tokens or {})
    vocab = {}
    for s, i in vocab_str.items():
        if s in special_tokens:
            continue
        vocab[int(i)] = from_gpt2(s, where)
    by_bytes = {b: i for i, b in vocab.items()}
    merges = {}
    for k, m in enumerate(merge_lines):
        left, right = m.split(" ") if isinstance(m, str) else m
        a, b = by_bytes.get(from_gpt2(left, where)), by_bytes.get(from_gpt2(right, where))
        c = by_bytes.get(from_gpt2(left, where) + from_gpt2(right, where))
        if a is None or b is None or c is None:
            raise ValueError(f"{where}: merge {k} {m!r} uses a token missing from the vocabulary")
        merges.setdefault((a, b), (k, c))
    byte_ids = [by_bytes.get(bytes([x]), -1) for x in range(256)]
    return cls(merges, vocab, pattern, special_tokens, byte_ids=byte_ids)


def save_gpt2(tok, vocab_path, merges_path):
    """GPT-2 style encoder.json/vocab.json ({string: id}, specials included) and merges.txt."""
    if tok.whole_pieces:
        raise ValueError("save_gpt2: this tokenizer has tiktoken ranks, not a merge list")
    vocab = {to_gpt2(b): i for i, b in sorted(tok.vocab.items())}
    vocab.update(tok.special_tokens)
    lines = ["#version: 0.2"] + [f"{to_gpt2(tok.vocab[a])} {to_gpt2(tok.vocab[b])}" for a, b in tok.merge_list()]
    write_bytes_atomic(vocab_path, json.dumps(vocab, ensure_ascii=False).encode("utf-8"))
    write_bytes_atomic(merges_path, ("\n".join(lines) + "\n").encode("utf-8"))


def load_gpt2(cls, vocab_path, merges_path, pattern=patterns.GPT2, special_tokens=None):
    vocab = parse_json(_read_bytes(vocab_path, "vocab_path"), f"{vocab_path}: vocabulary", dict)
    lines = _read_bytes(merges_path, "merges_path").decode("utf-8").splitlines()
    lines = [ln for ln in lines if ln and not ln.startswith("#version")]
    if special_tokens is None:  # GPT-2 keeps <|endoftext|> in vocab.json
        special_tokens = {s: i for s, i in vocab.items() if s.startswith("<|") and s.endswith("|>")}
    return from_vocab_and_merges(cls, vocab, lines, pattern, special_tokens, str(merges_path))


def save_hf(tok, path):
    """A Hugging Face tokenizer.json: ByteLevel pre-tokenizer/decoder, BPE model, added special tokens."""
    if tok.whole_pieces:
        raise ValueError("save_hf: this tokenizer has tiktoken ranks, not a merge list")
    vocab = {to_gpt2(b): i for i, b in sorted(tok.vocab.items())}
    merges = [[to_gpt2(tok.vocab[a]), to_gpt2(tok.vocab[b])] for a, b in tok.merge_list()]
    doc = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for s, i in tok.special_tokens.items()],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }
    write_bytes_atomic(path, json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))


def load_hf(cls, path, pattern=None):
    """The BPE subset of tokenizer.json: a byte-level BPE model; the Split regex becomes the pattern
    (GPT-2's if the pre-tokenizer is a bare ByteLevel with use_regex)."""
    doc = parse_json(_read_bytes(path, "path"), f"{path}: tokenizer.json", dict)
    model = doc.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"{path}: not a tokenizer.json (no 'model' object)")
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: model type {model.get('type')!r} is not BPE")
    if pattern is None:
        pattern = _hf_pattern(doc.get("pre_tokenizer"), path)
    special = {t["content"]: t["id"] for t in doc.get("added_tokens", [])}
    return from_vocab_and_merges(cls, model["vocab"], model["merges"], pattern, special, str(path))


def _hf_pattern(pre, path):
    found = []

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("type") == "Split" and "Regex" in node.get("pattern", {}):
            found.append(node["pattern"]["Regex"])
        elif node.get("type") == "ByteLevel" and node.get("use_regex", True):
            found.append(patterns.GPT2)
        for child in node.get("pretokenizers", []):
            walk(child)

    walk(pre)
    if len(found) != 1:
        raise ValueError(f"{path}: expected one regex pre-tokenizer, found {len(found)}; pass pattern=")
    return found[0]
