"""Token files: the on-disk training data that `minillm train` reads through np.memmap.

Layout (little-endian): a 1024-byte header of 256 int32 -- [MAGIC, VERSION, n_tokens, itemsize,
vocab_size, 0...] -- followed by n_tokens token ids as uint16 (vocab <= 65536) or uint32. The same
idea as llm.c's .bin shards, with the vocabulary size recorded so a mismatch is caught on load.
"""
import os

import numpy as np

from .atomic import atomic_write

MAGIC = 20251125
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS


def token_dtype(vocab_size):
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def write_tokens(path, ids, vocab_size):
    """Write token ids (any int array-like, all in [0, vocab_size)) to `path` atomically."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise ValueError(f"ids: expected a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size: expected a positive int, got {vocab_size!r}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"ids: values must lie in [0, {vocab_size}), got [{ids.min()}, {ids.max()}]")
    dt = token_dtype(vocab_size)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:5] = [MAGIC, VERSION, ids.size, dt.itemsize, vocab_size]
    with atomic_write(path) as f:
        f.write(header.tobytes())
        f.write(ids.astype(dt.newbyteorder("<"), copy=False).tobytes())


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise ValueError(f"{path}: not a minillm token file (shorter than its {HEADER_BYTES}-byte header)")
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise ValueError(f"{path}: not a minillm token file (bad magic {header[0]})")
    if header[1] != VERSION:
        raise ValueError(f"{path}: unsupported token file version {header[1]}")
    n, itemsize, vocab = int(header[2]), int(header[3]), int(header[4])
    if vocab < 1 or n < 0:
        raise ValueError(f"{path}: corrupt header (vocab_size {vocab}, n_tokens {n}: expected >= 1 and >= 0)")
    if itemsize != token_dtype(vocab).itemsize:
        raise ValueError(f"{path}: corrupt header (itemsize {itemsize}, expected {token_dtype(vocab).itemsize} "
                         f"for vocab_size {vocab})")
    expected = HEADER_BYTES + n * itemsize
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(f"{path}: truncated or corrupt: header says {n} tokens ({expected} bytes), "
                         f"file has {actual} bytes")
    return n, itemsize, vocab


def read_tokens(path):
    """-> (tokens: np.memmap (n,) uint16|uint32, vocab_size). Raises ValueError on a bad file, also
    for a token id >= the header's vocab_size (an embedding lookup would read past its table): one
    pass over the ids, about 0.1 s per 10^8 tokens."""
    n, itemsize, vocab = read_header(path)
    dt = np.dtype("<u2" if itemsize == 2 else "<u4")
    if n == 0:
        return np.zeros(0, dtype=dt), vocab
    ids = np.memmap(path, dtype=dt, mode="r", offset=HEADER_BYTES, shape=(n,))
    hi = int(ids.max())
    if hi >= vocab:
        raise ValueError(f"{path}: token id {hi} at position {int(np.argmax(ids >= vocab))} is outside the "
                         f"header's vocabulary [0, {vocab})")
    return ids, vocab
