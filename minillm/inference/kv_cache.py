"""Contiguous KV cache (the "incremental decoding" of Vaswani et al. 2017 as every decoder runs it;
Pope et al. 2022, "Efficiently Scaling Transformer Inference", Sec. 2).

Attention at step t needs the keys and values of every earlier position. They do not change once
computed, so they are kept: one preallocated (L, B, Hkv, S, D) array each for K and V, written at
slot `pos` and read in place. A decode step therefore costs O(1) cache work plus attention over pos
slots, instead of re-running the model over the whole prefix. The sibling paged_kv_cache.py keeps
the same K/V in fixed-size pages from a shared pool so that many sequences of unknown length can
share memory; this one reserves S slots per sequence up front.

Memory per token (the formula kv_cache_analysis.py checks): 2 (K and V) * L * Hkv * D * bytes.
The cache holds float32, or float16 (kv_dtype="float16", llama.cpp's default cache type): half the
bytes to keep and, at decode, to read per token; each key and value is rounded to float16 when
written and widened to float32 when attention reads it.
"""
from dataclasses import dataclass

import numpy as np


KV_DTYPES = {"float32": np.dtype(np.float32), "f32": np.dtype(np.float32),
             "float16": np.dtype(np.float16), "f16": np.dtype(np.float16)}


def kv_dtype_of(kv_dtype, name="kv_dtype"):
    """The cache's element type: "float32"/"f32"/np.float32 or "float16"/"f16"/np.float16 (None:
    float32), as a numpy dtype; a ValueError naming `name` for anything else."""
    if kv_dtype is None:
        return KV_DTYPES["float32"]
    if isinstance(kv_dtype, str):
        dt = KV_DTYPES.get(kv_dtype.lower())
    else:
        try:
            dt = np.dtype(kv_dtype)
        except TypeError:
            dt = None
    if dt not in (KV_DTYPES["float32"], KV_DTYPES["float16"]):
        raise ValueError(f"{name}: expected 'float32' or 'float16', got {kv_dtype!r}")
    return dt


@dataclass
class KVCache:
    k: np.ndarray   # (L, B, Hkv, S, D) float32 or float16
    v: np.ndarray   # (L, B, Hkv, S, D) the same
    pos: int = 0    # slots filled; the next token writes k[:, :, :, pos]

    @classmethod
    def allocate(cls, config, batch_size, max_len, dtype=np.float32):
        """An empty cache for `batch_size` sequences of up to `max_len` tokens of a ModelConfig, of
        dtype (the C steps take float32 and float16; others, e.g. float64, the NumPy path)."""
        if not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise ValueError(f"max_len: expected an int >= 1, got {max_len!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_dim)
        return cls(np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype), 0)

    @property
    def capacity(self):
        return self.k.shape[3]

    def truncate(self, pos):
        """Forget every slot from `pos` on (speculative decoding's rollback). O(1): the stale
        entries stay in memory but attention never reads past pos, and the next write replaces them."""
        if not isinstance(pos, (int, np.integer)) or not 0 <= pos <= self.pos:
            raise ValueError(f"pos: expected an int in [0, {self.pos}], got {pos!r}")
        self.pos = int(pos)

    def nbytes_used(self):
        """Bytes holding real K/V: 2 * L * B * Hkv * pos * D * itemsize."""
        L, B, Hkv, _, D = self.k.shape
        return 2 * L * B * Hkv * self.pos * D * self.k.itemsize

    def nbytes_reserved(self):
        return self.k.nbytes + self.v.nbytes


def kv_bytes_per_token(config, itemsize=4):
    """2 * n_layer * n_kv_head * head_dim * bytes: the K and V one token leaves in every layer."""
    return 2 * config.n_layer * config.n_kv_head * config.head_dim * itemsize
