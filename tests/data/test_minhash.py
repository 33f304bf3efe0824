"""MinHash + LSH + union-find: kernel == reference, unbiased estimates, S-curve recall/precision."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data import dedup_clusters, estimate_jaccard, minhash_signatures
from minillm.data.minhash import (EMPTY, candidate_pairs, lsh_params, minhash_signatures_reference,
                                  s_curve)
from minillm.data.unionfind import UnionFind

TEXT = st.text(alphabet=st.sampled_from(list("ab c\n\té日 ")), max_size=40)


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=5), ngram=st.integers(1, 4),
       num_perm=st.integers(1, 16), seed=st.integers(0, 2**32 - 1),
       shingle=st.sampled_from(["word", "char"]))
def test_kernel_matches_reference_bit_for_bit(texts, ngram, num_perm, seed, shingle):
    got = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed, shingle=shingle)
    want = minhash_signatures_reference(texts, num_perm=num_perm, ngram=ngram, seed=seed,
                                        shingle=shingle)
    assert got.dtype == np.uint32 and got.shape == (len(texts), num_perm)
    np.testing.assert_array_equal(got, want)


def test_signature_conventions():
    sig = minhash_signatures(["", "one", "  one  ", "one two"], num_perm=8, ngram=5)
    assert (sig[0] == EMPTY).all()                      # no shingles: the empty set
    np.testing.assert_array_equal(sig[1], sig[2])      # whitespace is normalised in word mode
    assert not (sig[1] == sig[3]).all()                # short texts are one whole shingle each


@settings(max_examples=40, deadline=None)
@given(common=st.integers(0, 60), only_a=st.integers(0, 60), only_b=st.integers(1, 60))
def test_jaccard_estimate_is_unbiased_within_theoretical_error(common, only_a, only_b):
    # ngram=1 over distinct words makes each text's shingle set exactly its set of words
    a = " ".join([f"c{i}" for i in range(common)] + [f"a{i}" for i in range(only_a)])
    b = " ".join([f"c{i}" for i in range(common)] + [f"b{i}" for i in range(only_b)])
    J = common / (common + only_a + only_b)
    P, runs = 128, 24
    est = np.array([estimate_jaccard(*minhash_signatures([a, b], num_perm=P, ngram=1, seed=s))
                    for s in range(runs)])
    # each estimate is Binomial(P, J)/P: sd sqrt(J(1-J)/P) <= 1/(2 sqrt(P)); the theoretical error
    # 1/sqrt(P) is two of those sd, so the typical (rms) error must stay below it ...
    assert np.sqrt(np.mean((est - J) ** 2)) <= 1 / np.sqrt(P)
    # ... and the mean of `runs` independent estimates must sit on J (4 sd of the mean, + 1e-9)
    assert abs(est.mean() - J) <= 4 * np.sqrt(J * (1 - J) / (P * runs)) + 1e-9


def _pairs_at(similarities, size):
    """Two texts per similarity s with exact word-set Jaccard round(s*size)/size."""
    texts, truth = [], []
    for p, s in enumerate(similarities):
        c = int(round(s * size))
        rest = size - c
        only_a, only_b = rest // 2, rest - rest // 2
        common = [f"p{p}c{i}" for i in range(c)]
        texts.append(" ".join(common + [f"p{p}a{i}" for i in range(only_a)]))
        texts.append(" ".join(common + [f"p{p}b{i}" for i in range(only_b)]))
        truth.append(c / size)
    return texts, np.array(truth)


def test_lsh_candidate_rate_follows_the_s_curve():
    params = lsh_params(0.8, 128)
    levels = [0.5, 0.65, 0.75, 0.8, 0.85, 0.9]
    n_pairs = 300
    sims = np.repeat(levels, n_pairs)
    texts, truth = _pairs_at(sims, 100)
    sig = minhash_signatures(texts, num_perm=128, ngram=1, seed=1)
    found = {tuple(p) for p in candidate_pairs(sig, params.bands, params.rows).tolist()}
    is_candidate = np.array([(2 * i, 2 * i + 1) in found for i in range(len(sims))])
    for s in levels:
        sel = truth == s
        predicted = float(s_curve(s, params.bands, params.rows))
        measured = is_candidate[sel].mean()
        # binomial sd of a rate over 300 pairs is <= 0.029; allow ~2.5 sd ("a few points")
        assert abs(measured - predicted) < 0.075, (s, measured, predicted)
    # no spurious pairs between unrelated texts (disjoint vocabularies, Jaccard 0)
    assert all(j == i + 1 and i % 2 == 0 for i, j in found)


def test_lsh_recall_and_precision_match_s_curve_prediction():
    rng = np.random.default_rng(1)
    t = 0.7
    params = lsh_params(t, 128)
    sims = rng.uniform(0.3, 1.0, size=1500)
    texts, truth = _pairs_at(sims, 100)
    sig = minhash_signatures(texts, num_perm=128, ngram=1, seed=2)
    found = {tuple(p) for p in candidate_pairs(sig, params.bands, params.rows).tolist()}
    cand = np.array([(2 * i, 2 * i + 1) in found for i in range(len(sims))])
    p = s_curve(truth, params.bands, params.rows)
    pos = truth >= t
    recall_pred, recall = p[pos].mean(), cand[pos].mean()
    precision_pred, precision = p[pos].sum() / p.sum(), pos[cand].mean()
    assert abs(recall - recall_pred) < 0.04, (recall, recall_pred)
    assert abs(precision - precision_pred) < 0.04, (precision, precision_pred)


def test_lsh_params_minimise_the_weighted_error():
    for t, P in [(0.5, 64), (0.8, 128), (0.9, 256)]:
        best = lsh_params(t, P)
        assert best.bands * best.rows <= P
        cost = best.false_positive + best.false_negative
        # its neighbours (and a far-off choice), integrated independently here, are no better
        for b, r in [(best.bands + 1, best.rows), (best.bands, best.rows - 1),
                     (best.bands - 1, best.rows + 1), (P // 4, 4)]:
            if b >= 1 and r >= 1 and b * r <= P:
                s = np.linspace(0, 1, 2001)
                fp = np.trapezoid(s_curve(s[s <= t], b, r), s[s <= t])
                fn = np.trapezoid(1 - s_curve(s[s >= t], b, r), s[s >= t])
                assert cost <= fp + fn + 1e-3
    with pytest.raises(ValueError, match="threshold"):
        lsh_params(1.5, 128)


def test_dedup_clusters_finds_near_duplicates_only():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(vocab, 200)) for _ in range(30)]
    texts = list(base)
    for i in range(0, 30, 3):                # one near-copy (1 word changed in 200) of every 3rd
        words = base[i].split()
        words[100] = "CHANGED"
        texts.append(" ".join(words))
    clusters = dedup_clusters(texts, threshold=0.8, num_perm=128, ngram=5)
    assert clusters == [[i, 30 + i // 3] for i in range(0, 30, 3)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), edges=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)),
                                             max_size=40))
def test_union_find_compiled_matches_python(n, edges):
    edges = [(a % n, b % n) for a, b in edges]
    fast, slow = UnionFind(n), UnionFind(n)
    if edges:
        fast.union_edges(*np.array(edges).T)
    for a, b in edges:
        slow.union(a, b)
    assert fast.components() == slow.components()
    assert [c[0] for c in fast.components()] == [min(c) for c in fast.components()]
    # transitive closure by brute force
    reach = {i: {i} for i in range(n)}
    for _ in range(n):
        for a, b in edges:
            reach[a] |= reach[b]
            reach[b] |= reach[a]
    assert sorted(sorted(s) for s in {frozenset(v) for v in reach.values()}) == fast.components()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_perm"):
        minhash_signatures(["a"], num_perm=0)
    with pytest.raises(ValueError, match="shingle"):
        minhash_signatures(["a"], shingle="byte")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        minhash_signatures(["a", 3])
    with pytest.raises(ValueError, match="sig_a"):
        estimate_jaccard(np.zeros(3), np.zeros(4))


def test_estimates_agree_with_datasketch_statistically():
    datasketch = pytest.importorskip("datasketch")
    rng = np.random.default_rng(5)
    sims = rng.uniform(0.0, 1.0, size=200)
    texts, truth = _pairs_at(sims, 80)
    ours = minhash_signatures(texts, num_perm=128, ngram=1, seed=3)
    diffs = []
    for i in range(len(sims)):
        ms = []
        for t in texts[2 * i: 2 * i + 2]:
            m = datasketch.MinHash(num_perm=128, seed=7)
            m.update_batch([w.encode() for w in t.split()])
            ms.append(m)
        diffs.append(estimate_jaccard(ours[2 * i], ours[2 * i + 1]) - ms[0].jaccard(ms[1]))
    diffs = np.array(diffs)
    # two independent unbiased estimators: paired differences centre on 0 (|z| < 4) with sd
    # <= sqrt(2) * 1/(2 sqrt(128)) = 0.0625
    z = diffs.mean() / (diffs.std(ddof=1) / np.sqrt(len(diffs)))
    assert abs(z) < 4 and diffs.std() < 0.0625
