"""Mean cross-entropy over next-token targets with optional z-loss (PaLM, Chowdhery et al. 2022):
L = mean_i [ -log softmax(z_i)[t_i] + z_loss * logsumexp(z_i)^2 ] over rows with t_i >= 0.
The z-loss term keeps the softmax normaliser near 1, which stabilises large-scale training."""
import numpy as np

from .. import kernels


def cross_entropy_forward(logits, targets, z_loss=0.0, inplace=False):  # (N, V), (N,) int -> float, cache
    """Returns the mean loss over valid rows and a cache that already holds dlogits: the fused
    kernel computes softmax once for both passes (as llm.c's fused classifier does).
    inplace=True: dlogits overwrites logits (a caller that no longer needs them saves an (N, V)
    array: 64 MB for 2048 tokens over a vocabulary of 8192, freshly mapped memory every step)."""
    logits = np.ascontiguousarray(logits)
    targets = np.asarray(targets).reshape(-1)
    if targets.shape[0] != logits.shape[0]:
        raise ValueError(f"targets: expected {logits.shape[0]} rows, got {targets.shape[0]}")
    if targets.size and targets.max() >= logits.shape[1]:
        raise ValueError(f"targets: ids must be < vocab size {logits.shape[1]}, got {targets.max()}")
    n_valid = max(int((targets >= 0).sum()), 1)
    losses = np.empty(logits.shape[0], dtype=logits.dtype)               # (N,)
    dlogits = logits if inplace else np.empty_like(logits)               # (N, V)
    kernels.cross_entropy(losses, dlogits, logits, targets, float(z_loss), 1.0 / n_valid)
    return float(losses.sum(dtype=np.float64) / n_valid), dlogits


def cross_entropy_backward(dloss, cache):  # float -> dlogits (N, V)
    dlogits = cache
    return dlogits if dloss == 1.0 else dlogits * dloss
