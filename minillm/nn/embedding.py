"""Token (or position) embedding lookup: y[n] = W[ids[n]]."""
import numpy as np


def embedding_forward(ids, w):  # (...) int, (V, C) -> (..., C)
    return w[ids], (ids, w.shape)


def embedding_backward(dy, cache):  # (..., C) -> dW (V, C)
    """Scatter-add: rows of dy for repeated ids accumulate into the same row of dW."""
    ids, shape = cache
    dw = np.zeros(shape, dtype=dy.dtype)                                 # (V, C)
    np.add.at(dw, ids.reshape(-1), dy.reshape(-1, shape[1]))
    return dw
