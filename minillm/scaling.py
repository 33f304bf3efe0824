"""Compute-optimal model sizing (Hoffmann et al. 2022, "Chinchilla") and FLOP counting.

Hoffmann et al. fit the final loss of a model with N parameters trained on D tokens as (eq. 2,
fitted constants in eq. 10, "Approach 3")

    L(N, D) = E + A / N^alpha + B / D^beta,   E = 1.69, A = 406.4, B = 410.7, alpha = 0.34, beta = 0.28,

and train with C ~= 6 N D FLOPs (Kaplan et al. 2020, Sec. 2.1: 2 FLOPs per parameter per token
forward, twice that backward). Minimising L on the iso-FLOP curve N D = C / 6 gives (eq. 4)

    N_opt(C) = G (C/6)^a,  D_opt(C) = G^-1 (C/6)^b,  G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta / (alpha + beta),  b = alpha / (alpha + beta).

ModelConfig.flops_per_token counts a concrete architecture (attention scores included);
`flops_breakdown` below spells that count out per matmul. `minillm plan --flops C` turns a budget
into a ModelConfig whose size is closest to N_opt and prints tokens, loss and time; with
matplotlib installed it can also draw the iso-FLOP curves (Hoffmann et al. 2022, Fig. 3).
"""
import math

import numpy as np

from .io.atomic import atomic_write
from .model import ModelConfig

# Hoffmann et al. 2022, eq. 10 (Approach 3, parametric fit)
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
FLOPS_PER_PARAM_TOKEN = 6  # C ~= 6 N D


def check_positive(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not x > 0 \
            or not math.isfinite(x):
        raise ValueError(f"{name}: expected a positive finite number, got {x!r}")
    return float(x)


def chinchilla_loss(n_params, n_tokens):
    """L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eqs. 2 and 10), in nats/token.
    Accepts scalars or arrays (broadcast)."""
    N = np.asarray(n_params, dtype=np.float64)
    D = np.asarray(n_tokens, dtype=np.float64)
    if np.any(N <= 0) or np.any(D <= 0):
        raise ValueError(f"n_params, n_tokens: expected positive values, got {n_params!r}, {n_tokens!r}")
    L = E + A / N ** ALPHA + B / D ** BETA
    return float(L) if L.ndim == 0 else L


def chinchilla_optimal(flops):
    """Compute-optimal (n_params, n_tokens) for a budget of `flops` training FLOPs under C = 6 N D
    and the fitted loss (Hoffmann et al. 2022, eq. 4). Returns floats with 6 N D == flops."""
    C = check_positive("flops", flops)
    G = (ALPHA * A / (BETA * B)) ** (1.0 / (ALPHA + BETA))
    a, b = BETA / (ALPHA + BETA), ALPHA / (ALPHA + BETA)
    N = G * (C / FLOPS_PER_PARAM_TOKEN) ** a
    D = (C / FLOPS_PER_PARAM_TOKEN) ** b / G
    return N, D


def flops_breakdown(cfg, seq_len=None):
    """Forward matmul FLOPs per token of a ModelConfig, per operation (Kaplan et al. 2020, Table 1):
    a (out, in) weight costs 2 * out * in per token; attention scores q k^T and the weighted sum
    cost 2 T C each per layer (full T x T, as PaLM counts; causal masking would halve it).
    Returns {operation: FLOPs}; 3x the sum is the training cost (backward = 2x forward)."""
    T = cfg.max_seq_len if seq_len is None else seq_len
    C, F, L, V = cfg.d_model, cfg.ffn_dim, cfg.n_layer, cfg.vocab_size
    Ckv = cfg.n_kv_head * cfg.head_dim
    n_mlp = 3 if cfg.arch == "llama" else 2          # SwiGLU has gate, up, down; GELU MLP up, down
    return {
        "attention q,k,v projections": L * 2 * C * (C + 2 * Ckv),
        "attention scores q k^T": L * 2 * T * C,
        "attention weighted sum of v": L * 2 * T * C,
        "attention output projection": L * 2 * C * C,
        "mlp": L * 2 * n_mlp * C * F,
        "lm head": 2 * C * V,
    }


def iso_flop_curve(flops, n_params):
    """Predicted loss along the iso-FLOP curve D = C / (6 N) for an array of model sizes."""
    C = check_positive("flops", flops)
    N = np.asarray(n_params, dtype=np.float64)
    return chinchilla_loss(N, C / (FLOPS_PER_PARAM_TOKEN * N))


def recommend_config(flops, vocab_size=32000, seq_len=2048, arch="llama", head_dim=64,
                     aspect=(32, 256), max_layers=128):
    """The ModelConfig whose parameter count is closest (in log) to N_opt(flops), among shapes
    with d_model a multiple of head_dim and d_model / n_layer within `aspect` (Kaplan et al. 2020,
    Fig. 5: loss hardly depends on the shape in that range). Ties (within 1%) go to the aspect
    ratio nearest 100. Returns (cfg, n_tokens) with n_tokens = flops / cfg.flops_per_token(seq_len)."""
    n_opt, _ = chinchilla_optimal(flops)

    def make(n_layer, d_model):
        return ModelConfig(arch=arch, vocab_size=vocab_size, n_layer=n_layer, n_head=d_model // head_dim,
                           d_model=d_model, max_seq_len=seq_len)

    best = None
    for d_model in range(head_dim, aspect[1] * max_layers + 1, head_dim):
        # N is affine in the depth: N(L) = N(1) + (L - 1) * (N(2) - N(1)); solve N(L) = N_opt for L
        n1, n2 = make(1, d_model).num_params(), make(2, d_model).num_params()
        L_star = 1 + (n_opt - n1) / (n2 - n1)
        for n_layer in {math.floor(L_star), math.ceil(L_star)}:
            if not (1 <= n_layer <= max_layers and aspect[0] <= d_model / n_layer <= aspect[1]):
                continue
            n = n1 + (n_layer - 1) * (n2 - n1)
            score = (round(abs(math.log(n / n_opt)), 2), abs(math.log(d_model / n_layer / 100)))
            if best is None or score < best[0]:
                best = (score, n_layer, d_model)
    if best is None:
        raise ValueError(f"flops: no shape with d_model/n_layer in {aspect} fits N_opt = {n_opt:.3g}")
    cfg = make(best[1], best[2])
    return cfg, flops / cfg.flops_per_token(seq_len)


def plot_iso_flop(path, budgets=(1e17, 1e18, 1e19, 1e20, 1e21), n_points=200):
    """Draw L(N, C / 6N) against N for each budget, the optimum marked (Hoffmann et al. 2022,
    Fig. 3 centre). Returns path, or None when matplotlib is not installed."""
    try:  # matplotlib is optional (pip install minillm[plot])
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for C in budgets:
        n_opt, d_opt = chinchilla_optimal(C)
        N = np.logspace(math.log10(n_opt) - 1.5, math.log10(n_opt) + 1.5, n_points)   # (P,)
        line, = ax.plot(N, iso_flop_curve(C, N), label=f"C = {C:.0e}")
        ax.plot([n_opt], [chinchilla_loss(n_opt, d_opt)], "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("predicted loss L(N, C/6N)")
    ax.set_title("Chinchilla iso-FLOP curves (Hoffmann et al. 2022, eq. 10)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return path
