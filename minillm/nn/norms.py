"""LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019) over the last axis.
The math lives in minillm/kernels/reference.py (and its C twin); these wrappers flatten the leading
axes to rows, allocate outputs and keep the cache backward needs."""
import numpy as np

from .. import kernels


def layernorm_forward(x, w, b, eps=1e-5):  # (..., C), (C,), (C,) -> (..., C)
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))                # (N, C)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], dtype=x.dtype)                          # (N,)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)                          # (N,)
    kernels.layernorm_forward(y, mean, rstd, x2, w, b, eps)
    return y.reshape(x.shape), (x2, w, mean, rstd)


def layernorm_backward(dy, cache):  # (..., C) -> dx (..., C), dw (C,), db (C,)
    x2, w, mean, rstd = cache
    dy2 = np.ascontiguousarray(dy.reshape(x2.shape))
    dx, dw, db = np.empty_like(x2), np.empty_like(w), np.empty_like(w)
    kernels.layernorm_backward(dx, dw, db, dy2, x2, w, mean, rstd)
    return dx.reshape(dy.shape), dw, db


def rmsnorm_forward(x, w, eps=1e-6):  # (..., C), (C,) -> (..., C)
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))                # (N, C)
    y = np.empty_like(x2)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)                          # (N,)
    kernels.rmsnorm_forward(y, rstd, x2, w, eps)
    return y.reshape(x.shape), (x2, w, rstd)


def rmsnorm_backward(dy, cache):  # (..., C) -> dx (..., C), dw (C,)
    x2, w, rstd = cache
    dy2 = np.ascontiguousarray(dy.reshape(x2.shape))
    dx, dw = np.empty_like(x2), np.empty_like(w)
    kernels.rmsnorm_backward(dx, dw, dy2, x2, w, rstd)
    return dx.reshape(dy.shape), dw
