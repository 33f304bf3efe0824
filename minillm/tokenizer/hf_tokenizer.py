"""A Hugging Face tokenizer folder (tokenizer.json, tokenizer_config.json, chat_template.jinja) <->
PretrainedTokenizer, for the two families GGUF files also carry:

- byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM): a BPE model whose pre-tokenizer is a Sequence of
  Split(regex, "Isolated"), Digits and ByteLevel steps. Each step becomes one regex of a
  pretokenizers.py sequence: Split's regex as it is, Digits as \\p{N} (individual) or \\p{N}+, and
  ByteLevel(use_regex) as GPT-2's regex;
- SentencePiece-style BPE (Llama-2, Mistral): a BPE model with byte_fallback whose spaces become
  "▁" (a Replace normalizer, or a Metaspace pre-tokenizer), merged by the rank of the merge list.

Anything else (WordPiece, Unigram, other normalizers) is a ValueError naming the part. Writing
(`save_tokenizer_files`) produces the folder transformers' AutoTokenizer loads with the same ids.
"""
import json
import os

import regex

from ..io.atomic import write_bytes_atomic
from ..io.jsonl import read_json
from . import bpe_io, spm_bpe
from .bpe import BPETokenizer
from .pretrained import ByteLevelCore, PretrainedTokenizer, SentencePieceCore
from .spm_bpe import SentencePieceBPE

# the regex of ByteLevel(use_regex=True) in Hugging Face tokenizers (GPT-2's, with a final \s+)
BYTE_LEVEL_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _read_json(path, required=True):
    if not os.path.exists(path):
        if required:
            raise FileNotFoundError(f"{path}: not found")
        return None
    return read_json(path)                  # every JSON failure, deep nesting included: one ValueError


def _token_content(value):
    return value.get("content") if isinstance(value, dict) else value


def pre_tokenizer_exprs(node, where):
    """The regex sequence of a tokenizer.json pre_tokenizer (byte-level family)."""
    kind = node.get("type") if isinstance(node, dict) else None
    if kind == "Sequence":
        return tuple(e for child in node.get("pretokenizers", []) for e in pre_tokenizer_exprs(child, where))
    if kind == "ByteLevel":
        if node.get("add_prefix_space"):
            raise ValueError(f"{where}: pre_tokenizer ByteLevel with add_prefix_space is not supported")
        return (BYTE_LEVEL_REGEX,) if node.get("use_regex", True) else ()
    if kind == "Digits":
        return (r"\p{N}",) if node.get("individual_digits") else (r"\p{N}+",)
    if kind == "Split":
        pattern = node.get("pattern", {})
        if node.get("behavior") != "Isolated" or node.get("invert"):
            raise ValueError(f"{where}: pre_tokenizer Split with behavior {node.get('behavior')!r} "
                             f"invert={node.get('invert')} is not supported (only 'Isolated')")
        if "Regex" in pattern:
            return (pattern["Regex"],)
        return (regex.escape(pattern["String"]),)
    raise ValueError(f"{where}: pre_tokenizer {kind!r} is not supported for a byte-level BPE")


def _is_sentencepiece(doc):
    model, norm, pre = doc["model"], doc.get("normalizer") or {}, doc.get("pre_tokenizer") or {}
    nodes = [norm] + list(norm.get("normalizers") or []) + [pre] + list(pre.get("pretokenizers") or [])
    return bool(model.get("byte_fallback")) or any(n.get("type") == "Metaspace" for n in nodes if n) or \
        any(n.get("type") == "Replace" and n.get("content") == spm_bpe.SPACE for n in nodes if n)


def _merge_pairs(merges, where):
    pairs = []
    for k, m in enumerate(merges):
        pair = m.split(" ", 1) if isinstance(m, str) else m
        if len(pair) != 2:
            raise ValueError(f"{where}: merges[{k}] = {m!r} is not a pair")
        pairs.append(tuple(pair))
    return pairs


def _byte_level_core(doc, where):
    model = doc["model"]
    exprs = pre_tokenizer_exprs(doc.get("pre_tokenizer"), where)
    if not exprs:
        raise ValueError(f"{where}: a byte-level BPE needs a regex pre-tokenizer")
    added = {t["content"] for t in doc.get("added_tokens", [])}
    vocab = {int(i): bpe_io.from_gpt2(s, where) for s, i in model["vocab"].items() if s not in added}
    by_bytes = {}
    for i, b in sorted(vocab.items()):
        by_bytes.setdefault(b, i)
    n = max(list(model["vocab"].values()) + [t["id"] for t in doc.get("added_tokens", [])]) + 1
    missing = [x for x in range(256) if bytes([x]) not in by_bytes]
    for k, x in enumerate(missing):                   # placeholders, never emitted (ByteLevelCore)
        by_bytes[bytes([x])] = vocab_id = n + k
        vocab[vocab_id] = bytes([x])
    merges = {}
    for rank, (left, right) in enumerate(_merge_pairs(model["merges"], where)):
        lb, rb = bpe_io.from_gpt2(left, where), bpe_io.from_gpt2(right, where)
        a, b, c = by_bytes.get(lb), by_bytes.get(rb), by_bytes.get(lb + rb)
        if a is None or b is None or c is None:
            raise ValueError(f"{where}: merge {rank} ({left!r}, {right!r}) uses a token missing from the vocabulary")
        merges.setdefault((a, b), (rank, c))
    bpe = BPETokenizer(merges, vocab, pattern=exprs[-1], byte_ids=[by_bytes[bytes([x])] for x in range(256)],
                       whole_pieces=bool(model.get("ignore_merges")))
    token_bytes = [vocab.get(i, b"") for i in range(n)]
    return ByteLevelCore(bpe, exprs, missing), token_bytes, {"exprs": list(exprs)}


def _sentencepiece_core(doc, where):
    model, norm, pre = doc["model"], doc.get("normalizer") or {}, doc.get("pre_tokenizer") or {}
    meta = [n for n in [pre] + list(pre.get("pretokenizers") or []) if n.get("type") == "Metaspace"]
    norms = [norm] + list(norm.get("normalizers") or [])
    prepend = any(n.get("type") == "Prepend" for n in norms if n)
    first_only = False
    if meta:
        scheme = meta[0].get("prepend_scheme", "always" if meta[0].get("add_prefix_space", True) else "never")
        prepend, first_only = scheme != "never", scheme == "first"
    pieces = {s: int(i) for s, i in model["vocab"].items()}
    byte_ids = [pieces.get(spm_bpe.byte_token(b), -1) for b in range(256)] if model.get("byte_fallback") \
        else [-1] * 256
    ranks = {}
    for rank, pair in enumerate(_merge_pairs(model["merges"], where)):
        ranks.setdefault(pair, rank)
    unk = pieces.get(model.get("unk_token")) if model.get("unk_token") else None
    spm = SentencePieceBPE(pieces, byte_ids, ranks=ranks, unk_id=unk)
    n = max(list(pieces.values()) + [t["id"] for t in doc.get("added_tokens", [])]) + 1
    inverse = {i: s for s, i in pieces.items()}
    token_bytes = [_spm_bytes(inverse.get(i, "")) for i in range(n)]
    return SentencePieceCore(spm, prepend, first_only), token_bytes, {}


def _spm_bytes(piece):
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        return bytes([int(piece[3:5], 16)])
    return piece.replace(spm_bpe.SPACE, " ").encode("utf-8")


def _chat_template(folder, config):
    path = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    template = (config or {}).get("chat_template")
    if template is None:
        template = (_read_json(os.path.join(folder, "chat_template.json"), required=False) or {}).get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template


def tokenizer_from_hf(folder):
    """PretrainedTokenizer of a Hugging Face folder holding tokenizer.json (+ tokenizer_config.json).
    A file of the wrong shape (a list where an object belongs, a missing key, a string id) is one
    ValueError naming the file, whichever field it is."""
    where = os.path.join(folder, "tokenizer.json")
    try:
        return _tokenizer_from_hf(folder, where)
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as e:
        raise ValueError(f"{where}: malformed tokenizer.json or tokenizer_config.json "
                         f"({type(e).__name__}: {str(e)[:200]})") from None


def _tokenizer_from_hf(folder, where):
    doc = _read_json(where)
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise ValueError(f"{where}: not a tokenizer.json (no model)")
    if doc["model"].get("type", "BPE") != "BPE":
        raise ValueError(f"{where}: model type {doc['model'].get('type')!r} is not supported (expected 'BPE')")
    config = _read_json(os.path.join(folder, "tokenizer_config.json"), required=False) or {}
    build = _sentencepiece_core if _is_sentencepiece(doc) else _byte_level_core
    core, token_bytes, extra = build(doc, where)
    control, user = {}, {}
    for t in doc.get("added_tokens", []):
        (control if t.get("special") else user)[t["content"]] = t["id"]
        token_bytes[t["id"]] = t["content"].encode("utf-8")
    ids = {**{s: i for s, i in doc["model"]["vocab"].items()}, **control, **user}
    bos, eos, unk = (ids.get(_token_content(config.get(k))) for k in ("bos_token", "eos_token", "unk_token"))
    add_bos, add_eos = _added_by_post_processor(doc.get("post_processor"), ids, bos, eos)
    add_bos = bool(config.get("add_bos_token", add_bos)) and bos is not None
    add_eos = bool(config.get("add_eos_token", add_eos)) and eos is not None
    return PretrainedTokenizer(core, token_bytes, control, user, bos_token_id=bos, eos_token_id=eos,
                               add_bos=add_bos, add_eos=add_eos, chat_template=_chat_template(folder, config),
                               unk_token_id=unk, pre=extra.get("exprs"))


def _added_by_post_processor(node, ids, bos, eos):
    """(adds BOS, adds EOS) per a TemplateProcessing post-processor's single-sequence template."""
    if not isinstance(node, dict):
        return False, False
    if node.get("type") == "Sequence":
        found = [_added_by_post_processor(p, ids, bos, eos) for p in node.get("processors", [])]
        return any(f[0] for f in found), any(f[1] for f in found)
    if node.get("type") != "TemplateProcessing":
        return False, False
    single = node.get("single") or []
    specials = [ids.get(s["SpecialToken"]["id"]) if "SpecialToken" in s else None for s in single]
    if not specials:
        return False, False
    return bos is not None and specials[0] == bos, eos is not None and specials[-1] == eos


# ------------------------------------------------------------------------------ writing
def _byte_level_model(tok):
    bpe = tok.core.bpe
    vocab = {bpe_io.to_gpt2(b): i for i, b in sorted(bpe.vocab.items()) if i < tok.n_vocab}
    vocab.update(tok.special_tokens)  # tokenizers wants added tokens in the model's vocab too
    merges = [[bpe_io.to_gpt2(bpe.vocab[a]), bpe_io.to_gpt2(bpe.vocab[b])] for a, b in bpe.merge_list()]
    steps = [{"type": "Split", "pattern": {"Regex": e}, "behavior": "Isolated", "invert": False}
             for e in tok.core.exprs]
    steps.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False})
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": bpe.whole_pieces, "vocab": vocab, "merges": merges}
    decoder = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return None, {"type": "Sequence", "pretokenizers": steps}, model, decoder


def _sentencepiece_model(tok):
    spm = tok.core.spm
    if spm.ranks is None:
        raise ValueError("tokenizer: a SentencePiece vocabulary with scores (from GGUF) has no merge list "
                         "to write as tokenizer.json")
    merges = [list(pair) for pair, _ in sorted(spm.ranks.items(), key=lambda kv: kv[1])]
    model = {"type": "BPE", "dropout": None, "unk_token": tok._text(spm.unk_id), "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": min(spm.byte_ids) >= 0,
             "ignore_merges": False, "vocab": dict(spm.pieces), "merges": merges}
    scheme = "never" if not tok.core.add_space_prefix else "first" if tok.core.prefix_first_only else "always"
    pre = {"type": "Metaspace", "replacement": spm_bpe.SPACE, "prepend_scheme": scheme, "split": False}
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": spm_bpe.SPACE}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}] + ([{"type": "Strip", "content": " ", "start": 1, "stop": 0}] if scheme != "never" else [])}
    return None, pre, model, decoder


def _post_processor(tok):
    single = ([{"SpecialToken": {"id": tok._text(tok.bos_token_id), "type_id": 0}}] if tok.add_bos else []) + \
        [{"Sequence": {"id": "A", "type_id": 0}}] + \
        ([{"SpecialToken": {"id": tok._text(tok.eos_token_id), "type_id": 0}}] if tok.add_eos else [])
    used = [i for i, on in ((tok.bos_token_id, tok.add_bos), (tok.eos_token_id, tok.add_eos)) if on]
    return {"type": "TemplateProcessing", "single": single, "pair": single + [{"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {tok._text(i): {"id": tok._text(i), "ids": [i], "tokens": [tok._text(i)]} for i in used}}


def save_tokenizer_files(tok, folder):
    """Write tokenizer.json and tokenizer_config.json (with the chat template) for a PretrainedTokenizer."""
    kind = _byte_level_model if isinstance(tok.core, ByteLevelCore) else _sentencepiece_model
    normalizer, pre, model, decoder = kind(tok)
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": s in tok.control} for s, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])]
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": normalizer,
           "pre_tokenizer": pre, "post_processor": _post_processor(tok), "decoder": decoder, "model": model}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
              "add_bos_token": tok.add_bos, "add_eos_token": tok.add_eos, "model_max_length": 1 << 30,
              "bos_token": tok._text(tok.bos_token_id), "eos_token": tok._text(tok.eos_token_id),
              "unk_token": tok._text(tok.unk_token_id)}
    if tok.chat_template is not None:
        config["chat_template"] = tok.chat_template
    os.makedirs(folder, exist_ok=True)
    for name, obj in (("tokenizer.json", doc), ("tokenizer_config.json", config)):
        write_bytes_atomic(os.path.join(folder, name), json.dumps(obj, ensure_ascii=False, indent=1).encode("utf-8"))
