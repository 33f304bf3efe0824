"""The tokenizer stored in a GGUF file's metadata (ggml docs/gguf.md, "tokenizer.ggml.*") -> a
PretrainedTokenizer, read the way llama.cpp's llama_vocab::load reads it.

    tokenizer.ggml.model        "gpt2": byte-level BPE; "llama": SentencePiece-style BPE
    tokenizer.ggml.pre          gpt2 only: the pre-tokenizer name (pretokenizers.py)
    tokenizer.ggml.tokens       every token's text (gpt2: GPT-2's byte-to-unicode spelling)
    tokenizer.ggml.token_type   1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    tokenizer.ggml.merges       gpt2: "left right" pairs in rank order
    tokenizer.ggml.scores       llama: one float per token, higher merges first
    tokenizer.ggml.{bos,eos,eot,unknown}_token_id, add_bos_token, add_eos_token, add_space_prefix
    tokenizer.chat_template     the Jinja chat template

Input is the metadata dict of minillm.io's GGUF reader; `where` names the file in errors.
"""
from . import bpe_io, pretokenizers, spm_bpe
from .bpe import BPETokenizer
from .pretrained import ByteLevelCore, PretrainedTokenizer, SentencePieceCore
from .spm_bpe import SentencePieceBPE

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_U2B = {c: b for b, c in bpe_io.bytes_to_unicode().items()}


def tokenizer_from_gguf(meta, where="gguf"):
    """PretrainedTokenizer of the metadata, None for a file without vocabulary ("no_vocab"), or a
    ValueError naming the key for a kind minillm does not read."""
    model = meta.get("tokenizer.ggml.model")
    if model in (None, "no_vocab", "none"):
        return None
    if model not in ("gpt2", "llama"):
        raise ValueError(f"{where}: tokenizer.ggml.model {model!r} is not supported (expected 'gpt2' or 'llama')")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise ValueError(f"{where}: tokenizer.ggml.tokens is missing or empty")
    types = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise ValueError(f"{where}: tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens")
    control = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (CONTROL, UNKNOWN)}
    user = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == USER_DEFINED}
    build = _byte_level if model == "gpt2" else _sentencepiece
    core, token_bytes, defaults = build(meta, tokens, types, where)
    ids = {k: _token_id(meta, k, len(tokens), where) for k in ("bos", "eos", "eot", "unknown")}
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", defaults["add_bos"]))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    return PretrainedTokenizer(core, token_bytes, control, user, bos_token_id=ids["bos"],
                               eos_token_id=ids["eos"], add_bos=add_bos, add_eos=add_eos,
                               chat_template=meta.get("tokenizer.chat_template"), eot_token_id=ids["eot"],
                               unk_token_id=ids["unknown"], pre=defaults.get("pre"))


def _token_id(meta, name, n, where):
    i = meta.get(f"tokenizer.ggml.{name}_token_id")
    if i is None:
        return None
    if not 0 <= int(i) < n:
        raise ValueError(f"{where}: tokenizer.ggml.{name}_token_id {i} is outside the {n} tokens")
    return int(i)


def _gpt2_bytes(text, i, where):
    try:
        return bytes(_U2B[c] for c in text)
    except KeyError:
        raise ValueError(f"{where}: tokenizer.ggml.tokens[{i}] = {text!r} is not a byte-level BPE token") from None


def _byte_level(meta, tokens, types, where):
    """(ByteLevelCore, token bytes, defaults) of a "gpt2" vocabulary."""
    pre = meta.get("tokenizer.ggml.pre", "default")
    exprs = pretokenizers.resolve(pre)  # unknown name: ValueError naming it
    family = pretokenizers.family(pre)
    vocab, token_bytes = {}, []
    for i, (t, ty) in enumerate(zip(tokens, types)):
        if ty in (NORMAL, BYTE):
            vocab[i] = _gpt2_bytes(t, i, where)
            token_bytes.append(vocab[i])
        else:
            token_bytes.append(b"" if ty == UNUSED else t.encode("utf-8"))
    by_bytes = {}
    for i, b in vocab.items():
        by_bytes.setdefault(b, i)
    # bytes with no token get placeholder ids past the vocabulary, never emitted: ByteLevelCore
    # drops those bytes before merging
    missing = [x for x in range(256) if bytes([x]) not in by_bytes]
    for k, x in enumerate(missing):
        by_bytes[bytes([x])] = len(tokens) + k
        vocab[len(tokens) + k] = bytes([x])
    by_text = {}                                       # merges name tokens by their GPT-2 spelling
    for i, b in vocab.items():
        by_text.setdefault(tokens[i] if i < len(tokens) else bpe_io.to_gpt2(b), i)
    merges = {}
    for rank, line in enumerate(meta.get("tokenizer.ggml.merges") or []):
        k = line.find(" ", 1)                          # as llama.cpp splits it
        left, right = line[:k], line[k + 1:]
        a, b, c = by_text.get(left), by_text.get(right), by_text.get(left + right)
        if k <= 0 or a is None or b is None or c is None:
            raise ValueError(f"{where}: tokenizer.ggml.merges[{rank}] = {line!r} names a pair or result "
                             f"that is not a token")
        merges.setdefault((a, b), (rank, c))
    byte_ids = [by_bytes[bytes([x])] for x in range(256)]
    bpe = BPETokenizer(merges, vocab, pattern=exprs[-1], byte_ids=byte_ids,
                       whole_pieces=family in pretokenizers.IGNORE_MERGES)
    defaults = {"add_bos": family in pretokenizers.ADD_BOS, "pre": pre}
    return ByteLevelCore(bpe, exprs, missing), token_bytes, defaults


def _sentencepiece(meta, tokens, types, where):
    """(SentencePieceCore, token bytes, defaults) of a "llama" vocabulary."""
    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) < len(tokens):
        raise ValueError(f"{where}: tokenizer.ggml.scores is missing or shorter than the {len(tokens)} tokens")
    byte_ids, token_bytes, pieces = [-1] * 256, [], {}
    for i, (t, ty) in enumerate(zip(tokens, types)):
        pieces.setdefault(t, i)
        if ty == BYTE:
            try:
                b = int(t[3:5], 16)
                if t != spm_bpe.byte_token(b):
                    raise ValueError
            except ValueError:
                raise ValueError(f"{where}: byte token {i} is {t!r}, expected '<0xXX>'") from None
            byte_ids[b] = i
            token_bytes.append(bytes([b]))
        elif ty == NORMAL:
            token_bytes.append(t.replace(spm_bpe.SPACE, " ").encode("utf-8"))
        else:
            token_bytes.append(b"" if ty == UNUSED else t.encode("utf-8"))
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    spm = SentencePieceBPE(pieces, byte_ids, scores={i: float(s) for i, s in enumerate(scores[:len(tokens)])},
                           unk_id=None if unk is None else int(unk))
    core = SentencePieceCore(spm, meta.get("tokenizer.ggml.add_space_prefix", True))
    return core, token_bytes, {"add_bos": True}


# ------------------------------------------------------------------ writing
def _pre_name(tok):
    """The tokenizer.ggml.pre name of a byte-level tokenizer's regex sequence."""
    if isinstance(tok.pre, str):
        return tok.pre
    name = pretokenizers.name_of(tok.core.exprs)
    if name is None:
        raise ValueError("tokenizer: its pre-tokenizer regexes match no tokenizer.ggml.pre name llama.cpp knows")
    return name


def _type(tok, i):
    text = tok.inverse_special.get(i)
    if text is None:
        return NORMAL
    return CONTROL if text in tok.control else USER_DEFINED


def tokenizer_to_gguf(tok, vocab_size):
    """[(key, value)] of the tokenizer.ggml.* metadata that tokenizer_from_gguf reads back."""
    if tok.n_vocab > vocab_size:
        raise ValueError(f"tokenizer: {tok.n_vocab} tokens, beyond the model's vocab_size {vocab_size}")
    specials = tok.inverse_special
    if isinstance(tok.core, ByteLevelCore):
        vocab = tok.core.bpe.vocab
        tokens = [specials.get(i) or bpe_io.to_gpt2(tok.token_bytes_table[i]) for i in range(tok.n_vocab)]
        merges = [f"{bpe_io.to_gpt2(vocab[a])} {bpe_io.to_gpt2(vocab[b])}" for a, b in tok.core.bpe.merge_list()]
        kvs = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", _pre_name(tok)),
               ("tokenizer.ggml.merges", merges)]
        types = [_type(tok, i) for i in range(tok.n_vocab)]
    else:
        spm = tok.core.spm
        if spm.scores is None:
            raise ValueError("tokenizer: a SentencePiece vocabulary from tokenizer.json has merge ranks, not the "
                             "scores a GGUF 'llama' vocabulary stores")
        inverse = {i: t for t, i in spm.pieces.items()}
        byte_of = {i: b for b, i in enumerate(spm.byte_ids) if i >= 0}
        tokens = [inverse.get(i, f"[UNUSED{i}]") for i in range(tok.n_vocab)]
        types = [BYTE if i in byte_of else _type(tok, i) for i in range(tok.n_vocab)]
        kvs = [("tokenizer.ggml.model", "llama"), ("tokenizer.ggml.add_space_prefix", tok.core.add_space_prefix),
               ("tokenizer.ggml.scores", [float(spm.scores.get(i, 0.0)) for i in range(tok.n_vocab)])]
    pad = vocab_size - tok.n_vocab                   # rows of the embedding no token uses
    kvs += [("tokenizer.ggml.tokens", tokens + [f"[PAD{tok.n_vocab + k}]" for k in range(pad)]),
            ("tokenizer.ggml.token_type", types + [UNUSED] * pad),
            ("tokenizer.ggml.add_bos_token", tok.add_bos), ("tokenizer.ggml.add_eos_token", tok.add_eos)]
    for key, i in (("bos", tok.bos_token_id), ("eos", tok.eos_token_id), ("unknown", tok.unk_token_id)):
        if i is not None:
            kvs.append((f"tokenizer.ggml.{key}_token_id", i))
    if tok.chat_template is not None:
        kvs.append(("tokenizer.chat_template", tok.chat_template))
    return kvs
