"""Hybrid retrieval by reciprocal rank fusion, RRF (Cormack, Clarke & Buettcher 2009, eq. 1):

    RRF(d) = sum over rankings r of  w_r / (k + rank_r(d)),   rank starting at 1, k = 60.

Only ranks are fused, so BM25 scores (unbounded) and cosine similarities ([-1, 1]) need no
calibration against each other; a document missing from a ranking contributes nothing there.
"""
import numpy as np


def reciprocal_rank_fusion(rankings, k=60, weights=None, top=None):
    """rankings: list of rankings, each a sequence of document ids best first. Returns
    (ids list, scores (n,) float64) sorted by fused score, ties to the id seen first."""
    if not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k: expected a number >= 0, got {k!r}")
    rankings = [list(r) for r in rankings]
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError(f"weights: expected {len(rankings)} weights, got {len(weights)}")
    fused, first_seen = {}, {}
    for w, ranking in zip(weights, rankings):
        if len(set(ranking)) != len(ranking):
            raise ValueError("rankings: a ranking lists the same document twice")
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + w / (k + rank)
            first_seen.setdefault(doc, len(first_seen))
    ids = sorted(fused, key=lambda d: (-fused[d], first_seen[d]))
    if top is not None:
        ids = ids[:top]
    return ids, np.array([fused[d] for d in ids], dtype=np.float64)
