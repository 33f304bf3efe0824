"""The language model in the loop: the two things reasoning and retrieval ask of a model.

  continuation_logprobs  log p(c_j | context, c_<j) for each token of a continuation: one forward
                         pass over context + continuation, read off the next-token distributions.
                         Used to score candidates (tree search), rerank chunks and answer options.
  sample_continuations   n independent samples after a prompt, via minillm.inference.generate with
                         per-sample seeds drawn from one seed (self-consistency, tree-search proposals).
"""
import numpy as np

from ..nn.softmax import log_softmax


def _ids(x, name):
    a = np.asarray(x)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"{name}: expected a 1-D list of token ids, got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.int64)


def continuation_logprobs(model, context_ids, continuation_ids):
    """log p(continuation_j | context, continuation_<j): (T0,), (M,) ids -> (M,) float64.
    The context is cut from the left so that the whole sequence fits model.config.max_seq_len
    (the context length it was trained at); the continuation must fit on its own with 1 token of context."""
    ctx, cont = _ids(context_ids, "context_ids"), _ids(continuation_ids, "continuation_ids")
    M = len(cont)
    if M == 0:
        return np.zeros(0, dtype=np.float64)
    limit = model.config.max_seq_len
    if M + 1 > limit:
        raise ValueError(f"continuation_ids: {M} tokens leave no room for context in max_seq_len {limit}")
    if len(ctx) == 0:
        raise ValueError("context_ids: need at least one token to condition the first continuation token on")
    ctx = ctx[-(limit - M):]
    seq = np.concatenate([ctx, cont])[None, :]                                  # (1, T0 + M)
    logits = model.forward(seq)[0, len(ctx) - 1:-1]                             # (M, V) predicts cont
    return log_softmax(logits.astype(np.float64))[np.arange(M), cont]                              # (M,)


def sample_continuations(model, prompt_ids, n, max_new_tokens, temperature=0.8, top_p=None, seed=0,
                         stop=None):
    """n sampled continuations (list of (N_i,) int64 arrays) of prompt_ids, each from its own seed
    derived from `seed`, so the set is reproducible and the samples independent."""
    from ..inference import generate
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    seeds = np.random.default_rng(seed).integers(0, 2**63 - 1, size=n)
    prompt = _ids(prompt_ids, "prompt_ids")
    limit = model.config.max_seq_len
    if len(prompt) + max_new_tokens > limit:           # keep the prompt's end within the context
        prompt = prompt[-max(1, limit - max_new_tokens):]
    return [generate(model, prompt, max_new_tokens, temperature=temperature, top_p=top_p, seed=int(s), stop=stop)
            for s in seeds]
