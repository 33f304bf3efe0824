"""Feed-forward nonlinearities: GELU (tanh approximation, GPT-2) and the SwiGLU gate (Llama)."""
import numpy as np

from .. import kernels


def gelu_forward(x):  # any shape -> same
    y = np.empty_like(x)
    kernels.gelu_forward(y, x)
    return y, x


def gelu_backward(dy, cache):
    x = cache
    dx = np.empty_like(x)
    kernels.gelu_backward(dx, np.ascontiguousarray(dy), x)
    return dx


def swiglu_forward(a, b):  # gate a, up b: (N, F), (N, F) -> silu(a) * b (N, F)
    y = np.empty_like(a)
    kernels.swiglu_forward(y, a, b)
    return y, (a, b)


def swiglu_backward(dy, cache):  # -> da, db
    a, b = cache
    da, db = np.empty_like(a), np.empty_like(b)
    kernels.swiglu_backward(da, db, np.ascontiguousarray(dy), a, b)
    return da, db
