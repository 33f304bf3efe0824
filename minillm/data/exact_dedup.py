"""Exact deduplication: a document is a duplicate when the hash of its normalised text was seen
before. Normalisation (Unicode NFKC, case folding, punctuation removed, whitespace collapsed) makes
copies that differ only in formatting collide, as in the exact-match pass of RefinedWeb and
FineWeb. The set of seen hashes is either exact (a Python set, 8 bytes of BLAKE2b per document) or
a Bloom filter (Bloom 1970) of fixed size, which bounds memory at the price of a known
false-positive rate: with m bits, k hash functions and n items, P[fp] ≈ (1 - e^{-kn/m})^k, minimised
by k = (m/n) ln 2, so m = -n ln p / (ln 2)^2 bits for a target rate p. The k bit positions come from
two base hashes, g_i = h1 + i·h2 mod m (Kirsch & Mitzenmacher 2006), instead of k separate hashes.
"""
import hashlib
import math
import unicodedata

import numpy as np
import regex

_PUNCT = regex.compile(r"[\p{P}\p{S}]+")


def normalize_text(text):
    """The key exact dedup compares: NFKC, casefolded, punctuation/symbols dropped, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


def text_hash(text):
    """64-bit hash of the normalised text (BLAKE2b, stable across processes): int."""
    digest = hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class BloomFilter:
    """A fixed-size set of 64-bit keys with false positives but no false negatives.
    bits: (m_bytes,) uint8."""

    def __init__(self, capacity, error_rate=1e-3):
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity: expected a positive int, got {capacity!r}")
        if not 0.0 < error_rate < 1.0:
            raise ValueError(f"error_rate: expected a probability in (0, 1), got {error_rate!r}")
        self.m = max(8, int(math.ceil(-capacity * math.log(error_rate) / math.log(2) ** 2)))
        self.k = max(1, int(round(self.m / capacity * math.log(2))))
        self.bits = np.zeros((self.m + 7) // 8, dtype=np.uint8)
        self.capacity, self.error_rate, self.count = capacity, error_rate, 0

    def _positions(self, key):
        h1 = key & 0xFFFFFFFF
        h2 = (key >> 32) | 1                   # odd, so the k positions differ when m is even
        return [(h1 + i * h2) % self.m for i in range(self.k)]

    def __contains__(self, key):
        return all(self.bits[p >> 3] >> (p & 7) & 1 for p in self._positions(key))

    def add(self, key):
        """Insert key; return True if it was (probably) present already."""
        present = True
        for p in self._positions(key):
            byte, bit = p >> 3, np.uint8(1 << (p & 7))
            if not self.bits[byte] & bit:
                present = False
                self.bits[byte] |= bit
        self.count += not present
        return present


class ExactDeduplicator:
    """Stateful exact-duplicate test over a stream: seen(text) is True for the second and later
    copies. bloom_capacity=None keeps an exact set; an int uses a BloomFilter of that capacity."""

    def __init__(self, bloom_capacity=None, error_rate=1e-3):
        self.bloom = None if bloom_capacity is None else BloomFilter(bloom_capacity, error_rate)
        self.hashes = set()

    def seen(self, text):
        key = text_hash(text)
        if self.bloom is not None:
            return self.bloom.add(key)
        if key in self.hashes:
            return True
        self.hashes.add(key)
        return False
