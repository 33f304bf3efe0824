"""Linear layer y = x W^T + b, with W stored (out, in) as torch.nn.Linear does."""
import numpy as np

from .. import kernels


def linear_forward(x, w, b=None):  # (N, Cin), (Cout, Cin), (Cout,) -> (N, Cout)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)               # (N, Cout)
    kernels.matmul(y, x, w)
    if b is not None:
        y += b
    return y, (x, w, b is not None)


# rows of x from which linear_forward_group(stacked=True) runs one GEMM against the stacked weights
# (training and prefill); below, the weights are not copied (decode: kernels.matmul_group)
STACK_MIN_ROWS = 64


def linear_forward_group(x, ws, bs, stacked=False):  # (N, Cin), [(Cout_i, Cin)], [(Cout_i,)|None] -> [(y_i, cache_i)]
    """Several linear layers that read the same x (a layer's q, k, v, or its gate and up), as
    linear_forward each; the products go to kernels.matmul_group, one parallel region at decode.
    stacked=True, for callers that copy the outputs anyway (q, k, v go to head-major layout): from
    STACK_MIN_ROWS rows on, one GEMM against the weights stacked (sum Cout_i, Cin), and each y_i
    is a column view of its (N, sum Cout_i) product (measured 2048 x 384 -> 3 x 384: 22 ms
    instead of 24 for three GEMMs; the stacking copies 1.7 MB)."""
    if stacked and x.ndim == 2 and x.shape[0] >= STACK_MIN_ROWS and len(ws) > 1:
        y = np.empty((x.shape[0], sum(w.shape[0] for w in ws)), dtype=x.dtype)  # (N, sum Cout_i)
        kernels.matmul(y, x, np.concatenate(ws))
        bounds = np.cumsum([0] + [w.shape[0] for w in ws])
        ys = [y[:, lo:hi] for lo, hi in zip(bounds, bounds[1:])]                   # (N, Cout_i) views
    else:
        ys = [np.empty((x.shape[0], w.shape[0]), dtype=x.dtype) for w in ws]        # (N, Cout_i)
        kernels.matmul_group(ys, x, ws)
    for y, b in zip(ys, bs):
        if b is not None:
            y += b
    return [(y, (x, w, b is not None)) for y, w, b in zip(ys, ws, bs)]


def linear_backward(dy, cache):  # (N, Cout) -> dx (N, Cin), dw (Cout, Cin), db (Cout,) or None
    x, w, has_bias = cache
    dx = dy @ w                                                          # (N, Cin)
    dw = dy.T @ x                                                        # (Cout, Cin)
    db = dy.sum(axis=0) if has_bias else None                            # (Cout,)
    return dx, dw, db


def linear_backward_group(dy, caches):  # (N, sum Cout_i) -> dx (N, Cin), [dw_i (Cout_i, Cin)], [db_i or None]
    """linear_backward for several linear layers that read the same x (linear_forward_group's
    caches), with their output gradients side by side in the columns of dy. One GEMM gives all
    weight gradients (dy^T x, split by rows: each dw_i is a contiguous block of it) and one gives
    dx (dy against the stacked weights), instead of one small, poorly threaded GEMM per layer."""
    x, ws = caches[0][0], [c[1] for c in caches]
    if any(c[0] is not x for c in caches):
        raise ValueError("caches: the layers of a group must share their input x")
    if dy.shape[1] != sum(w.shape[0] for w in ws):
        raise ValueError(f"dy: expected {sum(w.shape[0] for w in ws)} columns, got {dy.shape[1]}")
    dx = dy @ np.concatenate(ws)                                         # (N, Cin)
    dw = dy.T @ x                                                        # (sum Cout_i, Cin)
    db = dy.sum(axis=0) if any(c[2] for c in caches) else None           # (sum Cout_i,)
    bounds = np.cumsum([0] + [w.shape[0] for w in ws])
    return (dx, [dw[lo:hi] for lo, hi in zip(bounds, bounds[1:])],
            [db[lo:hi] if c[2] else None for c, lo, hi in zip(caches, bounds, bounds[1:])])
