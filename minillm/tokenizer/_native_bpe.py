"""cffi wrappers around csrc/bpe.c. Each has a plain-Python reference with the same meaning:

    split(text, pattern)          patterns.split_reference
    NativeMerger.merge(piece)     BPETokenizer._merge_reference
    NativeMerger.encode(text)     BPETokenizer.encode_ordinary_reference
    train_native(words, ...)      bpe_train.train_incremental

`available()` is False when the extension was not built or MINILLM_KERNELS=numpy; the tokenizer
then runs its Python paths. The wrappers own every buffer they hand to C and size it so that C
cannot write past it: a text of n bytes has at most n pieces and at most n tokens.
"""
import os
import threading

import numpy as np

from ..kernels.native import ffi, lib, pointer  # lib None: no compiler at install time
from . import patterns

_HAVE = lib is not None and hasattr(lib, "bpe_encode")


def available():
    return _HAVE and os.environ.get("MINILLM_KERNELS", "").lower() != "numpy"


def _class_table_ptr():
    return pointer(patterns.class_table(), np.uint8, "class table")  # kept alive by patterns' cache


def split(text_bytes, pattern_id):
    """End offsets (int64) of the pieces of UTF-8 `text_bytes` under built-in pattern `pattern_id`."""
    ends = np.empty(max(len(text_bytes), 1), dtype=np.int64)  # (n,) at most one piece per byte
    k = lib.bpe_split(_class_table_ptr(), pattern_id, text_bytes, len(text_bytes), pointer(ends, np.int64, "ends", True))
    if k < 0:
        raise ValueError("split: text is not valid UTF-8 or the pattern id is unknown")
    return ends[:k]


class NativeMerger:
    """A C merge table + pre-token cache. Calls are serialised by a lock: the cache is shared state."""

    def __init__(self, merges, byte_ids, pieces=None, cache_size=65536):
        """merges: {(a, b): (rank, merged)}; byte_ids: 256 ids; pieces: {bytes: id} shortcut or None."""
        n = len(merges)
        left = np.fromiter((p[0] for p in merges), dtype=np.int32, count=n)    # (n,)
        right = np.fromiter((p[1] for p in merges), dtype=np.int32, count=n)   # (n,)
        rank = np.fromiter((v[0] for v in merges.values()), dtype=np.int32, count=n)
        merged = np.fromiter((v[1] for v in merges.values()), dtype=np.int32, count=n)
        b = np.asarray(byte_ids, dtype=np.int32)                                # (256,)
        if b.shape != (256,):
            raise ValueError(f"byte_ids: expected 256 ids, got shape {b.shape}")
        m = lib.bpe_model_new(n, pointer(left, np.int32), pointer(right, np.int32), pointer(rank, np.int32),
                              pointer(merged, np.int32), pointer(b, np.int32), int(cache_size))
        if m == ffi.NULL:
            raise MemoryError("bpe_model_new failed")
        self._m = ffi.gc(m, lib.bpe_model_free)
        for piece, token in (pieces or {}).items():
            if lib.bpe_model_add_piece(self._m, piece, len(piece), token) != 0:
                raise MemoryError("bpe_model_add_piece failed")
        self._lock = threading.Lock()

    def merge(self, piece):
        """Token ids of one piece of bytes, by the C merge loop (no cache)."""
        out = np.empty(max(len(piece), 1), dtype=np.int32)
        k = lib.bpe_merge(self._m, piece, len(piece), pointer(out, np.int32, "out", True))
        return out[:k].tolist()

    def encode(self, text_bytes, pattern_id):
        """Split with a built-in pattern and merge, all in C."""
        out = np.empty(max(len(text_bytes), 1), dtype=np.int32)  # (n,) at most one token per byte
        with self._lock:
            k = lib.bpe_encode(self._m, _class_table_ptr(), pattern_id, text_bytes, len(text_bytes),
                               pointer(out, np.int32, "out", True))
        if k < 0:
            raise ValueError("encode: text is not valid UTF-8 or the pattern id is unknown")
        return out[:k].tolist()

    def encode_pieces(self, pieces):
        """Merge pre-split pieces (a list of bytes) through the cache."""
        text = b"".join(pieces)
        ends = np.cumsum(np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)))  # (P,)
        out = np.empty(max(len(text), 1), dtype=np.int32)
        with self._lock:
            k = lib.bpe_encode_pieces(self._m, text, pointer(ends, np.int64), len(pieces), pointer(out, np.int32, "out", True))
        if k < 0:
            raise MemoryError("bpe_encode_pieces failed")
        return out[:k].tolist()


def train_native(words, n_merges, next_id=256, progress=None, chunk=256):
    """bpe_train.train_incremental in C: same arguments, same merges."""
    items = list(words.items())
    lengths = np.fromiter((len(w) for w, _ in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)             # (W+1,)
    np.cumsum(lengths, out=offsets[1:])
    symbols = np.fromiter((s for w, _ in items for s in w), dtype=np.int32, count=int(offsets[-1]))
    counts = np.fromiter((c for _, c in items), dtype=np.int64, count=len(items))  # (W,)
    t = lib.bpe_trainer_new(len(items), pointer(offsets, np.int64), pointer(symbols, np.int32),
                            pointer(counts, np.int64), next_id)
    if t == ffi.NULL:
        raise MemoryError("bpe_trainer_new failed")
    t = ffi.gc(t, lib.bpe_trainer_free)
    left = np.empty(max(n_merges, 1), dtype=np.int32)
    right = np.empty(max(n_merges, 1), dtype=np.int32)
    cnt = np.empty(max(n_merges, 1), dtype=np.int64)
    done = 0
    while done < n_merges:
        k = min(chunk, n_merges - done)  # in chunks, so a progress bar can move
        got = lib.bpe_trainer_step(t, k, pointer(left[done:], np.int32, "left", True),
                                   pointer(right[done:], np.int32, "right", True),
                                   pointer(cnt[done:], np.int64, "counts", True))
        if got < 0:
            raise MemoryError("bpe_trainer_step failed")
        done += got
        if progress:
            progress(done, n_merges)
        if got < k:
            break
    return list(zip(left[:done].tolist(), right[:done].tolist(), cnt[:done].tolist()))
