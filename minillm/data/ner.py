"""Named-entity PII: a small Transformer encoder that tags each word of a text as part of a person's
name, a street address, an organisation or a location (BIO tags, Ramshaw & Marcus 1995), so the
`pii_ner` stage can replace them with typed placeholders after the regex stage (pii.py) has taken
the e-mails, phone numbers, IBANs and cards. The regular expressions are the coarse pass, this model
the fine one: names and addresses have no checksum and no fixed shape, only context.

Model (a BERT-style token classifier, Devlin et al. 2019, Sec. 4.3, scaled down to ~0.3M weights):
  input     each word -> K feature ids from a feature vocabulary built on the training rows:
            the lower-cased word, its shape ("Xxxx", "d", "X."), 3-letter prefix and suffix,
            its capitalisation with whether it starts a sentence, and its length. A feature
            never seen in training maps to that kind's <unk> id, which training also teaches by
            dropping features at random (word dropout, as in Lample et al. 2016), so a name the
            model never saw is tagged from its shape, suffix, capitalisation and context.
  embed     e = sum_k E[id_k] + P[t]                                                (B, T, C)
  L blocks  x = x + Attn(LN(x)),  x = x + MLP(LN(x))  with *bidirectional* attention over the
            row's valid words (nn/bidirectional_attention.py): a word is tagged from both sides
  head      logits = LN(x) W_head^T + b_head                                        (B, T, 9)
Training minimises token cross-entropy (ner_train.py); the backward pass is written out below, in
reverse order of the forward, like model.py's. Weights ship as resources/ner_pii.npz (float16,
loaded without pickle) and `minillm data ner-train` retrains them.

Sizes: B rows, T words per row, K features per word, C channels, H heads, D = C / H, NF features
in the vocabulary, NT = len(TAGS).
"""
import json
import pathlib
import zipfile
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import regex

from ..io.atomic import atomic_write
from ..nn.activations import gelu_backward, gelu_forward
from ..nn.bidirectional_attention import (bidirectional_attention_backward,
                                          bidirectional_attention_forward)
from ..nn.linear import linear_backward, linear_forward
from ..nn.norms import layernorm_backward, layernorm_forward

TYPES = ("PER", "ADDR", "ORG", "LOC")
TAGS = ("O",) + tuple(f"{p}-{t}" for t in TYPES for p in "BI")
PLACEHOLDERS = {"PER": "<PERSON>", "ADDR": "<ADDRESS>", "ORG": "<ORG>", "LOC": "<LOCATION>"}
WEIGHTS = pathlib.Path(__file__).parent / "resources" / "ner_pii.npz"
K_FEATURES = 6

# words: letters (with inner apostrophes/hyphens), digit groups (with inner - or /), any other char
_WORD = regex.compile(r"\p{L}[\p{L}\p{M}]*(?:['’\-]\p{L}[\p{L}\p{M}]*)*|\d+(?:[\-/]\d+)*|\S")
_SENTENCE_END = {".", "!", "?", ":", ";", "\"", "”", "(", "-", "–", "—", "•"}


@dataclass(frozen=True)
class NERConfig:
    n_features: int = 1024       # size of the feature vocabulary (set by training)
    n_embd: int = 32
    n_head: int = 2
    n_layer: int = 2
    max_len: int = 64
    n_tags: int = len(TAGS)


def tokenize(text):
    """-> [(start, end)] character spans of the words of `text`."""
    return [m.span() for m in _WORD.finditer(text)]


def _shape(w):
    out = []
    for ch in w[:8]:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)                                   # runs collapse: "Smith" -> "Xx"
    return "".join(out)


FEATURE_KINDS = ("w", "s", "p", "x", "c", "l")           # word, shape, prefix, suffix, case, length
assert len(FEATURE_KINDS) == K_FEATURES


def word_features(words, starts):
    """words: list of str; starts: list of bool (word begins a sentence) -> K strings per word."""
    out = []
    for w, s in zip(words, starts):
        low = w.lower()
        case = ("T" if w[:1].isupper() and (len(w) == 1 or not w[1:].isupper()) else
                "U" if w.isupper() else "l" if w.islower() else "o")
        out.append((f"w:{low}", f"s:{_shape(w)}", f"p:{low[:3]}", f"x:{low[-3:]}",
                    f"c:{case}{int(s)}", f"l:{min(len(w), 12)}{case}"))
    return out


def text_features(text, spans):
    """The K feature strings of every word of `text` at `spans`."""
    words = [text[a:b] for a, b in spans]
    starts = [i == 0 or words[i - 1] in _SENTENCE_END or "\n" in text[spans[i - 1][1]:spans[i][0]]
              for i in range(len(words))]
    return word_features(words, starts)


class FeatureVocab:
    """Feature string -> row of the embedding table; ids 0..K-1 are the <unk> of each kind."""

    def __init__(self, features):
        self.features = list(features)
        self.index = {f: i for i, f in enumerate(self.features)}
        self.unk = np.array([self.index[f"{k}:<unk>"] for k in FEATURE_KINDS], dtype=np.int64)

    @classmethod
    def build(cls, rows, min_count=1):
        """rows: iterables of K-tuples of feature strings (training words)."""
        counts = {}
        for row in rows:
            for feats in row:
                for f in feats:
                    counts[f] = counts.get(f, 0) + 1
        kept = sorted(f for f, n in counts.items() if n >= min_count)
        return cls([f"{k}:<unk>" for k in FEATURE_KINDS] + kept)

    def ids(self, feature_rows):  # K-tuples of strings -> (T, K) int64
        out = np.empty((len(feature_rows), K_FEATURES), dtype=np.int64)             # (T, K)
        for t, feats in enumerate(feature_rows):
            out[t] = [self.index.get(f, self.unk[k]) for k, f in enumerate(feats)]
        return out


# --- the model --------------------------------------------------------------------------------

def init_params(cfg, seed=0):
    """Flat dict of float32 arrays; GPT-2's init (N(0, 0.02), residual projections / sqrt(2L))."""
    rng = np.random.default_rng(seed)
    C, std = cfg.n_embd, 0.02
    p = {"emb": rng.normal(0, std, (cfg.n_features, C)), "pos": rng.normal(0, std, (cfg.max_len, C))}
    for l in range(cfg.n_layer):
        p |= {f"h{l}.ln1.w": np.ones(C), f"h{l}.ln1.b": np.zeros(C),
              f"h{l}.qkv.w": rng.normal(0, std, (3 * C, C)), f"h{l}.qkv.b": np.zeros(3 * C),
              f"h{l}.proj.w": rng.normal(0, std / np.sqrt(2 * cfg.n_layer), (C, C)),
              f"h{l}.proj.b": np.zeros(C),
              f"h{l}.ln2.w": np.ones(C), f"h{l}.ln2.b": np.zeros(C),
              f"h{l}.fc.w": rng.normal(0, std, (4 * C, C)), f"h{l}.fc.b": np.zeros(4 * C),
              f"h{l}.fc2.w": rng.normal(0, std / np.sqrt(2 * cfg.n_layer), (C, 4 * C)),
              f"h{l}.fc2.b": np.zeros(C)}
    p |= {"lnf.w": np.ones(C), "lnf.b": np.zeros(C),
          "head.w": rng.normal(0, std, (cfg.n_tags, C)), "head.b": np.zeros(cfg.n_tags)}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in p.items()}


class BlockCache(NamedTuple):
    ln1: tuple        # layernorm_forward's cache
    qkv: tuple        # linear_forward's cache
    attn: tuple       # bidirectional_attention_forward's cache
    proj: tuple
    ln2: tuple
    fc: tuple
    gelu: np.ndarray  # (N, 4C) gelu input
    fc2: tuple


def _block_forward(p, l, x, valid, H):  # (B, T, C), (B, T) bool -> (B, T, C), BlockCache
    B, T, C = x.shape
    D = C // H
    h, ln1 = layernorm_forward(x, p[f"h{l}.ln1.w"], p[f"h{l}.ln1.b"])              # (B, T, C)
    qkv, c_qkv = linear_forward(h.reshape(B * T, C), p[f"h{l}.qkv.w"], p[f"h{l}.qkv.b"])  # (N, 3C)
    q, k, v = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)                  # (B, H, T, D) x 3
    a, c_attn = bidirectional_attention_forward(q, k, v, valid)                     # (B, H, T, D)
    a = np.ascontiguousarray(a.transpose(0, 2, 1, 3).reshape(B * T, C))            # (N, C)
    o, c_proj = linear_forward(a, p[f"h{l}.proj.w"], p[f"h{l}.proj.b"])            # (N, C)
    x = x + o.reshape(B, T, C)
    h2, ln2 = layernorm_forward(x, p[f"h{l}.ln2.w"], p[f"h{l}.ln2.b"])             # (B, T, C)
    f, c_fc = linear_forward(h2.reshape(B * T, C), p[f"h{l}.fc.w"], p[f"h{l}.fc.b"])  # (N, 4C)
    g, _ = gelu_forward(f)                                                          # (N, 4C)
    o2, c_fc2 = linear_forward(g, p[f"h{l}.fc2.w"], p[f"h{l}.fc2.b"])              # (N, C)
    return x + o2.reshape(B, T, C), BlockCache(ln1, c_qkv, c_attn, c_proj, ln2, c_fc, f, c_fc2)


def _block_backward(dx, c, l, H):  # (B, T, C) -> dx (B, T, C), grads of block l
    B, T, C = dx.shape
    D = C // H
    g = {}
    dg, g[f"h{l}.fc2.w"], g[f"h{l}.fc2.b"] = linear_backward(dx.reshape(B * T, C), c.fc2)
    df = gelu_backward(dg, c.gelu)                                                  # (N, 4C)
    dh2, g[f"h{l}.fc.w"], g[f"h{l}.fc.b"] = linear_backward(df, c.fc)
    dx2, g[f"h{l}.ln2.w"], g[f"h{l}.ln2.b"] = layernorm_backward(dh2.reshape(B, T, C), c.ln2)
    dx = dx + dx2                                    # x = x + o: the residual passes dx through
    da, g[f"h{l}.proj.w"], g[f"h{l}.proj.b"] = linear_backward(dx.reshape(B * T, C), c.proj)
    da = da.reshape(B, T, H, D).transpose(0, 2, 1, 3)                               # (B, H, T, D)
    dq, dk, dv = bidirectional_attention_backward(da, c.attn)
    dqkv = np.stack([dq, dk, dv]).transpose(1, 3, 0, 2, 4).reshape(B * T, 3 * C)    # (N, 3C)
    dh, g[f"h{l}.qkv.w"], g[f"h{l}.qkv.b"] = linear_backward(dqkv, c.qkv)
    dx1, g[f"h{l}.ln1.w"], g[f"h{l}.ln1.b"] = layernorm_backward(dh.reshape(B, T, C), c.ln1)
    return dx + dx1, g


def forward(p, cfg, ids, valid):  # (B, T, K) int, (B, T) bool -> logits (B, T, NT), cache
    B, T, K = ids.shape
    if T > cfg.max_len:
        raise ValueError(f"ids: at most max_len={cfg.max_len} words per row, got {T}")
    x = p["emb"][ids].sum(axis=2) + p["pos"][:T]                                    # (B, T, C)
    blocks = []
    for l in range(cfg.n_layer):
        x, c = _block_forward(p, l, x, valid, cfg.n_head)
        blocks.append(c)
    h, lnf = layernorm_forward(x, p["lnf.w"], p["lnf.b"])                           # (B, T, C)
    logits, head = linear_forward(h.reshape(B * T, -1), p["head.w"], p["head.b"])   # (N, NT)
    return logits.reshape(B, T, -1), (ids, blocks, lnf, head)


def backward(dlogits, cache, cfg):  # (B, T, NT) -> grads (dict like params)
    ids, blocks, lnf, head = cache
    B, T, NT = dlogits.shape
    g = {}
    dh, g["head.w"], g["head.b"] = linear_backward(dlogits.reshape(B * T, NT), head)
    dx, g["lnf.w"], g["lnf.b"] = layernorm_backward(dh.reshape(B, T, -1), lnf)
    for l in reversed(range(cfg.n_layer)):
        dx, gl = _block_backward(dx, blocks[l], l, cfg.n_head)
        g |= gl
    g["pos"] = np.zeros((cfg.max_len, dx.shape[-1]), dtype=dx.dtype)                # (maxT, C)
    g["pos"][:T] = dx.sum(axis=0)
    g["emb"] = bag_embedding_backward(dx, ids, cfg.n_features)
    return g


def bag_embedding_backward(dx, ids, n_rows):  # (B, T, C), (B, T, K) -> dE (NF, C)
    """e = sum_k E[id_k]: each of a word's K feature rows receives the word's whole gradient,
    and rows hit by several (word, feature) pairs sum them. Same result as nn.embedding's
    scatter-add (np.add.at) of the gradient repeated K times, computed by sorting the ids and
    summing runs (np.add.reduceat), which is many times faster than np.add.at."""
    C = dx.shape[-1]
    flat = ids.reshape(-1)                                                          # (M,) M = B*T*K
    rows = np.repeat(dx.reshape(-1, C), ids.shape[-1], axis=0)                      # (M, C)
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])         # (U,)
    dE = np.zeros((n_rows, C), dtype=dx.dtype)                                      # (NF, C)
    dE[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return dE


# --- weights on disk ----------------------------------------------------------------------------

def save_weights(path, params, cfg, vocab, dtype=np.float16):
    """params + config + feature vocabulary in one .npz (float16 by default: a small file)."""
    arrays = {k: v.astype(dtype) for k, v in params.items()}
    arrays["__config__"] = np.frombuffer(json.dumps(asdict(cfg)).encode(), dtype=np.uint8)
    arrays["__features__"] = np.array(vocab.features, dtype=str)                  # fixed-width unicode
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def load_weights(path=WEIGHTS):
    """-> (params float32, NERConfig, FeatureVocab). Never unpickles: allow_pickle=False."""
    try:
        with np.load(path, allow_pickle=False) as z:
            cfg = NERConfig(**json.loads(z["__config__"].tobytes()))
            vocab = FeatureVocab(z["__features__"].tolist())
            params = {k: z[k].astype(np.float32) for k in z.files if not k.startswith("__")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"path: {path} is not a readable NER weights file ({e})") from e
    expected = set(init_params(NERConfig(n_features=1, n_embd=cfg.n_head, n_head=cfg.n_head,
                                         n_layer=cfg.n_layer)))
    if set(params) != expected or len(vocab.features) != cfg.n_features:
        raise ValueError(f"path: {path}: parameters {sorted(set(params) ^ expected)[:4]} or "
                         f"{len(vocab.features)} features do not match its config {cfg}")
    return params, cfg, vocab


# --- tagging text -------------------------------------------------------------------------------

def bio_spans(tags):  # sequence of tag ids -> [(first word, last word + 1, type)]
    """Entities from BIO tags; an I- tag that does not continue an entity of its type opens one."""
    out, cur = [], None
    for t, tag in enumerate(tags):
        name = TAGS[int(tag)]
        if name == "O":
            if cur:
                out.append(cur)
            cur = None
            continue
        prefix, kind = name.split("-")
        if prefix == "I" and cur and cur[2] == kind:
            cur = (cur[0], t + 1, kind)
        else:
            if cur:
                out.append(cur)
            cur = (t, t + 1, kind)
    if cur:
        out.append(cur)
    return out


def split_rows(text, spans, T):
    """Cut a text's words into rows of at most T words, at a sentence end when one lies in the
    second half of the row. -> [(first word, end word)]."""
    rows, i, n = [], 0, len(spans)
    while i < n:
        j = min(i + T, n)
        if j < n:
            for e in range(j, i + T // 2, -1):
                if text[spans[e - 1][0]:spans[e - 1][1]] in (".", "!", "?"):
                    j = e
                    break
        rows.append((i, j))
        i = j
    return rows


def _allowed_transitions():
    """(NT, NT) bool: tag i may be followed by tag j. I-X only continues B-X or I-X."""
    ok = np.ones((len(TAGS), len(TAGS)), dtype=bool)                                # (NT, NT)
    for j, tag in enumerate(TAGS):
        if tag.startswith("I-"):
            ok[:, j] = [t in (f"B-{tag[2:]}", tag) for t in TAGS]
    return ok


ALLOWED = _allowed_transitions()
START_ALLOWED = np.array([not t.startswith("I-") for t in TAGS])                   # (NT,)


def viterbi_bio(logits):  # (T, NT) -> (T,) tag ids
    """The most probable tag sequence that is valid BIO (no I-X after O or after another type):
    max over paths of sum_t log softmax(logits_t)[tag_t], by dynamic programming (Viterbi 1967)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))                       # (T, NT)
    trans = np.where(ALLOWED, 0.0, -np.inf)                                         # (NT, NT)
    score = np.where(START_ALLOWED, logp[0], -np.inf)                               # (NT,)
    back = np.zeros(logp.shape, dtype=np.int64)                                     # (T, NT)
    for t in range(1, len(logp)):
        cand = score[:, None] + trans                                               # (NT, NT)
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + logp[t]
    path = [int(score.argmax())]
    for t in range(len(logp) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.array(path[::-1], dtype=np.int64)


def plausible(text, a, b, kind):
    """Shape rules a tagged span must pass (precision on technical text): no entity touches an
    identifier (`_` or `++` next to it, a digit or `_` inside a name); a name, organisation or
    place has a capital letter and a person's words are capitalised (and more than one letter: "C" and "C++" are no one); an address (or a fragment of
    one) holds a letter and a digit or capital: never a bare number."""
    span = text[a:b]
    if text[a - 1:a] == "_" or text[b:b + 1] == "_" or text[b:b + 2] == "++" or "_" in span:
        return False
    if kind == "ADDR":                  # a fragment of an address may lack the number, not letters
        return any(c.isalpha() for c in span) and any(c.isdigit() or c.isupper() for c in span)
    if kind == "PER" and (any(c.isdigit() for c in span) or sum(c.isalpha() for c in span) < 2 or
                          not all(w[:1].isupper() for w in span.split() if w[:1].isalpha())):
        return False
    return any(c.isupper() for c in span)


class NERTagger:
    """The trained token classifier applied to raw text. batch_rows bounds memory per forward."""

    def __init__(self, params, cfg, vocab, batch_rows=64):
        self.params, self.cfg, self.vocab, self.batch_rows = params, cfg, vocab, batch_rows

    @classmethod
    def load(cls, path=None):
        return cls(*load_weights(WEIGHTS if path is None else path))

    def tag_rows(self, rows):  # [(T_i, K) ids] -> [(T_i,) tag ids]
        out = []
        for s in range(0, len(rows), self.batch_rows):
            chunk = rows[s:s + self.batch_rows]
            T = max(len(r) for r in chunk)
            ids = np.zeros((len(chunk), T, K_FEATURES), dtype=np.int64)             # (B, T, K)
            valid = np.zeros((len(chunk), T), dtype=bool)                           # (B, T)
            for b, r in enumerate(chunk):
                ids[b, :len(r)], valid[b, :len(r)] = r, True
            logits, _ = forward(self.params, self.cfg, ids, valid)                  # (B, T, NT)
            out.extend(viterbi_bio(logits[b, :len(r)]) for b, r in enumerate(chunk))
        return out

    def entities(self, text):
        """-> [(start char, end char, type)] of the entities in `text` that pass `plausible`."""
        spans = tokenize(text)
        if not spans:
            return []
        feats = self.vocab.ids(text_features(text, spans))                         # (W, K)
        rows = split_rows(text, spans, self.cfg.max_len)
        tags = np.concatenate(self.tag_rows([feats[a:b] for a, b in rows]))         # (W,)
        found = [(spans[a][0], spans[b - 1][1], kind) for a, b, kind in bio_spans(tags)]
        return [e for e in found if plausible(text, *e)]

    def redact(self, text, types=TYPES):
        """Replace entities of `types` with PLACEHOLDERS. -> (new text, {type: count})."""
        counts = {t: 0 for t in types}
        pieces, last = [], 0
        for a, b, kind in self.entities(text):
            if kind in counts:
                pieces += [text[last:a], PLACEHOLDERS[kind]]
                last = b
                counts[kind] += 1
        return "".join(pieces) + text[last:], counts
