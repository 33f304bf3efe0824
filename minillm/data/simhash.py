"""SimHash fingerprints (Charikar 2002, "Similarity estimation techniques from rounding
algorithms") with Hamming-distance search by permuted tables (Manku, Jain & Das Sarma 2007,
"Detecting near-duplicates for web crawling", Sec. 3).

A document's features are its word (or character) n-gram shingles, each hashed to 64 bits. For
every bit position i the fingerprint bit is the sign of Σ_features (+1 if the feature hash has bit i
set, else -1). Two documents whose feature sets have cosine similarity θ-close differ in each bit
with probability θ/π, so near-duplicates have small Hamming distance. Unlike MinHash (minhash.py),
which estimates Jaccard with P values per document, SimHash stores one 64-bit word per document.

Search: to find all pairs within Hamming distance k, cut the 64 bits into k + 1 blocks. By the
pigeonhole principle two fingerprints that differ in at most k bits agree exactly on at least one
block, so sorting the fingerprints by each block in turn (the "permuted tables") and comparing only
neighbours with an equal block finds every such pair; each candidate is then checked exactly.
"""
import numba
import numpy as np

from .hashing import encode_codepoints, mix64
from .minhash import _SHINGLE_SEED, _items
from .unionfind import UnionFind


@numba.njit(cache=True, parallel=True)
def _simhash_kernel(buf, offsets, ngram, word_mode, out):
    # buf (total,) uint32, offsets (N + 1,) int64, out (N,) uint64
    for d in numba.prange(offsets.shape[0] - 1):
        lo, hi = offsets[d], offsets[d + 1]
        items = np.empty(hi - lo + 1, dtype=np.uint64)
        m = _items(buf, lo, hi, word_mode, items)
        votes = np.zeros(64, dtype=np.int64)                 # (64,) Σ ±1 per bit
        width = min(ngram, m)
        for s in range(m - width + 1 if m > 0 else 0):
            x = np.uint64(_SHINGLE_SEED)
            for j in range(width):
                x = mix64(x ^ items[s + j])
            for i in range(64):
                votes[i] += 2 * np.int64((x >> np.uint64(i)) & np.uint64(1)) - 1
        fp = np.uint64(0)
        for i in range(64):
            if votes[i] > 0:
                fp |= np.uint64(1) << np.uint64(i)
        out[d] = fp


def simhash_fingerprints(texts, ngram=3, shingle="word"):
    """64-bit SimHash of each text: (N,) uint64. Shingles as in minhash_signatures (word n-grams
    of whitespace-separated words, or character n-grams); an empty text gets fingerprint 0."""
    if not isinstance(ngram, (int, np.integer)) or ngram < 1:
        raise ValueError(f"ngram: expected a positive int, got {ngram!r}")
    if shingle not in ("word", "char"):
        raise ValueError(f"shingle: expected 'word' or 'char', got {shingle!r}")
    texts = list(texts)
    buf, offsets = encode_codepoints(texts, collapse_whitespace=(shingle == "word"))
    out = np.zeros(len(texts), dtype=np.uint64)                             # (N,)
    if len(texts):
        _simhash_kernel(buf, offsets, int(ngram), shingle == "word", out)
    return out


def hamming(a, b):
    """Bitwise Hamming distance of uint64 arrays (broadcasting): popcount(a ^ b)."""
    return np.bitwise_count(np.asarray(a, dtype=np.uint64) ^ np.asarray(b, dtype=np.uint64))


def _blocks(k):
    """Cut 64 bit positions into k + 1 contiguous blocks: list of (shift, width)."""
    edges = np.linspace(0, 64, k + 2).round().astype(int)
    return [(int(lo), int(hi - lo)) for lo, hi in zip(edges[:-1], edges[1:])]


def hamming_pairs(fingerprints, max_distance=3):
    """All pairs (i < j) with popcount(fp_i ^ fp_j) <= max_distance: (E, 2) int64, sorted.
    One sorted table per block (max_distance + 1 tables); exact check of each candidate."""
    fp = np.asarray(fingerprints, dtype=np.uint64)
    if fp.ndim != 1:
        raise ValueError(f"fingerprints: expected a 1-D uint64 array, got shape {fp.shape}")
    if not isinstance(max_distance, (int, np.integer)) or not 0 <= max_distance < 32:
        raise ValueError(f"max_distance: expected an int in [0, 32), got {max_distance!r}")
    n = fp.shape[0]
    codes = []
    for shift, width in _blocks(max_distance):
        block = (fp >> np.uint64(shift)) & np.uint64((1 << width) - 1)      # (N,) this table's key
        order = np.argsort(block, kind="stable")
        b = block[order]
        cuts = np.flatnonzero(b[1:] != b[:-1]) + 1
        for group in np.split(order, cuts):
            if len(group) < 2:
                continue
            group = np.sort(group)
            i, j = np.triu_indices(len(group), k=1)
            ok = hamming(fp[group[i]], fp[group[j]]) <= max_distance
            codes.append(group[i[ok]] * n + group[j[ok]])
    if not codes:
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(codes))
    return np.stack([codes // n, codes % n], axis=1).astype(np.int64)      # (E, 2)


def simhash_clusters(texts, max_distance=3, ngram=3, shingle="word"):
    """Clusters (lists of indices, more than one member) of texts whose SimHash fingerprints are
    connected by pairs within `max_distance` bits; resolved with union-find like dedup_clusters."""
    texts = list(texts)
    pairs = hamming_pairs(simhash_fingerprints(texts, ngram, shingle), max_distance)
    uf = UnionFind(len(texts))
    uf.union_edges(pairs[:, 0], pairs[:, 1])
    return uf.components(min_size=2)
