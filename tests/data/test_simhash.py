"""SimHash: brute-force agreement of the permuted-table search, and near-duplicates land close."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data.simhash import hamming, hamming_pairs, simhash_clusters, simhash_fingerprints


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(0, 6))
def test_permuted_tables_find_exactly_the_brute_force_pairs(seed, n, k):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=max(1, n // 4), dtype=np.uint64, endpoint=False)
    fp = base[rng.integers(0, len(base), n)]
    flips = rng.integers(0, 64, size=(n, 3))                 # up to 3 random bit flips each
    for i in range(n):
        for b in flips[i, : rng.integers(0, 4)]:
            fp[i] ^= np.uint64(1) << np.uint64(b)
    d = hamming(fp[:, None], fp[None, :])                    # (n, n) brute force
    i, j = np.nonzero(np.triu(d <= k, 1))
    want = np.stack([i, j], 1)
    np.testing.assert_array_equal(hamming_pairs(fp, k), want)


def test_near_duplicates_are_close_and_unrelated_texts_far():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(3000)]
    docs = [" ".join(rng.choice(vocab, 300)) for _ in range(20)]
    edited = docs[0].split()
    edited[150] = "edit"
    fps = simhash_fingerprints(docs + [" ".join(edited)])
    assert fps.dtype == np.uint64
    assert hamming(fps[0], fps[20]) <= 6
    far = hamming(fps[:20, None], fps[None, :20])[np.triu_indices(20, 1)]
    assert far.min() > 12                                    # ~32 expected for unrelated texts
    assert simhash_clusters(docs + [" ".join(edited)], max_distance=6) == [[0, 20]]
    assert simhash_fingerprints([""])[0] == 0
