"""64-bit hashing shared by the deduplication modules (MinHash, SimHash, Bloom filter, LSH bands).

Everything here is built on one bijective 64-bit mixer, the finaliser of SplitMix64 (Steele, Lea &
Flood 2014, "Fast splittable pseudorandom number generators"; constants from Stafford's "Mix13"):

    z ^= z >> 30;  z *= 0xBF58476D1CE4E5B9;  z ^= z >> 27;  z *= 0x94D049BB133111EB;  z ^= z >> 31

Every input bit flips each output bit with probability ~1/2 (avalanche), so `mix64(x ^ seed)` for
different seeds behaves like a family of independent random hash functions, which is what MinHash
and SimHash assume. Three versions with the same results: `mix64_py` (Python ints, the spec),
`mix64_np` (NumPy uint64 arrays) and `mix64` (Numba, called from the compiled kernels).
Text is hashed as a sequence of Unicode code points (uint32), never as Python's salted `hash()`,
so results are identical across processes and runs.
"""
import numba
import numpy as np

MASK64 = (1 << 64) - 1
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
FNV_OFFSET = 0xCBF29CE484222325  # FNV-1a 64-bit offset basis and prime (Fowler, Noll, Vo)
FNV_PRIME = 0x100000001B3


def mix64_py(z):
    """SplitMix64 finaliser on a Python int in [0, 2**64). The readable reference."""
    z = (z ^ (z >> 30)) * _M1 & MASK64
    z = (z ^ (z >> 27)) * _M2 & MASK64
    return z ^ (z >> 31)


def mix64_np(z):
    """SplitMix64 finaliser over a uint64 array (any shape); uint64 arithmetic wraps mod 2**64."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def mix64(z):
    # subtle: every constant is a uint64 so Numba never unifies uint64 with int64 into float64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
    return z ^ (z >> np.uint64(31))


def fnv1a_py(codepoints, h=FNV_OFFSET):
    """FNV-1a over a sequence of code points (one 'byte' per code point), then mixed: a word's hash."""
    for c in codepoints:
        h = ((h ^ c) * FNV_PRIME) & MASK64
    return mix64_py(h)


def seeds_for(n, seed):
    """n independent 64-bit keys from `seed`, one per hash function: (n,) uint64."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"number of hash functions: expected a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)  # (n,) uint64


def encode_codepoints(texts, collapse_whitespace):
    """Concatenate the texts as UTF-32 code points for the compiled kernels.

    Returns buf (sum of lengths,) uint32 and offsets (N + 1,) int64 with text i in
    buf[offsets[i]:offsets[i + 1]]. With collapse_whitespace, each text is first rewritten as
    " ".join(text.split()), so words are exactly the runs between single spaces (code point 32)."""
    parts = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
        parts.append((" ".join(t.split()) if collapse_whitespace else t).encode("utf-32-le"))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)                     # (N + 1,)
    np.cumsum([len(p) // 4 for p in parts], out=offsets[1:])
    buf = np.frombuffer(b"".join(parts), dtype="<u4").astype(np.uint32, copy=False)  # (total,)
    return buf, offsets
