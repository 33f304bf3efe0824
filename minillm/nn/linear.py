"""Linear layer y = x W^T + b, with W stored (out, in) as torch.nn.Linear does."""
import numpy as np

from .. import kernels


def linear_forward(x, w, b=None):  # (N, Cin), (Cout, Cin), (Cout,) -> (N, Cout)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)               # (N, Cout)
    kernels.matmul(y, x, w)
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_forward_group(x, ws, bs):  # (N, Cin), [(Cout_i, Cin)], [(Cout_i,) or None] -> [(y_i, cache_i)]
    """Several linear layers that read the same x (a layer's q, k, v, or its gate and up), as
    linear_forward each; the products go to kernels.matmul_group, one parallel region at decode."""
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
