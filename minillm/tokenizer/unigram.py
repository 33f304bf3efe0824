"""Unigram language-model tokenizer (Kudo 2018, "Subword Regularization: Improving Neural Network
Translation Models with Multiple Subword Candidates"), as in SentencePiece (Kudo & Richardson 2018).

A sentence x is segmented into pieces (x_1..x_M) and P(x) = prod_i p(x_i) (Kudo 2018, eq. 1); the
vocabulary stores log p as each piece's score. `encode` is the Viterbi segmentation
x* = argmax P(x) (eq. 2); `nbest` the n most probable ones; `sample_encode` draws a segmentation with
probability proportional to P(x)^alpha (subword regularization, Sec. 2.2) by forward filtering and
backward sampling over the lattice. A character that no piece covers is an unknown node with score
min(score) - 10 (SentencePiece's penalty); with byte fallback it is emitted as its UTF-8 bytes
<0x00>..<0xFF>, so every string round-trips. Training (EM + pruning): unigram_train.py.

Unlike BPE (bpe.py) there are no merges: the model is only a scored list of pieces. Models read from
SentencePiece `.model` files (sentencepiece_model.py) encode exactly like the `sentencepiece`
library, including its BPE models (merge the adjacent pair whose concatenation has the highest
score, leftmost on ties).
"""
import hashlib
import json
import math

import numpy as np
import regex

from ..io.atomic import write_bytes_atomic
from . import sentencepiece_model, unigram_train
from .sentencepiece_model import BYTE, CONTROL, NORMAL, SPACE, UNK_PENALTY, UNKNOWN, UNUSED, USER_DEFINED
MAGIC = "minillm-unigram 1"


class UnigramTokenizer:
    """pieces: list of (piece str, score float, type int); id = index.

    Normalization (SentencePiece's NormalizerSpec, without a character map): add_dummy_prefix puts
    one space before the text, remove_extra_whitespaces strips and collapses runs of " ", and
    escape_whitespaces writes " " as "▁". Models trained here set all three False, so that encoding
    is lossless. model_type: "unigram" (Viterbi) or "bpe" (SentencePiece BPE).
    """

    def __init__(self, pieces, model_type="unigram", byte_fallback=True, add_dummy_prefix=False,
                 remove_extra_whitespaces=False, escape_whitespaces=False, charsmap=None,
                 special_tokens=None, treat_whitespace_as_suffix=False):
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type: expected 'unigram' or 'bpe', got {model_type!r}")
        self.pieces = [(str(p), float(s), int(t)) for p, s, t in pieces]
        for i, (p, s, t) in enumerate(self.pieces):   # as sentencepiece's model checks
            if t not in (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE) or not math.isfinite(s):
                raise ValueError(f"pieces: piece {i} {p[:40]!r} has type {t} (expected 1..6) and score {s} "
                                 f"(expected a finite number)")
        self.model_type = model_type
        self.byte_fallback = bool(byte_fallback)
        self.add_dummy_prefix = bool(add_dummy_prefix)
        self.remove_extra_whitespaces = bool(remove_extra_whitespaces)
        self.escape_whitespaces = bool(escape_whitespaces)
        self.treat_whitespace_as_suffix = bool(treat_whitespace_as_suffix)
        self.charsmap = charsmap  # sentencepiece_model.CharsMap or None (identity)
        self.piece_to_id, self.reserved = {}, {}
        for i, (p, _, t) in enumerate(self.pieces):
            # sentencepiece keeps NORMAL/USER_DEFINED/UNUSED apart from CONTROL/UNKNOWN/BYTE pieces
            table = self.piece_to_id if t in (NORMAL, USER_DEFINED, UNUSED) else self.reserved
            table.setdefault(p, i)
        unk = [i for i, (_, _, t) in enumerate(self.pieces) if t == UNKNOWN]
        if len(unk) != 1:
            raise ValueError(f"pieces: expected exactly one UNKNOWN piece, found {len(unk)}")
        self.unk_id = unk[0]
        self.byte_ids = [self.reserved.get(f"<0x{b:02X}>", -1) for b in range(256)]
        if self.byte_fallback and -1 in self.byte_ids:
            raise ValueError("byte_fallback: the vocabulary lacks some of the 256 <0xXX> byte pieces")
        # control pieces can be encoded (allowed_special); those named in special_tokens also decode
        # to their text, the others (<s>, </s>) to nothing, as in sentencepiece
        self.special_tokens = {p: i for i, (p, _, t) in enumerate(self.pieces) if t == CONTROL}
        self.visible_specials = list(special_tokens or [])
        missing = [t for t in self.visible_specials if t not in self.special_tokens]
        if missing:
            raise ValueError(f"special_tokens: {missing} are not CONTROL pieces of the vocabulary")
        scores = [s for _, s, t in self.pieces if t == NORMAL]
        self.min_score = min(scores) if scores else 0.0
        self.max_score = max(scores) if scores else 0.0
        # pieces the Viterbi lattice may use, and the longest one in characters
        self.matchable = {p: i for p, i in self.piece_to_id.items() if self.pieces[i][2] in (NORMAL, USER_DEFINED)}
        self.max_len = max((len(p) for p in self.matchable), default=1)
        self.user_defined = {p for p, i in self.matchable.items() if self.pieces[i][2] == USER_DEFINED}

    def __len__(self):
        return len(self.pieces)

    @property
    def n_vocab(self):
        return len(self.pieces)

    @property
    def vocab_size(self):
        """Alias of n_vocab: the embedding-table size a model needs for this tokenizer."""
        return self.n_vocab

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, text_or_iterator, vocab_size, split_digits=False, character_coverage=0.9995,
              max_piece_length=16, special_tokens=None, progress=None, **options):
        """EM training to vocab_size pieces (3 control/unknown + 256 bytes + learned). See unigram_train."""
        return unigram_train.train(cls, text_or_iterator, vocab_size, split_digits=split_digits,
                                   character_coverage=character_coverage, max_piece_length=max_piece_length,
                                   special_tokens=special_tokens, progress=progress, **options)

    # ------------------------------------------------------------------ normalization
    def normalize(self, text):
        """SentencePiece's Normalizer::Normalize for this model's spec (text -> text)."""
        return sentencepiece_model.normalize(text, self.charsmap, self.add_dummy_prefix,
                                             self.remove_extra_whitespaces, self.escape_whitespaces,
                                             self.treat_whitespace_as_suffix)

    # ------------------------------------------------------------------ segmentation
    def _score(self, piece_id, length):
        if self.pieces[piece_id][2] == USER_DEFINED:  # sentencepiece: user symbols always win
            return length * self.max_score - 0.1
        return self.pieces[piece_id][1]

    def _candidates(self, s, i):
        """(end, id, score) of the pieces that start at character i of s, plus an unknown node if no
        single-character piece starts there."""
        out, has_single = [], False
        for j in range(i + 1, min(len(s), i + self.max_len) + 1):
            pid = self.matchable.get(s[i:j])
            if pid is not None:
                out.append((j, pid, self._score(pid, j - i)))
                has_single |= j == i + 1
        if not has_single:
            out.append((i + 1, self.unk_id, self.min_score - UNK_PENALTY))
        return out

    def _viterbi(self, s):
        """Best segmentation of s as [(start, end, id)]: x* = argmax sum_i log p(x_i)."""
        n = len(s)
        best = [-math.inf] * (n + 1)  # best[j]: score of the best path covering s[:j]
        back = [None] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] == -math.inf:
                continue
            for j, pid, score in self._candidates(s, i):
                if best[i] + score > best[j]:  # strict: the first candidate found keeps a tie
                    best[j], back[j] = best[i] + score, (i, pid)
        path, j = [], n
        while j > 0:
            i, pid = back[j]
            path.append((i, j, pid))
            j = i
        return path[::-1]

    def _bpe_segment(self, s):
        """SentencePiece BPE: start from characters, merge the adjacent pair whose concatenation is a
        piece with the highest score, leftmost on ties; unknown results become <unk>."""
        syms = list(s)
        while len(syms) > 1:
            best, best_k = None, -1
            for k in range(len(syms) - 1):
                pid = self.piece_to_id.get(syms[k] + syms[k + 1])
                if pid is not None and self.pieces[pid][2] != UNUSED:
                    score = self.pieces[pid][1]
                    if best is None or score > best:
                        best, best_k = score, k
            if best is None:
                break
            syms[best_k:best_k + 2] = [syms[best_k] + syms[best_k + 1]]
        out, pos = [], 0
        for sym in syms:
            out.append((pos, pos + len(sym), self.piece_to_id.get(sym, self.unk_id)))
            pos += len(sym)
        return out

    def _segment(self, s):
        if self.model_type == "bpe":
            return self._bpe_segment_with_user_symbols(s)
        return self._viterbi(s)

    def _bpe_segment_with_user_symbols(self, s):
        if not self.user_defined:
            return self._bpe_segment(s)
        out, start, i = [], 0, 0  # user-defined symbols are cut out first and never merged
        longest = max(map(len, self.user_defined))
        while i < len(s):
            hit = next((s[i:j] for j in range(min(len(s), i + longest), i, -1) if s[i:j] in self.user_defined), None)
            if hit is None:
                i += 1
                continue
            out += [(a + start, b + start, p) for a, b, p in self._bpe_segment(s[start:i])]
            out.append((i, i + len(hit), self.piece_to_id[hit]))
            i = start = i + len(hit)
        return out + [(a + start, b + start, p) for a, b, p in self._bpe_segment(s[start:])]

    def _ids(self, s, path):
        """Ids of a path; unknown pieces become byte pieces when byte_fallback is on."""
        ids = []
        for i, j, pid in path:
            if pid == self.unk_id and self.byte_fallback:
                ids.extend(self.byte_ids[b] for b in s[i:j].encode("utf-8"))
            else:
                ids.append(pid)
        return ids

    def _check(self, text):
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace") if _has_surrogates(text) else text

    def encode(self, text, allowed_special=frozenset()):
        """Viterbi token ids of text. Special (control) tokens in allowed_special ("all" or a set) are
        matched in the text first; everything else is plain text."""
        text = self._check(text)
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise ValueError(f"allowed_special: {sorted(unknown)} are not special tokens of this tokenizer")
        out = []
        for part, is_special in _split_special(text, allowed):
            if is_special:
                out.append(self.special_tokens[part])
            else:
                s = self.normalize(part)
                out.extend(self._ids(s, self._segment(s)))
        return out

    def encode_batch(self, texts, allowed_special=frozenset()):
        return [self.encode(t, allowed_special) for t in texts]

    def encode_as_pieces(self, text):
        return [self.id_to_piece(i) for i in self.encode(text)]

    def nbest(self, text, n):
        """The n best segmentations as [(ids, log P)], best first (n-best Viterbi: each lattice
        position keeps its n best partial paths, which is exact because scores add)."""
        if self.model_type != "unigram":
            raise ValueError("nbest: only unigram models have a lattice")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n: expected a positive int, got {n!r}")
        s = self.normalize(self._check(text))
        paths = [[] for _ in range(len(s) + 1)]  # paths[j]: up to n (score, i, k, pid) ending at j
        paths[0] = [(0.0, -1, -1, -1)]
        for i in range(len(s)):
            for j, pid, score in self._candidates(s, i):
                for k, (sc, *_rest) in enumerate(paths[i]):
                    paths[j].append((sc + score, i, k, pid))
            for j in range(i + 1, min(len(s), i + self.max_len) + 1):
                paths[j] = sorted(paths[j], key=lambda p: -p[0])[:n]
        results = []
        for k, (score, *_rest) in enumerate(paths[len(s)]):
            path, j, kk = [], len(s), k
            while j > 0:
                _, i, kprev, pid = paths[j][kk]
                path.append((i, j, pid))
                j, kk = i, kprev
            results.append((self._ids(s, path[::-1]), score))
        return results

    def sample_encode(self, text, alpha=0.1, rng=None):
        """A segmentation sampled with probability proportional to P(x)^alpha (Kudo 2018, Sec. 2.2):
        forward pass A[j] = logsumexp_i (A[i] + alpha * score(i, j)), then sample backward from the end
        choosing each previous edge with probability exp(A[i] + alpha * score - A[j])."""
        if self.model_type != "unigram":
            raise ValueError("sample_encode: only unigram models have a lattice")
        if rng is None:
            rng = np.random.default_rng()
        s = self.normalize(self._check(text))
        n = len(s)
        incoming = [[] for _ in range(n + 1)]  # incoming[j]: (i, pid, score) edges ending at j
        for i in range(n):
            for j, pid, score in self._candidates(s, i):
                incoming[j].append((i, pid, score))
        A = np.full(n + 1, -np.inf, dtype=np.float64)  # (n+1,) log forward sums
        A[0] = 0.0
        for j in range(1, n + 1):
            A[j] = np.logaddexp.reduce([A[i] + alpha * sc for i, _, sc in incoming[j]])
        path, j = [], n
        while j > 0:
            logits = np.array([A[i] + alpha * sc for i, _, sc in incoming[j]], dtype=np.float64)
            p = np.exp(logits - A[j])
            k = rng.choice(len(p), p=p / p.sum())
            i, pid, _ = incoming[j][k]
            path.append((i, j, pid))
            j = i
        return self._ids(s, path[::-1])

    # ------------------------------------------------------------------ decoding
    def _index(self, i):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.pieces):
            raise ValueError(f"ids: {i!r} is not a token id of this tokenizer (n_vocab={len(self.pieces)})")
        return int(i)

    def id_to_piece(self, i):
        return self.pieces[self._index(i)][0]

    def decode_bytes(self, ids):
        """Bytes of the pieces: byte pieces as their byte, control pieces as nothing, "▁" as " ".
        As in sentencepiece, while nothing has been output yet a leading "▁" is dropped from each
        piece (it is the dummy prefix, or a space that remove_extra_whitespaces would have removed)."""
        out = bytearray()
        strip = self.escape_whitespaces and (self.add_dummy_prefix or self.remove_extra_whitespaces)
        for i in ids:
            p, _, t = self.pieces[self._index(i)]
            if t == BYTE:
                out.append(int(p[3:5], 16))
            elif t == CONTROL:
                out += p.encode("utf-8") if p in self.visible_specials else b""
            elif t == UNKNOWN:
                out += " \u2047 ".encode("utf-8")  # sentencepiece shows <unk> as " ⁇ "
            else:
                if strip and not out and p.startswith(SPACE):
                    p = p[1:]
                out += (p.replace(SPACE, " ") if self.escape_whitespaces else p).encode("utf-8")
        return bytes(out)

    def decode(self, ids, errors="replace"):
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Readable text: a JSON header line, then one "<type> <score> <piece as JSON>" line per id."""
        header = {"model_type": self.model_type, "byte_fallback": self.byte_fallback,
                  "add_dummy_prefix": self.add_dummy_prefix, "remove_extra_whitespaces": self.remove_extra_whitespaces,
                  "escape_whitespaces": self.escape_whitespaces,
                  "treat_whitespace_as_suffix": self.treat_whitespace_as_suffix, "special_tokens": self.visible_specials,
                  "n_pieces": len(self.pieces)}
        if self.charsmap is not None:
            raise ValueError("save: models with a SentencePiece character map stay in their .model file")
        lines = [MAGIC, json.dumps(header)] + [f"{t} {s!r} {json.dumps(p)}" for p, s, t in self.pieces]
        body = "\n".join(lines) + "\n"
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        write_bytes_atomic(path, (body + f"sha256 {digest}\n").encode("utf-8"))

    @classmethod
    def load(cls, path):
        """A file written by save, or a SentencePiece .model (detected by its content)."""
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(MAGIC.encode()):
            return sentencepiece_model.load(cls, data, str(path))
        text = data.decode("utf-8", errors="replace")
        body, sep, tail = text.rpartition("sha256 ")
        if not sep or hashlib.sha256(body.encode("utf-8")).hexdigest() != tail.strip():
            raise ValueError(f"{path}: corrupt or truncated minillm Unigram file (sha256 mismatch)")
        lines = body.splitlines()
        try:
            header = json.loads(lines[1])
            pieces = []
            for ln in lines[2:]:
                t, s, p = ln.split(" ", 2)
                pieces.append((json.loads(p), float(s), int(t)))
            n = header.pop("n_pieces")
        except (IndexError, ValueError, KeyError, RecursionError, AttributeError) as e:
            raise ValueError(f"{path}: malformed minillm Unigram file: {e}") from None
        if n != len(pieces):
            raise ValueError(f"{path}: header says {n} pieces, file has {len(pieces)}")
        return cls(pieces, **header)


def _has_surrogates(text):
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _split_special(text, allowed):
    """[(part, is_special)]: text cut at the allowed special tokens (longest first)."""
    if not allowed:
        return [(text, False)]
    rx = regex.compile("|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True)))
    out, start = [], 0
    for m in rx.finditer(text):
        if m.start() > start:
            out.append((text[start:m.start()], False))
        out.append((m.group(), True))
        start = m.end()
    if start < len(text) or not out:
        out.append((text[start:], False))
    return out

