"""BM25 lexical retrieval (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25
and Beyond", eq. 3.15) over an inverted index, in four variants (Trotman et al. 2014, "Improvements
to BM25 and Language Models Examined"):

  score(d, q) = sum over query tokens t of  idf(t) * tf_part(f(t, d), |d|)

  okapi   idf = ln((N - n + 0.5) / (n + 0.5)), negative values (terms in more than half of the
          documents) replaced by epsilon * mean idf;  tf_part = f (k1 + 1) / (f + k1 (1 - b + b |d|/avgdl))
  l       BM25L (Lv & Zhai 2011a): idf = ln((N + 1) / (n + 0.5)); c = f / (1 - b + b |d|/avgdl),
          tf_part = f (k1 + 1)(c + delta) / (k1 + c + delta)
  plus    BM25+ (Lv & Zhai 2011b): idf = ln((N + 1) / n); tf_part = delta + f (k1 + 1) / (k1 (...) + f)
  lucene  Lucene's idf ln(1 + (N - n + 0.5) / (n + 0.5)), never negative, with the okapi tf_part

N documents, n of them contain t, f(t, d) its count in d. The okapi, l and plus variants score
exactly as rank_bm25's BM25Okapi, BM25L and BM25Plus with their defaults (tests/reasoning/test_bm25.py),
including two of that library's departures from the papers, kept on purpose so scores agree: BM25L's
tf_part carries an extra factor f (the paper's is 0 for f = 0 and otherwise has no f in front), and
BM25+ adds idf * delta to every document for every known query term, not only to those containing
it. A query token that occurs twice counts twice. Unlike rank_bm25, which scans every document for
every query token, the index keeps a posting list per term, so a query costs O(postings).
"""
import math
import re
from collections import Counter

import numpy as np

VARIANTS = ("okapi", "l", "plus", "lucene")
DEFAULT_DELTA = {"l": 0.5, "plus": 1.0}
_WORD = re.compile(r"\w+")


def tokenize(text):
    """Lower-cased word tokens (\\w+ runs): the tokenizer minillm's RAG uses for BM25."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return _WORD.findall(text.lower())


class BM25:
    """BM25 scorer over tokenized documents. corpus_tokens: list of token lists (any hashable tokens).
    variant: "okapi" | "l" | "plus" | "lucene"; delta: BM25L/BM25+ shift (default 0.5 / 1.0);
    epsilon: okapi's floor for negative idf, as a fraction of the mean idf."""

    def __init__(self, corpus_tokens, variant="okapi", k1=1.5, b=0.75, delta=None, epsilon=0.25):
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if isinstance(corpus_tokens, (str, bytes)) or not hasattr(corpus_tokens, "__len__"):
            raise TypeError(f"corpus_tokens: expected a list of token lists, got {type(corpus_tokens).__name__}")
        if len(corpus_tokens) == 0:
            raise ValueError("corpus_tokens: expected at least one document, got 0")
        for name, v in (("k1", k1), ("b", b), ("epsilon", epsilon)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if b > 1:
            raise ValueError(f"b: expected a value in [0, 1], got {b}")
        if delta is None:
            delta = DEFAULT_DELTA.get(variant, 0.0)
        self.variant, self.k1, self.b, self.delta, self.epsilon = variant, float(k1), float(b), float(delta), epsilon

        # inverted index: term -> (doc ids (n,) int64, term counts (n,) float64)
        postings = {}
        doc_len = np.empty(len(corpus_tokens), dtype=np.float64)                        # (N,)
        for i, doc in enumerate(corpus_tokens):
            if isinstance(doc, str):
                raise TypeError(f"corpus_tokens[{i}]: expected a list of tokens, got str (tokenize it first)")
            doc = list(doc)
            doc_len[i] = len(doc)
            for term, f in Counter(doc).items():
                postings.setdefault(term, ([], []))
                postings[term][0].append(i)
                postings[term][1].append(f)
        self.N = len(corpus_tokens)
        self.doc_len = doc_len
        self.avgdl = float(doc_len.sum()) / self.N
        if self.avgdl == 0:
            raise ValueError("corpus_tokens: every document is empty")
        self.postings = {t: (np.asarray(d, dtype=np.int64), np.asarray(f, dtype=np.float64))
                         for t, (d, f) in postings.items()}
        self.idf = self._idf({t: len(d) for t, (d, _) in self.postings.items()})
        # 1 - b + b |d| / avgdl: the document-length normalisation, precomputed once (N,)
        self._norm = 1.0 - self.b + self.b * doc_len / self.avgdl

    def _idf(self, df):  # {term: n} -> {term: idf}
        N = self.N
        if self.variant == "okapi":
            idf = {t: math.log(N - n + 0.5) - math.log(n + 0.5) for t, n in df.items()}
            # rank_bm25's floor: terms in more than half the documents get epsilon * mean idf
            floor = self.epsilon * sum(idf.values()) / len(idf)
            return {t: (floor if v < 0 else v) for t, v in idf.items()}
        if self.variant == "l":
            return {t: math.log(N + 1) - math.log(n + 0.5) for t, n in df.items()}
        if self.variant == "plus":
            return {t: math.log((N + 1) / n) for t, n in df.items()}
        return {t: math.log(1.0 + (N - n + 0.5) / (n + 0.5)) for t, n in df.items()}  # lucene: >= 0

    def get_scores(self, query_tokens):
        """Scores of every document for the query: list of tokens -> (N,) float64."""
        if isinstance(query_tokens, str):
            raise TypeError("query_tokens: expected a list of tokens, got str (tokenize it first)")
        k1, delta = self.k1, self.delta
        score = np.zeros(self.N, dtype=np.float64)                                       # (N,)
        for term in query_tokens:
            if term not in self.postings:
                continue                      # unknown term: idf 0 in rank_bm25, contributes nothing
            docs, f = self.postings[term]                                                # (n,), (n,)
            idf, norm = self.idf[term], self._norm[docs]
            if self.variant in ("okapi", "lucene"):
                score[docs] += idf * (f * (k1 + 1) / (f + k1 * norm))
            elif self.variant == "l":
                c = f / norm
                score[docs] += idf * f * (k1 + 1) * (c + delta) / (k1 + c + delta)
            else:                             # plus: delta for every document, then the tf part
                score += idf * delta
                score[docs] += idf * (f * (k1 + 1) / (k1 * norm + f))
        return score

    def top_k(self, query_tokens, k):
        """The k best documents: (indices (k,) int64, scores (k,) float64), best first; ties broken
        by the lower index."""
        scores = self.get_scores(query_tokens)
        idx = top_k_indices(scores, k)
        return idx, scores[idx]


def top_k_indices(scores, k):
    """Indices of the k largest scores, best first, ties to the lower index: (N,) -> (k,) int64."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    scores = np.asarray(scores)
    k = min(int(k), len(scores))
    order = np.lexsort((np.arange(len(scores)), -scores))   # by score desc, then index asc
    return order[:k].astype(np.int64)
