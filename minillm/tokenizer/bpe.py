"""Byte-level byte-pair encoding (Sennrich et al. 2016; byte-level as in GPT-2, Radford et al. 2019).

Text -> UTF-8 bytes, cut into pieces by a pre-tokenizer regex (patterns.py); inside each piece the
adjacent pair of tokens with the lowest rank is merged, repeatedly, until no adjacent pair has a
merge. Every string round-trips, because the 256 single bytes are tokens.

One merge table serves two families of vocabularies:
- trained here, GPT-2 `merges.txt`, HF `tokenizer.json`: merge (a, b) -> c has rank = its line in the
  merge list (Sennrich's "apply merges in the order learned");
- tiktoken `.tiktoken` ranks: a pair merges if the concatenation of its bytes is a token, with that
  token's rank (tiktoken's byte_pair_merge). `from_tiktoken` enters every split (x, y) of every
  token into the table, and a piece that is a whole token is emitted directly (`whole_pieces`), as
  tiktoken does, so both encode identically.

Ties go to the leftmost pair. The merge loop runs in C (csrc/bpe.c) with a bounded pre-token cache;
`_merge_reference`/`encode_ordinary_reference` are the plain-Python spec, with an LRU cache, used when
the extension is missing. Training: bpe_train.py. File formats and interop: bpe_io.py.
"""
import codecs
import collections
import functools

import regex

from . import _native_bpe, bpe_io, bpe_train, patterns

_NO_RANK = (1 << 31, -1)


class LRUCache:
    """A least-recently-used map of bounded size: piece bytes -> token ids (the reference path's cache)."""

    def __init__(self, maxsize=65536):
        self.maxsize = maxsize
        self.data = collections.OrderedDict()

    def get(self, key):
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key, value):
        self.data[key] = value
        if len(self.data) > self.maxsize:
            self.data.popitem(last=False)  # evict the least recently used piece


class StreamDecoder:
    """Incremental decoding for streaming generation: `feed(ids)` returns only complete characters;
    the bytes of a character split across tokens wait until its last byte arrives. `flush()` returns
    what is left (an incomplete tail becomes U+FFFD, as `decode` does)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids):
        return self._utf8.decode(self.tokenizer.decode_bytes(ids))

    def flush(self):
        return self._utf8.decode(b"", final=True)


def _check_text(text, name="text"):
    if not isinstance(text, str):
        raise TypeError(f"{name}: expected str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # lone surrogates have no UTF-8 form; tiktoken replaces them with U+FFFD, so do we
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class BPETokenizer:
    """Byte-level BPE. Build with `train`, `load`, `from_tiktoken` or bpe_io's readers.

    merges: {(a, b): (rank, merged_id)}; vocab: {id: bytes} for ordinary tokens; byte_ids: (256,)
    the token of each single byte; special_tokens: {str: id}; whole_pieces: tiktoken's shortcut.
    """

    def __init__(self, merges, vocab, pattern=patterns.CL100K, special_tokens=None, byte_ids=None,
                 whole_pieces=False, cache_size=65536):
        self.pattern = patterns.resolve(pattern)
        self.merges = dict(merges)
        self.vocab = dict(vocab)
        self.special_tokens = dict(special_tokens or {})
        self.whole_pieces = bool(whole_pieces)
        self.byte_ids = list(range(256)) if byte_ids is None else [int(i) for i in byte_ids]
        if len(self.byte_ids) != 256:
            raise ValueError(f"byte_ids: expected 256 ids, got {len(self.byte_ids)}")
        for b, i in enumerate(self.byte_ids):
            if self.vocab.get(i) != bytes([b]):
                raise ValueError(f"vocab: byte {b} must be a token (byte_ids[{b}] = {i})")
        for (a, b), (_, c) in self.merges.items():
            if a not in self.vocab or b not in self.vocab or c not in self.vocab:
                raise ValueError(f"merges: pair ({a}, {b}) -> {c} refers to an id missing from vocab")
        for s, i in self.special_tokens.items():
            if not isinstance(s, str) or not s:
                raise ValueError(f"special_tokens: keys must be non-empty str, got {s!r}")
            if i in self.vocab:
                raise ValueError(f"special_tokens: id {i} of {s!r} is already an ordinary token")
        if len(set(self.special_tokens.values())) != len(self.special_tokens):
            raise ValueError("special_tokens: two special tokens share an id")
        self.inverse_special = {i: s.encode("utf-8") for s, i in self.special_tokens.items()}
        self._pieces = {bts: i for i, bts in self.vocab.items()} if self.whole_pieces else {}
        self._cache = LRUCache(cache_size)
        self._cache_size = cache_size
        self._pattern_id = patterns.BUILTIN.get(self.pattern, 0)
        self._native = None
        if _native_bpe.available():
            self._native = _native_bpe.NativeMerger(self.merges, self.byte_ids, self._pieces, cache_size)

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def n_vocab(self):
        """One more than the largest id (ordinary or special)."""
        return max(list(self.vocab) + list(self.special_tokens.values())) + 1

    @property
    def vocab_size(self):
        """Alias of n_vocab: the embedding-table size a model needs for this tokenizer."""
        return self.n_vocab

    def token_bytes(self, token_id):
        """The bytes of one token (special tokens: their UTF-8 text)."""
        b = self.vocab.get(token_id)
        if b is None:
            b = self.inverse_special.get(token_id)
        if b is None:
            raise ValueError(f"token id {token_id!r} is not in the vocabulary (n_vocab={self.n_vocab})")
        return b

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, text_or_iterator, vocab_size, pattern=patterns.CL100K, special_tokens=None,
              method="fast", progress=None):
        """Learn vocab_size - 256 - len(special_tokens) merges from text (a str or an iterable of str).

        Ids: 0..255 the bytes, then one per merge in the order learned, then the special tokens
        (whose occurrences are cut out of the training text). method: "fast" (C, else the incremental
        Python trainer), "incremental" (Python, pair counts + heap) or "reference" (recount per merge).
        progress(done, total) is called as merges are made. Fewer merges result if the corpus runs out
        of pairs.
        """
        pattern = patterns.resolve(pattern)
        special_tokens = list(special_tokens or [])
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size: expected int, got {type(vocab_size).__name__}")
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(f"vocab_size: must be >= 256 + {len(special_tokens)} special tokens "
                             f"= {256 + len(special_tokens)}, got {vocab_size}")
        if method not in ("fast", "incremental", "reference"):
            raise ValueError(f"method: expected 'fast', 'incremental' or 'reference', got {method!r}")
        words = count_pieces(text_or_iterator, pattern, special_tokens)
        n_merges = vocab_size - 256 - len(special_tokens)
        if method == "reference":
            learned = bpe_train.train_reference(words, n_merges, 256, progress)
        elif method == "fast" and _native_bpe.available():
            learned = _native_bpe.train_native(words, n_merges, 256, progress)
        else:
            learned = bpe_train.train_incremental(words, n_merges, 256, progress)
        return cls.from_merge_list([(a, b) for a, b, _ in learned], pattern,
                                   {s: 256 + len(learned) + k for k, s in enumerate(special_tokens)})

    @classmethod
    def from_merge_list(cls, merge_list, pattern=patterns.CL100K, special_tokens=None):
        """Ids 0..255 are the bytes; merge k of merge_list (a, b) creates id 256 + k with rank k."""
        vocab = {i: bytes([i]) for i in range(256)}
        merges = {}
        for k, (a, b) in enumerate(merge_list):
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge_list[{k}]: ({a}, {b}) uses an id not defined before it")
            vocab[256 + k] = vocab[a] + vocab[b]
            merges[(a, b)] = (k, 256 + k)
        return cls(merges, vocab, pattern, special_tokens)

    def merge_list(self):
        """The merges as [(a, b)] in rank order (trained / merges.txt tokenizers)."""
        return [pair for pair, _ in sorted(self.merges.items(), key=lambda kv: kv[1])]

    # ------------------------------------------------------------------ encoding
    def _merge_reference(self, piece):
        """Token ids of one piece (bytes): merge the lowest-ranked adjacent pair, leftmost on ties."""
        if self.whole_pieces and piece in self._pieces:
            return [self._pieces[piece]]
        ids = [self.byte_ids[b] for b in piece]
        while len(ids) >= 2:
            ranks = [self.merges.get(pair, _NO_RANK) for pair in zip(ids, ids[1:])]
            i = min(range(len(ranks)), key=lambda k: ranks[k][0])  # min() keeps the first (leftmost)
            if ranks[i] is _NO_RANK:
                break
            ids[i:i + 2] = [ranks[i][1]]
        return ids

    def encode_ordinary_reference(self, text):
        """Encode text that holds no special tokens: regex split, then the Python merge loop, cached."""
        return self._merge_pieces_reference(p.encode("utf-8") for p in patterns.split_reference(text, self.pattern))

    def _merge_pieces_reference(self, pieces):  # iterable of UTF-8 bytes -> ids, each piece merged alone
        out = []
        for b in pieces:
            ids = self._cache.get(b)
            if ids is None:
                ids = self._merge_reference(b)
                self._cache.put(b, ids)
            out.extend(ids)
        return out

    def encode_ordinary(self, text):
        """Encode text treating special-token strings as plain text."""
        text = _check_text(text)
        if self._native is None:
            return self.encode_ordinary_reference(text)
        if self._pattern_id:
            return self._native.encode(text.encode("utf-8"), self._pattern_id)
        pieces = [p.encode("utf-8") for p in patterns.split_reference(text, self.pattern)]
        return self._native.encode_pieces(pieces)

    def encode_pieces(self, pieces):
        """Token ids of text already cut into pieces (a list of str or of UTF-8 bytes), each merged on
        its own: for pre-tokenizers that are not one regex (pretokenizers.py)."""
        data = [p if isinstance(p, bytes) else _check_text(p, "pieces").encode("utf-8") for p in pieces]
        if self._native is not None:
            return self._native.encode_pieces(data)
        return self._merge_pieces_reference(data)

    def _special_regex(self, tokens):
        return _special_regex(tuple(tokens))

    def encode(self, text, allowed_special=frozenset(), disallowed_special="all"):
        """Token ids of text (str). tiktoken's rules for special tokens: those in allowed_special
        ("all" or a set of strings) become their ids; any other special token found in the text raises
        ValueError if it is in disallowed_special ("all" = every special not allowed), else it is
        encoded as plain text."""
        text = _check_text(text)
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special", known_only=False)
        if disallowed:
            m = self._special_regex(sorted(disallowed)).search(text)
            if m:
                raise ValueError(
                    f"text contains the special token {m.group()!r}, which is not allowed. Pass it in "
                    f"allowed_special to encode it as a special token, or disallowed_special=() to "
                    f"encode it as plain text.")
        if not allowed:
            return self.encode_ordinary(text)
        # tiktoken: find the next special token (in dict order of alternatives) that is allowed
        special = self._special_regex([s for s in self.special_tokens])
        out, start = [], 0
        while True:
            m, find = None, start
            while True:
                m = special.search(text, find)
                if m is None or m.group() in allowed:
                    break
                find = m.start() + 1
            end = len(text) if m is None else m.start()
            if end > start:
                out.extend(self.encode_ordinary(text[start:end]))
            if m is None:
                return out
            out.append(self.special_tokens[m.group()])
            start = m.end()

    def _special_set(self, value, name, known_only=True):
        if value == "all":
            return set(self.special_tokens)
        if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
            raise TypeError(f"{name}: expected 'all' or a set of special-token strings, got {value!r}")
        unknown = [s for s in value if s not in self.special_tokens]
        if unknown and known_only:
            raise ValueError(f"{name}: {unknown!r} are not special tokens of this tokenizer "
                             f"(known: {sorted(self.special_tokens)})")
        return set(value)

    def encode_batch(self, texts, allowed_special=frozenset(), disallowed_special="all"):
        """[encode(t) for t in texts] (sequential: the pre-token cache is shared state)."""
        if isinstance(texts, str):
            raise TypeError("texts: expected a list of str, got a single str")
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids):
        """The exact bytes of a token sequence."""
        vocab, special = self.vocab, self.inverse_special
        try:
            return b"".join([vocab[i] if i in vocab else special[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or (i not in vocab and i not in special))
            raise ValueError(f"ids: {bad!r} is not a token id of this tokenizer (n_vocab={self.n_vocab})") from None

    def decode(self, ids, errors="replace"):
        """Text of a token sequence; bytes that are not valid UTF-8 become U+FFFD (errors="replace")."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_tokens_bytes(self, ids):
        """Per-token bytes: [token_bytes(i) for i in ids]."""
        return [self.token_bytes(i) for i in ids]

    def decode_with_offsets(self, ids):
        """(text, offsets): offsets[k] is the index in text of the character where token k starts; a
        token that begins inside a multi-byte character gets that character's index."""
        parts = self.decode_tokens_bytes(ids)
        offsets, n_chars = [], 0
        for b in parts:
            # continuation bytes (10xxxxxx) do not start a character
            starts_mid = bool(b) and 0x80 <= b[0] < 0xC0
            offsets.append(max(0, n_chars - starts_mid))
            n_chars += sum(1 for c in b if not 0x80 <= c < 0xC0)
        return b"".join(parts).decode("utf-8", errors="replace"), offsets

    def stream_decoder(self):
        """A StreamDecoder for this tokenizer."""
        return StreamDecoder(self)

    # ------------------------------------------------------------------ files and interop
    def save(self, path):
        bpe_io.save(self, path)

    @classmethod
    def load(cls, path):
        return bpe_io.load(cls, path)

    @classmethod
    def from_tiktoken(cls, path_or_ranks, pattern, special_tokens=None):
        """From a `.tiktoken` rank file (plain or gzip) or a dict {bytes: rank}; encodes like tiktoken."""
        return bpe_io.from_tiktoken(cls, path_or_ranks, pattern, special_tokens)


@functools.lru_cache(maxsize=64)
def _special_regex(tokens):
    return regex.compile("|".join(regex.escape(t) for t in tokens))


def count_pieces(text_or_iterator, pattern, special_tokens=()):
    """{tuple of byte values: count} over the pre-tokenized pieces of the training text."""
    split_special = _special_regex(tuple(special_tokens)) if special_tokens else None
    pattern_id = patterns.BUILTIN.get(pattern, 0) if _native_bpe.available() else 0
    counts = collections.Counter()
    for chunk in patterns.text_chunks(text_or_iterator):
        chunk = _check_text(chunk)
        for part in (split_special.split(chunk) if split_special else [chunk]):
            if pattern_id:
                b = part.encode("utf-8")
                ends = _native_bpe.split(b, pattern_id).tolist()
                counts.update(b[s:e] for s, e in zip([0] + ends, ends))
            else:
                counts.update(p.encode("utf-8") for p in patterns.split_reference(part, pattern))
    return {tuple(piece): c for piece, c in counts.items()}
