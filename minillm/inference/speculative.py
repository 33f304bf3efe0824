"""Speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative
Decoding", Algorithm 1; Chen et al. 2023 for the same rule) and prompt-lookup drafting (Saxena 2023).

A cheap proposer guesses k tokens x_1..x_k with distributions q_1..q_k. The target scores all of them
in ONE forward pass over [last token, x_1..x_k] using its KV cache, which yields p_1..p_{k+1}. Then,
left to right:
    accept x_i with probability min(1, p_i(x_i) / q_i(x_i));
    at the first rejection emit a token from norm(max(0, p_i - q_i)) and stop;
    if all k are accepted, emit a bonus token from p_{k+1}.
Each emitted token is distributed exactly as p (Leviathan et al., Theorem 3.5), so the output has the
target's distribution whatever the draft is; a good draft only makes it faster. The caches of both
models are then rolled back to the accepted prefix (KVCache.truncate: O(1)).

Greedy mode (temperature 0) is the special case p_i, q_i one-hot: x_i is kept iff it is the target's
argmax, so the output equals greedy target decoding token for token.

Prompt lookup needs no draft model: the proposal is what followed the latest earlier occurrence of
the sequence's last n-gram (code and summaries repeat their input). Its q is one-hot, so the same
accept rule applies with q_i(x_i) = 1.

Differences from generate.py: several tokens per target forward; from engine.py: one sequence.
"""
import time

import numpy as np

from .generate import check_length, check_prompt
from .kv_cache import KVCache
from .sampling import Sampler, draw
from .decode import forward_cached


class DraftModelProposer:
    """Proposals from a smaller model sharing the target's vocabulary, with its own KV cache."""

    def __init__(self, draft, capacity, sampler):
        self.model, self.sampler = draft, sampler
        self.cache = KVCache.allocate(draft.config, 1, capacity)
        self.calls = 0

    def propose(self, seq, k):  # -> drafts [k ints], q (k, V) float64
        drafts, qs = [], []
        feed = seq[self.cache.pos:]               # tokens the draft has not seen yet (>= 1; [x_k, bonus]
                                                  # after a fully accepted round: one C step for both)
        for _ in range(k):
            logits = forward_cached(self.model, np.asarray(feed, dtype=np.int64)[None, :], self.cache)[0, -1]
            self.calls += 1
            q = self.sampler.probs(logits, seq + drafts)                  # (V,)
            x = int(np.argmax(q)) if self.sampler.greedy else draw(q, self.sampler.rng)
            drafts.append(x)
            qs.append(q)
            feed = [x]
        return drafts, np.stack(qs)

    def rollback(self, n_valid):
        """Keep only the first n_valid positions (those that match the accepted sequence)."""
        self.cache.truncate(min(self.cache.pos, n_valid))


class PromptLookupProposer:
    """Proposals copied from the sequence itself: find the latest earlier occurrence of the last n
    tokens (n = max_ngram .. 1) and propose the k tokens that followed it. q is one-hot."""

    def __init__(self, max_ngram=3):
        if not isinstance(max_ngram, (int, np.integer)) or max_ngram < 1:
            raise ValueError(f"ngram: expected an int >= 1, got {max_ngram!r}")
        self.max_ngram = max_ngram
        self.calls = 0

    def propose(self, seq, k):  # -> drafts [<= k ints], None (deterministic)
        arr = np.asarray(seq, dtype=np.int64)
        for n in range(min(self.max_ngram, len(seq) - 1), 0, -1):
            tail = arr[-n:]
            # windows starting at 0 .. len-n-1 (the tail itself is excluded), latest first
            windows = np.lib.stride_tricks.sliding_window_view(arr[:-1], n)  # (len-n, n)
            hits = np.flatnonzero((windows == tail).all(axis=1))
            if hits.size:
                start = int(hits[-1]) + n
                return [int(t) for t in arr[start:start + k]], None
        return [], None

    def rollback(self, n_valid):
        pass


def _speculate(target, proposer, ids, max_new_tokens, k, sampler, capacity):
    """The verify loop shared by both proposers. Returns (new tokens (N,) int64, stats)."""
    t0 = time.perf_counter()
    V = target.config.vocab_size
    seq = [int(t) for t in ids]
    n_prompt = len(seq)
    cache = KVCache.allocate(target.config, 1, capacity)
    stats = {"proposed": 0, "accepted": 0, "target_calls": 0, "steps": 0}
    # The whole prompt is prefilled and the first token drawn from its last logits, as generate()
    # does: the prompt's last position then takes the same route (a long prompt's forward, which
    # may run other kernels than a verification's) in both, and greedy outputs stay equal.
    if max_new_tokens > 0:
        logits = forward_cached(target, np.asarray(seq, dtype=np.int64)[None, :], cache)[0, -1]
        stats["target_calls"] += 1
        seq.append(sampler.sample(logits, seq))
    # invariant at the top of the loop: cache holds seq[:-1]; the last token has not been fed
    while len(seq) - n_prompt < max_new_tokens:
        remaining = max_new_tokens - (len(seq) - n_prompt)
        drafts, q = proposer.propose(seq, min(k, remaining)) if k > 0 else ([], None)
        feed = seq[cache.pos:] + drafts
        logits = forward_cached(target, np.asarray(feed, dtype=np.int64)[None, :], cache)[0]
        logits = logits[-(len(drafts) + 1):]                          # (k+1, V): p_1 .. p_{k+1}
        stats["target_calls"] += 1
        stats["steps"] += 1
        stats["proposed"] += len(drafts)
        emitted, n_accepted = [], 0
        for i, x in enumerate(drafts):
            p = sampler.probs(logits[i], seq + emitted)               # (V,)
            qi = q[i] if q is not None else np.eye(1, V, x, dtype=np.float64)[0]
            if sampler.greedy:
                ok = p[x] == 1.0                                      # x is the target's argmax
            else:
                ok = sampler.rng.random() < min(1.0, p[x] / qi[x])
            if ok:
                emitted.append(x)
                n_accepted += 1
                continue
            if sampler.greedy:
                emitted.append(int(np.argmax(p)))
            else:
                residual = np.maximum(p - qi, 0.0)                    # norm(max(0, p - q))
                emitted.append(draw(residual / residual.sum() if residual.sum() > 0 else p, sampler.rng))
            break
        else:  # every draft accepted: the bonus token comes from p_{k+1}
            p = sampler.probs(logits[len(drafts)], seq + emitted)
            emitted.append(int(np.argmax(p)) if sampler.greedy else draw(p, sampler.rng))
        stats["accepted"] += n_accepted
        seq.extend(emitted[:remaining])
        cache.truncate(len(seq) - 1)          # drop rejected drafts; the newest token is not fed yet
        proposer.rollback(len(seq) - 1)
    stats["draft_calls"] = proposer.calls
    stats["acceptance_rate"] = stats["accepted"] / stats["proposed"] if stats["proposed"] else 0.0
    stats["tokens_per_target_call"] = (len(seq) - n_prompt) / max(1, stats["steps"])
    stats["seconds"] = time.perf_counter() - t0
    return np.asarray(seq[n_prompt:], dtype=np.int64), stats


def _check_k(k):
    if not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k: expected an int >= 0, got {k!r}")


def speculative_generate(target, draft, prompt_ids, max_new_tokens, k=4, temperature=0.0, seed=None,
                         top_k=None, top_p=None, min_p=None):
    """New tokens (N,) int64 from `target`, drafting k tokens per step with `draft` (same vocabulary).
    The output is distributed exactly as sampling from the target with these settings (identical
    to greedy target decoding when temperature is 0). Returns (tokens, stats): proposed, accepted,
    acceptance_rate, target_calls, draft_calls, tokens_per_target_call, seconds."""
    ids = check_prompt(target, prompt_ids)
    if draft.config.vocab_size != target.config.vocab_size:
        raise ValueError(f"draft: vocab_size {draft.config.vocab_size} differs from the target's "
                         f"{target.config.vocab_size}")
    _check_k(k)
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens!r}")
    capacity = len(ids) + max_new_tokens     # cache holds at most seq[:-1] + the drafts
    check_length(target, capacity)
    check_length(draft, capacity)
    sampler = Sampler(temperature, top_k, top_p, min_p, None, seed)
    # the draft shares the sampler's settings and random stream: q must be processed like p
    proposer = DraftModelProposer(draft, capacity, sampler)
    return _speculate(target, proposer, ids, max_new_tokens, k, sampler, capacity)


def prompt_lookup_generate(target, prompt_ids, max_new_tokens, k=4, ngram=3, temperature=0.0,
                           seed=None, top_k=None, top_p=None, min_p=None):
    """Speculative decoding with n-gram lookup in the prompt + output as the drafter (no draft
    model). Same output distribution as plain sampling; returns (tokens, stats) as above."""
    ids = check_prompt(target, prompt_ids)
    _check_k(k)
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens!r}")
    capacity = len(ids) + max_new_tokens
    check_length(target, capacity)
    sampler = Sampler(temperature, top_k, top_p, min_p, None, seed)
    return _speculate(target, PromptLookupProposer(ngram), ids, max_new_tokens, k, sampler, capacity)
