"""`cached_bpe`: train a BPE vocabulary on a corpus once and reuse it from disk afterwards.

The cache key is a SHA-256 of everything that decides the merges (the text, vocab_size, the
pattern, the special tokens and the trainer's file-format version), so a changed corpus or setting
trains anew, and the file is written atomically (temp file + rename), so a crash never leaves a
half-written tokenizer behind. A cached file that fails to load is retrained and replaced.
"""
import hashlib
import os

from . import patterns
from .bpe import BPETokenizer

_VERSION = b"minillm-bpe-cache 1"


def cache_key(text, vocab_size, pattern=patterns.CL100K, special_tokens=()):
    h = hashlib.sha256(_VERSION)
    for part in (str(int(vocab_size)), patterns.resolve(pattern), "\x00".join(special_tokens), text):
        h.update(b"\x00" + part.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def cached_bpe(text, vocab_size, cache_dir, pattern=patterns.CL100K, special_tokens=("<|endoftext|>",),
               progress=None):
    """The BPETokenizer trained on `text` (str) with `vocab_size`, loaded from `cache_dir` if an
    identical training ran before, else trained now and saved to cache_dir/bpe-<key>.bpe."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    special_tokens = list(special_tokens or ())
    path = os.path.join(os.fspath(cache_dir), f"bpe-{cache_key(text, vocab_size, pattern, special_tokens)[:32]}.bpe")
    if os.path.exists(path):
        try:
            return BPETokenizer.load(path)
        except ValueError:
            pass  # corrupt or from an incompatible version: retrain and overwrite below
    tok = BPETokenizer.train(text, vocab_size, pattern=pattern, special_tokens=special_tokens, progress=progress)
    tok.save(path)
    return tok
