"""Batched rollouts: sample responses for many prompts at once with a KV cache (the experience-
collection phase of RLHF, Ouyang et al. 2022, Sec. 3.5; Ziegler et al. 2019, Sec. 2).

minillm.inference.generate decodes one sequence; PPO needs a batch of B responses per iteration, so
this runs the same prefill-then-decode loop with a (L, B, Hkv, S, D) minillm.inference.KVCache and
the same logits processors (minillm.inference.sampling), one forward pass per step for the whole
batch. Prompts in one batch share a length (the cache has one write position for all rows), so
sample_responses groups prompts by length. A row that has produced the stop token is finished: it
keeps being fed (the batch shape stays fixed) but nothing more is recorded for it.

For PPO the tokens must come from π_θ itself (temperature 1, no top-k/top-p), so that the
log-probs computed afterwards are those of the distribution that was actually sampled.
"""
import numpy as np

from ..inference.kv_cache import KVCache
from ..inference.sampling import apply, processors, softmax
from ..inference.decode import forward_cached


def _draw_rows(p, rng):  # (B, V) probabilities -> (B,) int64, inverse CDF, one uniform per row
    c = np.cumsum(p, axis=1)                                             # (B, V)
    u = rng.random(p.shape[0]) * c[:, -1]                                # (B,)
    idx = (c <= u[:, None]).sum(axis=1)                                  # first index with c > u
    return np.minimum(idx, p.shape[1] - 1).astype(np.int64)


def sample_batch(model, prompts, max_new_tokens, rng, temperature=1.0, top_k=None, top_p=None,
                 stop_id=None):  # prompts (B, Tp) int -> list of B id lists
    """Responses for B equal-length prompts; each ends with stop_id if produced (kept) or after
    max_new_tokens. temperature 0 is greedy."""
    prompts = np.asarray(prompts, dtype=np.int64)
    if prompts.ndim != 2 or prompts.shape[1] == 0:
        raise ValueError(f"prompts: expected a non-empty (B, Tp) int array, got shape {prompts.shape}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected >= 1, got {max_new_tokens}")
    B, Tp = prompts.shape
    procs = processors(temperature, top_k, top_p)
    cache = KVCache.allocate(model.config, B, Tp + max_new_tokens)
    logits = forward_cached(model, prompts, cache)[:, -1]               # (B, V) prefill
    out = [[] for _ in range(B)]
    done = np.zeros(B, dtype=bool)
    for step in range(max_new_tokens):
        z = apply(procs, logits)                                         # (B, V) float64
        if temperature == 0:
            tok = np.argmax(z, axis=1).astype(np.int64)
        else:
            tok = _draw_rows(softmax(z), rng)                            # (B,)
        for b in np.flatnonzero(~done):
            out[b].append(int(tok[b]))
        if stop_id is not None:
            done |= tok == stop_id
        if done.all() or step == max_new_tokens - 1:
            break
        logits = forward_cached(model, tok[:, None], cache)[:, -1]      # (B, V) one decode step
    return out


def sample_responses(model, prompts, max_new_tokens, rng, temperature=1.0, top_k=None, top_p=None,
                     stop_id=None, batch_size=64):
    """Responses for a list of prompts (id lists of any lengths), in order: prompts are grouped by
    length and decoded batch_size at a time."""
    out = [None] * len(prompts)
    by_len = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            part = idx[s:s + batch_size]
            res = sample_batch(model, np.array([prompts[i] for i in part]), max_new_tokens, rng,
                               temperature, top_k, top_p, stop_id)
            for i, r in zip(part, res):
                out[i] = r
    return out
