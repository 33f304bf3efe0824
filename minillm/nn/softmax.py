"""log-softmax over the last axis, the one home of the stable formula every log-probability reader uses
(alignment's per-token log-probs, reasoning's continuation scores, beam search's step scores):

  log softmax(z)_v = (z_v - m) - log Σ_u exp(z_u - m),   m = max_u z_u

Subtracting the max m changes nothing mathematically but keeps exp from overflowing. The result has
z's float dtype: callers that need float64 (ranking, summing many terms) convert before calling.
Sampling's probability softmax, which must also map rows of -inf to zeros, is inference/sampling.py.
"""
import numpy as np


def log_softmax(z):  # (..., V) float -> (..., V), same dtype
    z = np.asarray(z)
    m = np.max(z, axis=-1, keepdims=True)                                # (..., 1)
    shifted = z - m                                                      # (..., V), all <= 0
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
