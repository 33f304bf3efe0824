"""MinHash signatures and locality-sensitive hashing (LSH) for near-duplicate detection.

MinHash (Broder 1997, "On the resemblance and containment of documents"): for a random hash
function h, P[min h(A) = min h(B)] = |A ∩ B| / |A ∪ B| = J(A, B), the Jaccard similarity of the two
shingle sets. With P independent hash functions the signature sig[k] = min_{x in A} h_k(x) gives the
unbiased estimate Ĵ = (1/P) Σ_k [sig_A[k] = sig_B[k]], a binomial mean with standard error
sqrt(J(1 - J)/P) <= 1/(2 sqrt(P)).

LSH banding (Indyk & Motwani 1998; Leskovec, Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3):
split the P values into b bands of r rows (b·r <= P) and bucket documents by each band's r values.
Two documents with Jaccard s share at least one bucket with probability

    P_candidate(s) = 1 - (1 - s^r)^b                                   (the S-curve)

so (b, r) is chosen to put the steep part of the S-curve at the target threshold t, minimising the
weighted false-positive area ∫_0^t P(s) ds plus false-negative area ∫_t^1 (1 - P(s)) ds.
Candidate pairs are merged into clusters with union-find (unionfind.py).

Shingles: n-grams of whitespace-separated words (default) or of characters. Hash functions are
h_k(x) = high 32 bits of mix64(x ^ seed_k) (hashing.py), i.e. the "k independent hash functions"
form of MinHash rather than k permutations. `minhash_signatures` runs a Numba kernel;
`minhash_signatures_reference` is the plain-Python spec it must match bit for bit.
Compared with datasketch's MinHash (which this module is benchmarked against): same estimator, but
the shingle hashing runs compiled over all documents at once instead of one SHA-1 per shingle.
"""
from dataclasses import dataclass

import numba
import numpy as np

from .hashing import (FNV_OFFSET, FNV_PRIME, encode_codepoints, fnv1a_py, mix64, mix64_np,
                      mix64_py, seeds_for)
from .unionfind import UnionFind

EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a document with no shingles (the empty set)
_SHINGLE_SEED = 0x9E3779B97F4A7C15  # start of the fold that hashes a shingle; any odd constant


def _check_args(num_perm, ngram, shingle):
    if not isinstance(num_perm, (int, np.integer)) or num_perm < 1:
        raise ValueError(f"num_perm: expected a positive int, got {num_perm!r}")
    if not isinstance(ngram, (int, np.integer)) or ngram < 1:
        raise ValueError(f"ngram: expected a positive int, got {ngram!r}")
    if shingle not in ("word", "char"):
        raise ValueError(f"shingle: expected 'word' or 'char', got {shingle!r}")


@numba.njit(cache=True)
def _items(buf, lo, hi, word_mode, items):
    """Fill items with one 64-bit FNV-1a hash per word (word_mode) or with the code points of
    buf[lo:hi]; return how many. items: (>= hi - lo + 1,) uint64."""
    m = 0
    if word_mode:
        h = np.uint64(FNV_OFFSET)
        in_word = False
        for i in range(lo, hi):
            c = buf[i]
            if c == 32:                                      # words are separated by one space
                if in_word:
                    items[m] = mix64(h)
                    m += 1
                    h = np.uint64(FNV_OFFSET)
                    in_word = False
            else:
                h = (h ^ np.uint64(c)) * np.uint64(FNV_PRIME)
                in_word = True
        if in_word:
            items[m] = mix64(h)
            m += 1
    else:
        for i in range(lo, hi):
            items[m] = np.uint64(buf[i])
            m += 1
    return m


@numba.njit(cache=True)
def _update_signature(x, seeds, sig):
    # sig[k] = min(sig[k], h_k(x)) for all k: the hot loop, vectorised over the P functions
    for k in range(seeds.shape[0]):
        v = np.uint32(mix64(x ^ seeds[k]) >> np.uint64(32))
        sig[k] = min(sig[k], v)


@numba.njit(cache=True, parallel=True)
def _minhash_kernel(buf, offsets, ngram, word_mode, seeds, out):
    # buf (total,) uint32 code points, offsets (N + 1,) int64, seeds (P,) uint64, out (N, P) uint32
    N = offsets.shape[0] - 1
    P = seeds.shape[0]
    for d in numba.prange(N):
        lo, hi = offsets[d], offsets[d + 1]
        items = np.empty(hi - lo + 1, dtype=np.uint64)       # (<= chars + 1,) an upper bound
        m = _items(buf, lo, hi, word_mode, items)
        sig = np.full(P, np.uint32(0xFFFFFFFF), dtype=np.uint32)  # (P,); the empty set stays EMPTY
        width = min(ngram, m)                                 # a short text is one whole shingle
        for s in range(m - width + 1 if m > 0 else 0):
            x = np.uint64(_SHINGLE_SEED)
            for j in range(width):                            # order-sensitive fold over the n-gram
                x = mix64(x ^ items[s + j])
            _update_signature(x, seeds, sig)
        out[d, :] = sig


def minhash_signatures(texts, num_perm=128, ngram=5, seed=0, shingle="word"):
    """MinHash signatures of a list of texts: (N, num_perm) uint32.

    texts: sequence of N str. Shingles are `ngram` consecutive whitespace-separated words
    (shingle="word") or characters (shingle="char"); a text shorter than `ngram` items is a single
    shingle; an empty text gets the all-0xFFFFFFFF signature. Same (num_perm, ngram, seed, shingle)
    -> same signatures, in any process. Runs on all cores (numba.set_num_threads to limit)."""
    _check_args(num_perm, ngram, shingle)
    texts = list(texts)
    buf, offsets = encode_codepoints(texts, collapse_whitespace=(shingle == "word"))
    out = np.empty((len(texts), num_perm), dtype=np.uint32)                # (N, P)
    if len(texts):
        _minhash_kernel(buf, offsets, int(ngram), shingle == "word", seeds_for(num_perm, seed), out)
    return out


def minhash_signatures_reference(texts, num_perm=128, ngram=5, seed=0, shingle="word"):
    """Plain-Python MinHash with the same arguments and bit-identical output. The spec: slow."""
    _check_args(num_perm, ngram, shingle)
    seeds = [int(s) for s in seeds_for(num_perm, seed)]
    out = np.full((len(texts), num_perm), EMPTY, dtype=np.uint32)           # (N, P)
    for d, text in enumerate(texts):
        if shingle == "word":
            items = [fnv1a_py(ord(c) for c in w) for w in text.split()]
        else:
            items = [ord(c) for c in text]
        if not items:
            continue
        width = min(ngram, len(items))
        shingles = set()
        for s in range(len(items) - width + 1):
            x = _SHINGLE_SEED
            for item in items[s:s + width]:
                x = mix64_py(x ^ item)
            shingles.add(x)
        for k, seed_k in enumerate(seeds):
            out[d, k] = min(mix64_py(x ^ seed_k) >> 32 for x in shingles)
    return out


def estimate_jaccard(sig_a, sig_b):
    """Ĵ = fraction of equal signature values; sig_a, sig_b: (P,) unsigned ints from one call."""
    a, b = np.asarray(sig_a), np.asarray(sig_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"sig_a, sig_b: expected two non-empty 1-D signatures of equal length, "
                         f"got shapes {a.shape} and {b.shape}")
    return float(np.mean(a == b))


# --- LSH banding ---------------------------------------------------------------------------------

def s_curve(s, bands, rows):
    """Probability that a pair with Jaccard s becomes a candidate: 1 - (1 - s^r)^b."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


@dataclass(frozen=True)
class LSHParams:
    bands: int
    rows: int
    false_positive: float  # ∫_0^t P(s) ds: area of the S-curve below the threshold
    false_negative: float  # ∫_t^1 (1 - P(s)) ds: area missed above it
    threshold: float

    def describe(self):
        """One line for logs: the trade-off this choice makes."""
        knee = (1.0 / self.bands) ** (1.0 / self.rows)
        return (f"LSH b={self.bands} bands x r={self.rows} rows (threshold {self.threshold:.2f}, "
                f"S-curve midpoint ~{knee:.3f}): false-positive area {self.false_positive:.4f}, "
                f"false-negative area {self.false_negative:.4f}; "
                f"P(candidate) at J=t-0.1: {float(s_curve(max(self.threshold - 0.1, 0), self.bands, self.rows)):.3f}, "
                f"J=t: {float(s_curve(self.threshold, self.bands, self.rows)):.3f}, "
                f"J=t+0.1: {float(s_curve(min(self.threshold + 0.1, 1), self.bands, self.rows)):.3f}")


def _integrate(f, lo, hi, n=1001):
    s = np.linspace(lo, hi, n)
    return float(np.trapezoid(f(s), s))


def lsh_params(threshold, num_perm, false_positive_weight=0.5, false_negative_weight=0.5):
    """Choose (bands, rows) with bands·rows <= num_perm minimising the weighted sum of the
    false-positive and false-negative areas under the S-curve around `threshold` in (0, 1)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: expected a Jaccard similarity in (0, 1), got {threshold!r}")
    if not isinstance(num_perm, (int, np.integer)) or num_perm < 2:
        raise ValueError(f"num_perm: expected an int >= 2, got {num_perm!r}")
    best, best_cost = None, np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integrate(lambda s: s_curve(s, b, r), 0.0, threshold)
            fn = _integrate(lambda s: 1.0 - s_curve(s, b, r), threshold, 1.0)
            cost = false_positive_weight * fp + false_negative_weight * fn
            if cost < best_cost:
                best, best_cost = LSHParams(b, r, fp, fn, float(threshold)), cost
    return best


def band_keys(signatures, bands, rows):
    """One 64-bit bucket key per document and band: (N, P) uint -> (bands, N) uint64.
    Keys of different bands live in separate tables, so equal keys across bands mean nothing."""
    sig = np.asarray(signatures)
    if sig.ndim != 2 or bands * rows > sig.shape[1]:
        raise ValueError(f"signatures: expected (N, P) with P >= bands*rows = {bands * rows}, "
                         f"got shape {sig.shape}")
    keys = np.empty((bands, sig.shape[0]), dtype=np.uint64)                 # (b, N)
    for i in range(bands):
        k = np.full(sig.shape[0], i, dtype=np.uint64)                       # (N,)
        for c in range(i * rows, (i + 1) * rows):
            k = mix64_np(k ^ sig[:, c].astype(np.uint64))                   # (N,)
        keys[i] = k
    return keys


def _buckets(keys):
    """Sort one band's keys; -> (order, group_start) where order[p] is the document at sorted
    position p and group_start[p] the sorted position where its bucket begins. (N,), (N,) int64."""
    order = np.argsort(keys, kind="stable")                                 # (N,)
    k = keys[order]
    is_start = np.ones(k.shape[0], dtype=bool)
    is_start[1:] = k[1:] != k[:-1]
    starts = np.flatnonzero(is_start)                                       # (groups,)
    group_start = starts[np.cumsum(is_start) - 1]                           # (N,)
    return order, group_start


def lsh_edges(signatures, bands, rows):
    """Star edges joining every document to the first member of each bucket it shares:
    -> (a, b) two (E,) int64 arrays. Union-find over them gives the LSH clusters in O(N b)."""
    a_all, b_all = [], []
    for keys in band_keys(signatures, bands, rows):
        order, group_start = _buckets(keys)
        member = np.flatnonzero(group_start != np.arange(order.shape[0]))   # not a bucket's first
        a_all.append(order[group_start[member]])
        b_all.append(order[member])
    if not a_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_all).astype(np.int64), np.concatenate(b_all).astype(np.int64)


def candidate_pairs(signatures, bands, rows):
    """All pairs (i < j) sharing at least one bucket: (E, 2) int64, unique, sorted.
    Quadratic in bucket size: for analysis and tests; clustering uses lsh_edges."""
    n = np.asarray(signatures).shape[0]
    codes = []
    for keys in band_keys(signatures, bands, rows):
        order, group_start = _buckets(keys)
        starts, counts = np.unique(group_start, return_counts=True)
        for s, c in zip(starts[counts > 1], counts[counts > 1]):
            members = np.sort(order[s:s + c])
            i, j = np.triu_indices(c, k=1)
            codes.append(members[i] * n + members[j])
    if not codes:
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(codes))
    return np.stack([codes // n, codes % n], axis=1).astype(np.int64)      # (E, 2)


def dedup_clusters(texts, threshold=0.8, num_perm=128, ngram=5, seed=0, *, shingle="word",
                   signatures=None):
    """Near-duplicate clusters: lists of indices (more than one member), each sorted, ordered by
    their smallest index. MinHash signatures -> LSH with (b, r) from lsh_params(threshold, num_perm)
    -> union-find over shared buckets. Pass precomputed `signatures` (N, num_perm) to skip hashing."""
    if signatures is None:
        signatures = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed,
                                        shingle=shingle)
    elif np.shape(signatures) != (len(texts), num_perm):
        raise ValueError(f"signatures: expected shape {(len(texts), num_perm)}, "
                         f"got {np.shape(signatures)}")
    params = lsh_params(threshold, num_perm)
    uf = UnionFind(len(texts))
    uf.union_edges(*lsh_edges(signatures, params.bands, params.rows))
    return uf.components(min_size=2)
