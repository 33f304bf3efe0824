"""BM25 (reasoning/bm25.py) against rank_bm25 on random corpora, plus the properties of the
Lucene-idf variant and the inverted index."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.reasoning.bm25 import BM25, tokenize, top_k_indices

# small vocabularies so that terms repeat within and across documents (negative okapi idf included)
docs_st = st.lists(st.lists(st.integers(0, 12).map(lambda i: f"w{i}"), min_size=0, max_size=15),
                   min_size=1, max_size=12).filter(lambda c: any(c))
query_st = st.lists(st.integers(0, 15).map(lambda i: f"w{i}"), min_size=0, max_size=6)  # w13..w15 unknown
REFERENCE = {"okapi": "BM25Okapi", "l": "BM25L", "plus": "BM25Plus"}


@settings(max_examples=150, deadline=None)
@given(corpus=docs_st, query=query_st, variant=st.sampled_from(sorted(REFERENCE)))
def test_matches_rank_bm25(corpus, query, variant):
    rank_bm25 = pytest.importorskip("rank_bm25")
    ref = getattr(rank_bm25, REFERENCE[variant])(corpus).get_scores(query)
    ours = BM25(corpus, variant=variant).get_scores(query)
    # same formulas; only the summation order of BM25+'s delta term differs (1 ulp per term)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", sorted(REFERENCE))
@pytest.mark.parametrize("k1,b,delta", [(1.2, 0.75, None), (0.9, 0.4, 0.25), (2.0, 1.0, 2.0), (1.5, 0.0, None)])
def test_matches_rank_bm25_with_parameters(variant, k1, b, delta):
    rank_bm25 = pytest.importorskip("rank_bm25")
    rng = np.random.default_rng(0)
    corpus = [[f"t{int(x)}" for x in rng.zipf(1.5, rng.integers(1, 40)) if x < 60] or ["t1"]
              for _ in range(50)]
    kw = {} if delta is None or variant == "okapi" else {"delta": delta}
    ref = getattr(rank_bm25, REFERENCE[variant])(corpus, k1=k1, b=b, **kw)
    ours = BM25(corpus, variant=variant, k1=k1, b=b, **kw)
    for q in (["t1"], ["t2", "t3", "t2"], ["t7", "nope", "t40"], []):
        np.testing.assert_allclose(ours.get_scores(q), ref.get_scores(q), rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(corpus=docs_st, query=query_st)
def test_lucene_idf_is_never_negative(corpus, query):
    bm = BM25(corpus, variant="lucene")
    assert all(v >= 0 for v in bm.idf.values())
    assert np.all(bm.get_scores(query) >= 0)
    # a term in every document still has positive idf under Lucene, and negative idf under raw okapi
    N = len(corpus)
    assert np.log(1 + 0.5 / (N + 0.5)) > 0 > np.log(0.5) - np.log(N + 0.5)


def test_okapi_floors_common_terms():
    corpus = [["a", "b"], ["a", "c"], ["a", "d"]]          # "a" in every document
    bm = BM25(corpus)
    raw = {t: np.log(3 - n + 0.5) - np.log(n + 0.5) for t, n in {"a": 3, "b": 1, "c": 1, "d": 1}.items()}
    assert raw["a"] < 0 and bm.idf["a"] == pytest.approx(0.25 * np.mean(list(raw.values())))


def test_inverted_index_and_top_k():
    corpus = [tokenize(s) for s in ["The cat sat on the mat.", "Dogs chase cats.", "A cat, a cat!",
                                    "Nothing to see here.", "Birds fly."]]
    bm = BM25(corpus)
    assert list(bm.postings["cat"][0]) == [0, 2] and list(bm.postings["cat"][1]) == [1, 2]
    idx, scores = bm.top_k(["cat"], 3)
    assert list(idx) == [2, 0, 1] and scores[0] > scores[1] > 0 == scores[2]
    assert list(top_k_indices(np.array([1.0, 3.0, 3.0, 0.0]), 10)) == [1, 2, 0, 3]


def test_bad_input():
    with pytest.raises(ValueError, match="variant"):
        BM25([["a"]], variant="bm42")
    with pytest.raises(ValueError, match="corpus_tokens"):
        BM25([])
    with pytest.raises(ValueError, match="corpus_tokens"):
        BM25([[], []])
    with pytest.raises(TypeError, match="corpus_tokens"):
        BM25(["a document as a string"])
    with pytest.raises(TypeError, match="query_tokens"):
        BM25([["a"]]).get_scores("a")
    with pytest.raises(ValueError, match="b"):
        BM25([["a"]], b=1.5)
    with pytest.raises(ValueError, match="k"):
        top_k_indices(np.zeros(3), 0)
