"""AWQ: Activation-aware Weight Quantization (Lin et al. 2024, Sec. 3). A few input channels carry
large activations, and the weights that multiply them matter most. Scaling such a channel up by s
before quantization and its input down by 1/s leaves the product unchanged,
    y = (x / s) . (s w),
but shrinks that weight's relative rounding error. AWQ picks per-input-channel scales
    s = s_x ^ alpha,   s_x = mean |x| over calibration tokens   (eq. 5),
with alpha from a grid in [0, 1] minimising the output error of the layers sharing that input
    || Q(W diag(s)) diag(s)^-1 X - W X ||^2,
and folds 1/s into the operation producing x (a norm's weight, or the rows of the preceding linear;
api.py does the folding). alpha = 0 is plain RTN, so on the calibration data AWQ is never worse.
An optional clipping search then shrinks each group's range (max |w| * (1 - i/20)) where that lowers
the group's own output error (AWQ's auto_clip). Unlike GPTQ (gptq.py) the weights are not changed
one by one: AWQ only rescales and clips, then rounds to nearest.
"""
import numpy as np


def channel_magnitude(X):  # (n, K) -> (K,) float32, s_x = mean |x| per input channel
    return np.mean(np.abs(np.asarray(X, dtype=np.float32)), axis=0).astype(np.float32)


def search_scales(Ws, X, fake_quant, n_grid=20):
    """Ws: list of (N_i, K) weights sharing input X (n, K); fake_quant(w) -> dequantize(quantize(w)).
    -> (s (K,) float32, alpha, [output error per alpha])."""
    X = np.asarray(X, dtype=np.float32)
    W = np.concatenate([np.asarray(w, dtype=np.float32) for w in Ws], axis=0)        # (sum N_i, K)
    Y = X @ W.T                                                                      # (n, sum N_i)
    s_x = channel_magnitude(X)
    best, errors = (None, None, np.inf), []
    for i in range(n_grid + 1):
        alpha = i / n_grid
        s = np.maximum(s_x ** alpha, 1e-4).astype(np.float32)                       # (K,)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)   # centre the scales around 1
        Wq = fake_quant(W * s[None, :]) / s[None, :]
        err = float(np.mean((X @ Wq.T - Y) ** 2))
        errors.append(err)
        if err < best[2]:
            best = (s, alpha, err)
    return best[0], best[1], errors


def search_clip(W, X, fake_quant, group_size, n_grid=20, max_shrink=0.5, max_tokens=512):
    """Per (row, group) range clipping: W (N, K), X (n, K) -> clipped W (N, K) float32.
    Candidate i clamps the group to +-max|w_g| (1 - i / n_grid); the error of a group is
    mean over tokens of (x_g . (Q(w_g) - w_g))^2, its own contribution to the output error.
    The error is measured on max_tokens rows taken at an even stride across all of X (as AWQ's
    auto_clip samples), not the first rows: those would be the first few calibration sequences."""
    W = np.asarray(W, dtype=np.float32)
    X = np.asarray(X, dtype=np.float32)
    X = X[::max(1, len(X) // max_tokens)][:max_tokens]                               # (<= max_tokens, K)
    N, K = W.shape
    G = group_size
    Xg = X.reshape(len(X), K // G, G)                                                # (n, K/G, G)
    org = np.abs(W).reshape(N, K // G, G).max(axis=2)                                # (N, K/G)
    best_err = np.full((N, K // G), np.inf)
    best_max = org.copy()
    for i in range(int(max_shrink * n_grid)):
        mx = org * (1 - i / n_grid)                                                  # (N, K/G)
        lim = np.repeat(mx, G, axis=1)
        wc = np.clip(W, -lim, lim)
        d = (fake_quant(wc) - W).reshape(N, K // G, G)                               # (N, K/G, G)
        err = np.mean(np.einsum("ngk,ogk->nog", Xg, d) ** 2, axis=0)                 # (N, K/G)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_max = np.where(better, mx, best_max)
    lim = np.repeat(best_max, G, axis=1)
    return np.clip(W, -lim, lim).astype(np.float32)
