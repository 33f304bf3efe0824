"""Central-difference numerical gradients for the float64 gradient checks of every backward pass.

numerical_grad(f, x) estimates d f / d x element by element with
(f(x + eps e_i) - f(x - eps e_i)) / (2 eps), whose truncation error is O(eps^2). Use it in float64:
in float32 the rounding error of f (~1e-7 relative) divided by eps swamps the estimate.
"""
import numpy as np


def numerical_grad(f, x, eps=1e-6):
    """Gradient of the scalar function f at x by central differences. x: any-shape float array;
    f is called on a private copy of x, perturbed one element at a time, so the caller's array is
    never modified. Returns an array shaped like x (same dtype)."""
    x = np.array(x, copy=True, order="C")           # private and contiguous: reshape is a view
    grad = np.zeros_like(x, dtype=np.float64)                  # like x, float64 accumulator
    flat, gflat = x.reshape(-1), grad.reshape(-1)              # views: writing flat changes x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        f_plus = float(f(x))
        flat[i] = old - eps
        f_minus = float(f(x))
        flat[i] = old                                          # restore exactly
        gflat[i] = (f_plus - f_minus) / (2.0 * eps)
    return grad.astype(x.dtype, copy=False)


def numerical_grad_at(f, p, idx, eps=1e-6):
    """d f / d p[idx] by one central difference, for an array p that f reads from elsewhere (a model
    parameter): p[idx] is perturbed in place and restored exactly. f takes no arguments."""
    old = p[idx]
    p[idx] = old + eps
    f_plus = float(f())
    p[idx] = old - eps
    f_minus = float(f())
    p[idx] = old
    return (f_plus - f_minus) / (2.0 * eps)
