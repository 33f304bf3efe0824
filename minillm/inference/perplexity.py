"""Windowed perplexity, and how far a model's next-token distributions are from a reference model's:
the measurements of llama.cpp's tools/perplexity (`llama-perplexity -f FILE -c 512`, and with
`--kl-divergence` the KL divergence, "same top p" and the base model's perplexity).

The text's tokens are cut into consecutive, non-overlapping windows of n_ctx tokens (the tail
shorter than a window is dropped); when the model adds a BOS token, the first token of each window
is replaced by BOS. Each window is evaluated from scratch, and only its second half is scored:
the logits at positions first = n_ctx // 2 .. n_ctx - 2 predict tokens first + 1 .. n_ctx - 1, so
every scored token has at least n_ctx / 2 tokens of context (n_ctx - 1 - first per window).

    NLL_t = -log softmax(z_t)[x_{t+1}]            ppl = exp(mean_t NLL_t)
    KL_t  = sum_v P_t(v) (log P_t(v) - log Q_t(v))  P the reference's distribution, Q the model's
    top1  = mean_t [argmax P_t == argmax Q_t]

Differences from data/perplexity.py (a small model's perplexity as a document quality filter):
this module measures a model, over one long text, the way llama.cpp reports it.
"""
from dataclasses import dataclass

import numpy as np


def text_windows(ids, n_ctx, bos_id=None):  # (N,) int -> (n, n_ctx) int64
    """Consecutive windows of n_ctx tokens, the first token of each replaced by bos_id when given."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids: expected a 1-D int array, got shape {ids.shape} dtype {ids.dtype}")
    if not isinstance(n_ctx, (int, np.integer)) or n_ctx < 4:
        raise ValueError(f"n_ctx: expected an int >= 4, got {n_ctx!r}")
    n = len(ids) // n_ctx
    if n == 0:
        raise ValueError(f"ids: the text has {len(ids)} tokens, fewer than one window of n_ctx={n_ctx}")
    windows = ids[:n * n_ctx].astype(np.int64).reshape(n, n_ctx)                  # (n, n_ctx)
    if bos_id is not None:
        windows[:, 0] = bos_id
    return windows


def log_softmax(z):  # (..., V) float -> float64
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)      # subtract the max: exp overflows otherwise
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def scored_half(logits, window):  # (n_ctx, V), (n_ctx,) -> logp (m, V) float64, targets (m,)
    """The log-probabilities of a window's second half and the tokens they predict (m = n_ctx - 1 - first)."""
    n_ctx = len(window)
    first = n_ctx // 2
    if logits.shape[0] != n_ctx:
        raise ValueError(f"logits: expected {n_ctx} rows (one per window position), got {logits.shape[0]}")
    return log_softmax(logits[first:n_ctx - 1]), np.asarray(window[first + 1:], dtype=np.int64)


@dataclass
class WindowScores:
    """Per-token measurements, one row per window, m = n_ctx - 1 - n_ctx // 2 columns."""
    nll: np.ndarray                  # (n, m) float64: -log Q(x_{t+1})
    ref_nll: np.ndarray = None       # (n, m) float64: -log P(x_{t+1}) of the reference
    kl: np.ndarray = None            # (n, m) float64: KL(P_t || Q_t)
    top1: np.ndarray = None          # (n, m) bool: argmax P_t == argmax Q_t

    @property
    def tokens(self):
        return int(self.nll.size)

    @property
    def ppl(self):
        return float(np.exp(self.nll.mean()))

    @property
    def ppl_ref(self):
        return None if self.ref_nll is None else float(np.exp(self.ref_nll.mean()))

    def summary(self):
        """{"ppl", "tokens"} and, against a reference, {"kl", "top1", "ppl_ref", "dppl_pct"}."""
        out = {"ppl": self.ppl, "tokens": self.tokens}
        if self.ref_nll is not None:
            out.update(kl=float(self.kl.mean()), top1=float(self.top1.mean()), ppl_ref=self.ppl_ref,
                       dppl_pct=100.0 * (self.ppl / self.ppl_ref - 1.0))
        return out


def reference_logprobs(logits_fn, windows):  # -> (n, m, V) float32
    """The scored halves' log-probabilities of a reference model, computed once and kept (float32)
    so that many models can be compared with it (score_windows(..., ref_logp=...))."""
    return np.stack([scored_half(np.asarray(logits_fn(w)), w)[0].astype(np.float32) for w in windows])


def score_windows(logits_fn, windows, ref_logits_fn=None, progress=None, ref_logp=None):
    """Score every window: logits_fn(window (n_ctx,) int64) -> (n_ctx, V) logits of the model under
    test; ref_logits_fn the same for the reference (or None), or ref_logp (n, m, V) its precomputed
    reference_logprobs. progress(i, n) after each window. The callables keep this independent of
    who computes the logits (minillm, llama.cpp...)."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise ValueError(f"windows: expected a non-empty (n, n_ctx) int array, got shape {windows.shape}")
    if ref_logp is not None and len(ref_logp) != len(windows):
        raise ValueError(f"ref_logp: expected {len(windows)} windows, got {len(ref_logp)}")
    has_ref = ref_logits_fn is not None or ref_logp is not None
    nll, ref_nll, kl, top1 = [], [], [], []
    for i, w in enumerate(windows):
        logq, x = scored_half(np.asarray(logits_fn(w)), w)                          # (m, V), (m,)
        nll.append(-np.take_along_axis(logq, x[:, None], axis=1)[:, 0])             # (m,)
        if has_ref:
            logp = (np.asarray(ref_logp[i], dtype=np.float64) if ref_logp is not None
                    else scored_half(np.asarray(ref_logits_fn(w)), w)[0])           # (m, V)
            if logp.shape != logq.shape:
                raise ValueError(f"ref: logits of shape {logp.shape} do not match the model's {logq.shape}")
            ref_nll.append(-np.take_along_axis(logp, x[:, None], axis=1)[:, 0])
            kl.append(np.sum(np.exp(logp) * (logp - logq), axis=1))                  # (m,)
            top1.append(logp.argmax(axis=1) == logq.argmax(axis=1))
        if progress is not None:
            progress(i + 1, len(windows))
    if not has_ref:
        return WindowScores(np.stack(nll))
    return WindowScores(np.stack(nll), np.stack(ref_nll), np.stack(kl), np.stack(top1))


def model_logits(model):
    """logits_fn for score_windows from a minillm Transformer: one window, evaluated from scratch."""
    return lambda window: model.forward(np.asarray(window, dtype=np.int64)[None, :])[0]   # (n_ctx, V)


def bootstrap_dppl(nll_a, nll_b, n_boot=2000, seed=0, level=0.95):
    """Perplexity change of a against b in %, 100 (exp(mean(a - b)) - 1), with a bootstrap confidence
    interval over windows (Efron 1979; windows resampled with replacement, paired: the same windows
    for a and b, so the text's window-to-window difficulty cancels). nll_a, nll_b: (n, m) per-token
    NLL on the same windows. -> (estimate, low, high) in %."""
    nll_a, nll_b = np.asarray(nll_a, dtype=np.float64), np.asarray(nll_b, dtype=np.float64)
    if nll_a.shape != nll_b.shape or nll_a.ndim != 2:
        raise ValueError(f"nll_b: expected the shape of nll_a {nll_a.shape} (n, m), got {nll_b.shape}")
    d = (nll_a - nll_b).mean(axis=1)                                                # (n,) per window
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)          # (n_boot,)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return tuple(float(100 * (np.exp(v) - 1)) for v in (d.mean(), lo, hi))
