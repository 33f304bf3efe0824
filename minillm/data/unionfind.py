"""Union-find (disjoint-set forest; Galler & Fischer 1964, Tarjan 1975) for resolving duplicate
clusters: every candidate pair (i, j) from LSH or SimHash is a `union`, and each final set is one
cluster. Roots are always the smallest index of their set (union by index, not by rank), so "the
first document of a cluster" is simply its root, independent of the order edges arrive in.
Path halving keeps trees shallow. `union_edges` is the same loop compiled with Numba for millions of
edges; the methods `find`/`union` are the readable version and give identical results.
"""
import numba
import numpy as np


@numba.njit(cache=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving: point at the grandparent as we climb
        i = parent[i]
    return i


@numba.njit(cache=True)
def _union_edges(parent, a, b):
    for e in range(a.shape[0]):
        ra, rb = _find(parent, a[e]), _find(parent, b[e])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb


@numba.njit(cache=True)
def _roots(parent):
    out = np.empty_like(parent)
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)
    return out


class UnionFind:
    """Disjoint sets over 0..n-1. parent: (n,) int64."""

    def __init__(self, n):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n: expected a non-negative int, got {n!r}")
        self.parent = np.arange(n, dtype=np.int64)                          # (n,)

    def find(self, i):
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = int(p[i])
        return int(i)

    def union(self, i, j):
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)  # the smaller index stays the root

    def union_edges(self, a, b):
        """union(a[e], b[e]) for every e; a, b: (E,) ints in [0, n)."""
        a = np.ascontiguousarray(a, dtype=np.int64)
        b = np.ascontiguousarray(b, dtype=np.int64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"a, b: expected two 1-D arrays of equal length, got {a.shape}, {b.shape}")
        n = self.parent.shape[0]
        if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
            raise ValueError(f"a, b: indices must lie in [0, {n})")
        _union_edges(self.parent, a, b)

    def roots(self):
        """(n,) int64: the root (smallest member) of each element's set."""
        return _roots(self.parent)

    def components(self, min_size=1):
        """Sets with at least min_size members: sorted lists, ordered by their smallest member."""
        roots = self.roots()
        order = np.argsort(roots, kind="stable")                            # members stay sorted
        r = roots[order]
        cuts = np.flatnonzero(r[1:] != r[:-1]) + 1
        return [g.tolist() for g in np.split(order, cuts) if len(g) >= min_size]
