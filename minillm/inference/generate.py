"""Autoregressive generation for one sequence: prefill the prompt in one forward pass, then decode
one token per step (Radford et al. 2019, Sec. 3.7 decoding; the cache trick of kv_cache.py).

With use_cache=True the prompt's keys/values go into a preallocated KVCache in one forward pass and
each step feeds only the newest token; with use_cache=False every step re-runs the model over the
whole sequence (the quadratic baseline kv_cache_analysis.py measures). Both give the same tokens and,
within float32 summation-order noise, the same logits. The paged engine (engine.py) batches many
such sequences; speculative.py drafts several tokens per target step.
"""
import numpy as np

from .kv_cache import KVCache, kv_dtype_of
from .sampling import Sampler
from .decode import forward_cached, native_decoder


def check_prompt(model, prompt_ids, name="prompt_ids"):  # -> (T,) int64
    ids = np.asarray(prompt_ids)
    if ids.ndim == 2 and ids.shape[0] == 1:
        ids = ids[0]
    if ids.ndim != 1 or ids.size == 0 or (ids.dtype.kind not in "iu" and ids.size):
        raise ValueError(f"{name}: expected a non-empty 1-D int array, got shape {ids.shape} dtype {ids.dtype}")
    V = model.config.vocab_size
    if ids.min() < 0 or ids.max() >= V:
        raise ValueError(f"{name}: ids must lie in [0, {V}), got [{ids.min()}, {ids.max()}]")
    return ids.astype(np.int64)


def check_length(model, total, name="max_new_tokens"):
    """Learned position tables (gpt2) stop at max_seq_len; RoPE has no hard limit."""
    cfg = model.config
    if cfg.position_scheme == "learned" and total > cfg.max_seq_len:
        raise ValueError(f"{name}: prompt + new tokens = {total} exceeds the model's max_seq_len "
                         f"{cfg.max_seq_len} (learned positions)")


def stop_matcher(stop):
    """stop: None, an int token id, or an iterable whose items are ids or id sequences. Returns
    f(tokens list) -> length of the stop sequence the list ends with, or 0."""
    if stop is None:
        return lambda tokens: 0
    items = [stop] if isinstance(stop, (int, np.integer)) else list(stop)
    seqs = []
    for s in items:
        seq = [int(s)] if isinstance(s, (int, np.integer)) else [int(t) for t in s]
        if not seq:
            raise ValueError("stop: stop sequences must be non-empty")
        if min(seq) < 0:
            raise ValueError(f"stop: token ids are >= 0, got {min(seq)}")
        seqs.append(seq)

    def ends_with_stop(tokens):
        for seq in seqs:
            if len(tokens) >= len(seq) and tokens[-len(seq):] == seq:
                return len(seq)
        return 0
    return ends_with_stop


def generate(model, prompt_ids, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=None,
             use_cache=True, min_p=None, repetition_penalty=None, stop=None, stream=None,
             return_logits=False, kv_dtype="float32"):
    """New token ids (N,) int64 after prompt_ids (T,), N <= max_new_tokens.

    temperature 0 is greedy; otherwise tokens are drawn with np.random.default_rng(seed) after the
    processors of sampling.py (top_k, top_p, min_p, repetition_penalty over prompt + output).
    stop: token id(s) or id sequences; generation ends after the first one produced, which is
    included in the output. stream: callback(token_id) called as each token is produced.
    return_logits=True also returns the raw logits (N, V) float32 each token was sampled from.
    kv_dtype: the cache's element type, "float32" or "float16" (half the bytes a decode step reads
    from it, as llama.cpp's default cache; keys and values rounded to float16)."""
    ids = check_prompt(model, prompt_ids)
    kv_dtype = kv_dtype_of(kv_dtype)
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens: expected an int >= 0, got {max_new_tokens!r}")
    if stream is not None and not callable(stream):
        raise TypeError(f"stream: expected a callable, got {type(stream).__name__}")
    check_length(model, len(ids) + max_new_tokens)
    sampler = Sampler(temperature, top_k, top_p, min_p, repetition_penalty, seed)
    ends_with_stop = stop_matcher(stop)
    tokens = [int(t) for t in ids]
    out, all_logits = [], []
    if max_new_tokens == 0:
        return (np.zeros(0, np.int64), np.zeros((0, model.config.vocab_size), np.float32)) \
            if return_logits else np.zeros(0, np.int64)

    if use_cache:
        # capacity: prompt + all new tokens but the last, which is never fed back
        cache = KVCache.allocate(model.config, 1, len(ids) + max_new_tokens, kv_dtype)
        logits = forward_cached(model, ids[None, :], cache)[0, -1]     # (V,) prefill, one pass
        step = native_decoder(model, cache)     # the C step with its arguments converted once, or None
    else:
        logits = model.forward(ids[None, :])[0, -1]                     # (V,)
        step = None
    step_input = np.empty((1, 1), dtype=np.int64)                        # reused every step

    def take(logits, greedy=None):             # one new token from logits; True when more are wanted
        tok = sampler.sample(logits, tokens, argmax=greedy)              # greedy: the C loop's argmax
        tokens.append(tok)
        out.append(tok)
        if return_logits:
            all_logits.append(np.array(logits))          # a copy: the C loop reuses its logits buffer
        if stream is not None:
            stream(tok)
        return len(out) < max_new_tokens and not ends_with_stop(out)

    while take(logits):
        tok = out[-1]
        if use_cache and step is not None:       # every other step in one C call (DecodeLoop.run)
            if sampler.plain_argmax and stop is None and stream is None and not return_logits:
                out += step.run(tok, max_new_tokens - len(out)).tolist()      # argmax in C
            else:
                step.run(tok, max_new_tokens - len(out), lambda z, g: out[-1] if take(z, g) else None)
            break
        if use_cache:
            step_input[0, 0] = tok
            logits = forward_cached(model, step_input, cache)[0, -1]   # (V,) decode, O(1) cache work
        else:
            logits = model.forward(np.asarray(tokens, dtype=np.int64)[None, :])[0, -1]
    result = np.asarray(out, dtype=np.int64)
    if return_logits:
        return result, np.stack(all_logits).astype(np.float32)
    return result
