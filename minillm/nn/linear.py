"""Linear layer y = x W^T + b, with W stored (out, in) as torch.nn.Linear does."""
import numpy as np

from .. import kernels


def linear_forward(x, w, b=None):  # (N, Cin), (Cout, Cin), (Cout,) -> (N, Cout)
    y = np.empty((x.shape[0], w.shape[0]), dtype=x.dtype)               # (N, Cout)
    kernels.matmul(y, x, w)
    if b is not None:
        y += b
    return y, (x, w, b is not None)


def linear_backward(dy, cache):  # (N, Cout) -> dx (N, Cin), dw (Cout, Cin), db (Cout,) or None
    x, w, has_bias = cache
    dx = dy @ w                                                          # (N, Cin)
    dw = dy.T @ x                                                        # (Cout, Cin)
    db = dy.sum(axis=0) if has_bias else None                            # (Cout,)
    return dx, dw, db
