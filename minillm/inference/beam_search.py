"""Beam search (Graves 2012; Sutskever et al. 2014, Sec. 3.2) on the paged KV cache, where beams
that descend from one hypothesis share its blocks (Kwon et al. 2023, Sec. 4.4, "beam search").

Keep the W highest-scoring partial sequences, score(y) = sum_t log p(y_t | y_<t). Each step extends
every beam by every token and keeps the best W of the W*V candidates. A kept candidate whose parent
beam was already claimed by a better candidate becomes a fork of it: PagedKVCache.fork shares all of
the parent's blocks, so the prompt and the common history are stored once however many beams
descend from them, and copy-on-write duplicates only a partially filled last block when two beams
write into it. Finished hypotheses (eos) are ranked by score / length^length_penalty (Wu et al.
2016, GNMT, eq. 14 uses a smoothed form). Differs from generate.py (one hypothesis, sampling) and
engine.py (independent requests): the beams compete and share memory.
"""
import numpy as np

from ..kernels.arith import ceil_div
from ..nn.softmax import log_softmax
from .engine import paged_forward
from .generate import check_length, check_prompt
from .paged_kv_cache import PagedKVCache


def beam_search(model, prompt_ids, max_new_tokens, beam_width=4, length_penalty=1.0, eos=None,
                block_size=16, num_blocks=None, use_native=True):
    """-> (best new tokens (N,) int64, info): info["beams"] is [(tokens, score)] best first (the
    finished hypotheses plus the live beams at the end), info["peak_blocks"] the most blocks held
    at once, info["blocks_without_sharing"] what W separate caches would have held."""
    ids = check_prompt(model, prompt_ids)
    W = beam_width
    if not isinstance(W, (int, np.integer)) or W < 1:
        raise ValueError(f"beam_width: expected an int >= 1, got {W!r}")
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
    check_length(model, len(ids) + max_new_tokens)
    per_seq = ceil_div(len(ids) + max_new_tokens, block_size)
    if num_blocks is None:
        num_blocks = W * per_seq + W          # enough even with no sharing at all
    cache = PagedKVCache(model.config, num_blocks, block_size, enable_prefix_caching=False)
    next_sid = [0]

    def new_sid():
        next_sid[0] += 1
        return next_sid[0]

    cache.add_sequence(0, ids.tolist())
    slots = cache.prepare(0, len(ids))
    logits = paged_forward(model, cache, [(0, 0, len(ids), slots)], use_native)[-1]          # (V,)
    logp = log_softmax(logits.astype(np.float64))                                          # (V,)
    cache.commit(0, len(ids))
    beams = [(0, 0.0)]                         # (sid, score) of live beams
    step_logp = logp[None, :]                  # (B, V): next-token log-probs of each live beam
    finished, peak = [], cache.allocator.num_used()

    def final_score(score, n):
        return score / (n ** length_penalty) if length_penalty else score

    for t in range(max_new_tokens):
        scores = np.array([s for _, s in beams])[:, None] + step_logp           # (B, V)
        flat = scores.ravel()
        k = min(W, flat.size)
        top = np.argpartition(-flat, k - 1)[:k]
        top = top[np.lexsort((top, -flat[top]))]   # best first; ties by index, deterministic
        V = step_logp.shape[1]
        claimed, new_beams = set(), []
        for c in top:
            parent, tok = beams[c // V][0], int(c % V)
            if parent in claimed:
                sid = new_sid()
                cache.fork(parent, sid)        # shares every block of the parent
                cache.seqs[sid].tokens.pop()   # the parent's newest token is replaced by ours
            else:
                sid = parent
                claimed.add(parent)
            cache.append_token(sid, tok)
            new_beams.append((sid, float(flat[c])))
        for sid, _ in beams:
            if sid not in claimed:
                cache.free(sid)                # dropped beams give their blocks back
        beams = []
        for sid, score in new_beams:
            gen = cache.seqs[sid].tokens[len(ids):]
            if (eos is not None and gen[-1] == eos) or t == max_new_tokens - 1:
                finished.append((np.asarray(gen, dtype=np.int64), final_score(score, len(gen))))
                cache.free(sid)
            else:
                beams.append((sid, score))
        if not beams:
            break
        plan = []
        for sid, _ in beams:
            seq = cache.seqs[sid]
            plan.append((sid, seq.num_computed, 1, cache.prepare(sid, 1)))
        peak = max(peak, cache.allocator.num_used())
        step_logp = log_softmax(paged_forward(model, cache, plan, use_native).astype(np.float64))  # (B, V)
        for sid, _ in beams:
            cache.commit(sid, 1)
    finished.sort(key=lambda x: -x[1])
    info = {"beams": finished, "peak_blocks": peak, "blocks_without_sharing": W * per_seq,
            "blocks_in_use_after": cache.allocator.num_used()}
    return finished[0][0], info
