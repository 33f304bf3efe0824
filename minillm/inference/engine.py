"""A continuous-batching inference engine over the paged KV cache (Yu et al. 2022, "Orca":
iteration-level scheduling; Kwon et al. 2023, "vLLM", Sec. 4.5 scheduling and preemption; Agrawal
et al. 2024, "Sarathi-Serve": chunked prefill under a per-step token budget).

Every step() the scheduler decides which requests run and how many of their tokens, then one forward
runs them (paged_forward): the scheduled tokens of every sequence are rows with their own positions,
each attending to its own sequence's keys and values in the paged cache (prefill chunks causally
over the cached positions plus the new ones). Decode tokens and chunks of up to 32 tokens go through
one C call for every layer (kernels.paged_step, attention through the block tables); longer chunks,
or everything when the model does not fit the C step, through the block-by-block forward, packed
into one row with an attention hook (decode tokens there go to the PagedAttention kernel).
The batch changes every step: requests join as soon as blocks are free, leave the moment they finish
-- or the moment abort() cancels them (a client went away): their blocks return to the pool at once.
A request whose sampling fails (bad logits, bad settings) finishes alone with finish_reason "error".

Scheduling, in priority order (first come, first served):
  1. running requests, oldest first: the next chunk of an unfinished prefill, or one decode token.
     If the pool cannot supply their blocks, the NEWEST running request is preempted -- by recompute
     (its blocks are freed; later it is re-admitted and its prompt + output recomputed, often from
     the prefix cache) or by swap (its blocks are copied to the host pool and back later);
  2. swapped-out requests, oldest first, when their blocks fit again;
  3. waiting requests, while the token budget, max_num_seqs and free blocks allow.
Compared with generate.py (one sequence, contiguous cache) the engine trades a little per-step
bookkeeping for memory that grows one block at a time and batches of any shape.
"""
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..kernels.arith import ceil_div
from .. import kernels
from ..nn import attention_forward
from ._native import paged_attention_decode
from .decode import STEP_KV_DTYPES, fits_step, rows_fit, step_rows
from .kv_cache import kv_dtype_of
from .generate import check_length, check_prompt, stop_matcher
from .paged_kv_cache import NoFreeBlocks, PagedKVCache
from .sampling import Sampler, top_logprobs

WAITING, RUNNING, SWAPPED, FINISHED = "waiting", "running", "swapped", "finished"


def paged_forward(model, cache, plan, use_native=True):
    """One forward pass over several sequences of a PagedKVCache. Entries of up to NATIVE_MAX_ROWS
    tokens (decode tokens, short prompts and chunks) go through the one-call C step
    (kernels.paged_step) when the model and the cache fit it; longer chunks, or everything when it
    does not fit, block by block (_paged_forward_blocks). Each entry is one sequence's, so the two
    groups are independent, and a token's arithmetic depends on its own run only, not on what else
    the step carries. Returns the logits of the last token of each plan entry, (len(plan), V)."""
    short = [i for i, (_, _, n, _) in enumerate(plan) if rows_fit(n)]
    logits = _paged_forward_native(model, cache, [plan[i] for i in short]) if use_native and short else None
    if logits is None:
        return _paged_forward_blocks(model, cache, plan, use_native)
    if len(short) == len(plan):
        return logits
    rest = sorted(set(range(len(plan))) - set(short))
    out = np.empty((len(plan), logits.shape[1]), dtype=logits.dtype)
    out[short] = logits
    out[rest] = _paged_forward_blocks(model, cache, [plan[i] for i in rest], use_native)
    return out


def _paged_forward_native(model, cache, plan):  # -> logits (len(plan), V), or None: does not fit
    """Every block for every token of the plan in one C call (csrc/decode.c paged_step): row i is
    the token at its position of its sequence, its K/V go to the slot cache.prepare gave, and it
    attends through its sequence's block table (a prefill chunk's rows see each other's keys)."""
    if kernels.paged_step is None or not fits_step(model) or cache.k.dtype not in STEP_KV_DTYPES:
        return None
    tokens = np.concatenate([cache.seqs[sid].tokens[start:start + n] for sid, start, n, _ in plan])
    positions = np.concatenate([np.arange(start, start + n) for _, start, n, _ in plan])      # (T,)
    row_table = np.repeat(np.arange(len(plan), dtype=np.int32), [n for _, _, n, _ in plan])
    last = (np.cumsum([n for _, _, n, _ in plan]) - 1).astype(np.int32)                        # head rows
    return step_rows(model, tokens, positions, cache.k, cache.v, cache.block_tables([sid for sid, *_ in plan]),
                     row_table, last)


def _paged_forward_blocks(model, cache, plan, use_native=True):
    """One forward pass over several sequences of a PagedKVCache, packed into one row.

    plan: [(sid, start, n, slots)]: positions start..start+n-1 of sequence sid, with the slots that
    cache.prepare(sid, n) returned. Each layer writes the new K/V into the pages, then attends:
    a single new token after cached ones (decode) through the block table with the C kernel, a
    longer chunk (prefill) causally over the sequence's gathered K/V. Returns the logits of the
    last token of each plan entry, (len(plan), V): only those are sampled, so the LM head runs on
    them alone (a 256-token prefill chunk would otherwise cost 256 head rows). The caller commits."""
    tokens = np.concatenate([cache.seqs[sid].tokens[start:start + n] for sid, start, n, _ in plan])
    positions = np.concatenate([np.arange(start, start + n) for _, start, n, _ in plan])   # (T,)
    slots = np.concatenate([s for *_, s in plan])                                         # (T,)
    starts = np.cumsum([0] + [n for _, _, n, _ in plan])                       # packed offsets
    # decode tokens through the paged C kernel (float32 pages; a float16 pool's take the gathered path)
    paged = cache.k.dtype == np.float32
    decode_rows = [i for i, (_, start, n, _) in enumerate(plan) if n == 1 and start > 0 and paged]
    prefill = [(sid, start, n, starts[i]) for i, (sid, start, n, _) in enumerate(plan)
               if i not in decode_rows]
    if decode_rows:
        d_idx = starts[decode_rows]                                             # (Bd,) columns
        tables = cache.block_tables([plan[i][0] for i in decode_rows])          # (Bd, MB) int32
        lengths = np.array([plan[i][1] + 1 for i in decode_rows], dtype=np.int32)

    def attend(l, q, k, v):  # q (1, H, T, D), k, v (1, Hkv, T, D) -> (1, H, T, D)
        cache.write(l, slots, k[0].transpose(1, 0, 2), v[0].transpose(1, 0, 2))
        out = np.empty_like(q)
        if decode_rows:
            qd = np.ascontiguousarray(q[0][:, d_idx].transpose(1, 0, 2))          # (Bd, H, D)
            od = paged_attention_decode(qd, cache.k[l], cache.v[l], tables, lengths,
                                        1.0 / np.sqrt(q.shape[-1]), use_native=use_native)
            out[0][:, d_idx] = od.transpose(1, 0, 2)
        for sid, start, n, off in prefill:  # causal over cached + new positions
            kk, vv = cache.gather(l, sid, start + n)                              # (Hkv, S, D)
            kk, vv = kk.astype(np.float32, copy=False), vv.astype(np.float32, copy=False)
            a, _ = attention_forward(q[:, :, off:off + n], kk[None], vv[None])    # (1, H, n, D)
            out[:, :, off:off + n] = a
        return out

    return model.forward_with(tokens[None, :].astype(np.int64), positions, attend, columns=starts[1:] - 1)[0]


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_engine_args(preemption, block_size, max_num_batched_tokens, max_num_seqs, num_blocks,
                       num_host_blocks, watermark):
    """Every Engine setting, before anything is allocated: a clear ValueError naming the bad one."""
    if preemption not in ("recompute", "swap"):
        raise ValueError(f"preemption: expected 'recompute' or 'swap', got {preemption!r}")
    for name, v in (("block_size", block_size), ("max_num_batched_tokens", max_num_batched_tokens),
                    ("max_num_seqs", max_num_seqs), ("num_blocks", num_blocks)):
        if not (v is None and name == "num_blocks") and (not _is_int(v) or v < 1):
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    if num_host_blocks is not None and (not _is_int(num_host_blocks) or num_host_blocks < 0):
        raise ValueError(f"num_host_blocks: expected None or an int >= 0, got {num_host_blocks!r}")
    if isinstance(watermark, bool) or not isinstance(watermark, (int, float, np.floating, np.integer)) \
            or not 0.0 <= watermark < 1.0:   # also NaN, which fails both comparisons
        raise ValueError(f"watermark: expected a fraction of the pool in [0, 1), got {watermark!r}")


def _check_stop(stop, V):
    """stop ids must be token ids of the model: [0, V)."""
    if stop is None:
        return
    items = [stop] if _is_int(stop) else list(stop)
    for s in items:
        for t in ([s] if _is_int(s) else list(s)):
            if not _is_int(t) or not 0 <= t < V:
                raise ValueError(f"stop: expected token ids in [0, {V}), got {t!r}")


@dataclass
class Request:
    rid: int
    prompt: list
    max_new_tokens: int
    sampler: Sampler
    stop: object                     # stop_matcher(...) callable
    output: list = field(default_factory=list)
    state: str = WAITING
    parent: int = None               # parallel sampling: fork from this request after its prefill
    children: list = field(default_factory=list)
    sampling: dict = field(default_factory=dict)   # the Sampler's settings, for forked children
    logprobs: int = None             # None: no log-probs; k >= 0: chosen token's plus the top k
    token_logprobs: list = field(default_factory=list)   # per output token: top_logprobs(...) tuple
    finish_reason: str = None        # "length" | "stop" | "abort" | "error" once FINISHED
    stop_len: int = 0                # tokens of the matched stop sequence at the end of output
    error: str = None                # what went wrong when finish_reason is "error"

    @property
    def tokens(self):
        return self.prompt + self.output


class Engine:
    """Continuous batching over a PagedKVCache.

    model: Transformer; block_size: token slots per block; num_blocks: pool size (default: room for
    max_num_seqs sequences of max_seq_len); max_num_batched_tokens: per-step token budget (chunked
    prefill splits longer prompts); preemption: "recompute" | "swap"; num_host_blocks: swap pool;
    kv_dtype: the pool's element type, "float32" or "float16" (half the memory per block)."""

    def __init__(self, model, block_size=16, num_blocks=None, max_num_batched_tokens=256,
                 max_num_seqs=64, enable_prefix_caching=True, chunked_prefill=True,
                 preemption="recompute", num_host_blocks=None, watermark=0.0, use_native=True,
                 kv_dtype="float32"):
        cfg = model.config
        kv_dtype = kv_dtype_of(kv_dtype)
        _check_engine_args(preemption, block_size, max_num_batched_tokens, max_num_seqs, num_blocks,
                           num_host_blocks, watermark)
        if num_blocks is None:
            num_blocks = max_num_seqs * ceil_div(cfg.max_seq_len, block_size)
        if num_host_blocks is None:
            num_host_blocks = num_blocks if preemption == "swap" else 0
        self.model = model
        self.cache = PagedKVCache(cfg, num_blocks, block_size, enable_prefix_caching, num_host_blocks, kv_dtype)
        self.max_num_batched_tokens = int(max_num_batched_tokens)
        self.max_num_seqs = int(max_num_seqs)
        self.chunked_prefill = bool(chunked_prefill)
        self.preemption = preemption
        self.watermark_blocks = int(watermark * num_blocks)
        self.use_native = use_native
        self.requests = {}
        self.next_rid = 0
        self.waiting = deque()           # FCFS; preempted-by-recompute requests go back to the front
        self.running = []                # in arrival order
        self.swapped = []
        self.stats = {"steps": 0, "prefill_tokens": 0, "decode_tokens": 0, "cached_prompt_tokens": 0,
                      "preempted_recompute": 0, "preempted_swap": 0, "max_batch": 0, "seconds": 0.0,
                      "kv_used_bytes_sum": 0, "kv_reserved_bytes_sum": 0}

    # ------------------------------------------------------------------ requests
    def add_request(self, prompt_ids, max_new_tokens, temperature=0.0, seed=None, top_k=None,
                    top_p=None, min_p=None, repetition_penalty=None, stop=None, presence_penalty=0.0,
                    frequency_penalty=0.0, logprobs=None):
        """Queue a request; returns its id. Sampling settings as in generate(), plus OpenAI's
        presence/frequency penalties (over generated tokens) and logprobs: None, or k >= 0 to record
        each output token's log-probability under the model and the k most likely alternatives."""
        ids = check_prompt(self.model, prompt_ids)
        if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected an int >= 1, got {max_new_tokens!r}")
        V = self.model.config.vocab_size
        if logprobs is not None and (not isinstance(logprobs, (int, np.integer)) or not 0 <= logprobs <= V):
            raise ValueError(f"logprobs: expected None or an int in [0, {V}], got {logprobs!r}")
        check_length(self.model, len(ids) + max_new_tokens)
        _check_stop(stop, V)
        need = self.cache.blocks_for(len(ids) + max_new_tokens)
        if need > self.cache.num_blocks:
            raise ValueError(f"prompt_ids: prompt + max_new_tokens needs {need} blocks, the pool has "
                             f"{self.cache.num_blocks} (raise num_blocks)")
        sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                        repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                        frequency_penalty=frequency_penalty, penalty_start=len(ids))
        req = Request(self.next_rid, [int(t) for t in ids], int(max_new_tokens),
                      Sampler(seed=seed, **sampling), stop_matcher(stop), sampling=sampling, logprobs=logprobs)
        self.next_rid += 1
        self.requests[req.rid] = req
        self.waiting.append(req.rid)
        return req.rid

    def add_parallel_requests(self, prompt_ids, n, max_new_tokens, temperature=1.0, seed=None, **kw):
        """n samples of one prompt (parallel sampling): the prompt is prefilled once, then n - 1
        children fork the parent's blocks (copy-on-write). Sample i uses seed + i. -> [request ids]"""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: expected an int >= 1, got {n!r}")
        seeds = [None if seed is None else seed + i for i in range(n)]
        parent = self.add_request(prompt_ids, max_new_tokens, temperature, seeds[0], **kw)
        p = self.requests[parent]
        rids = [parent]
        for i in range(1, n):
            child = Request(self.next_rid, list(p.prompt), p.max_new_tokens, Sampler(seed=seeds[i], **p.sampling),
                            p.stop, parent=parent, sampling=p.sampling, logprobs=p.logprobs)
            self.next_rid += 1
            self.requests[child.rid] = child   # not queued: it starts when the parent's prefill is done
            p.children.append(child.rid)
            rids.append(child.rid)
        return rids

    def abort(self, rid, reason="abort"):
        """Finish a request now, wherever it is (waiting, running, swapped out), and free its blocks.
        Children of a parallel request that have not forked yet finish with it. A finished or
        unknown id is left alone (the client may go away after its request ended)."""
        req = self.requests.get(rid)
        if req is None or req.state == FINISHED:
            return
        for queue in (self.running, self.swapped, self.waiting):
            if rid in queue:
                queue.remove(rid)
        if rid in self.cache.seqs or rid in self.cache.swapped:
            self.cache.free(rid)
        req.state, req.finish_reason = FINISHED, reason
        for cid in req.children:
            if not self.requests[cid].output and self.requests[cid].state == WAITING:
                self.abort(cid, reason)

    def release(self, rid):
        """Forget a finished request (a long-running server calls this so that memory stays bounded)."""
        req = self.requests.get(rid)
        if req is not None and req.state != FINISHED:
            raise ValueError(f"rid: request {rid} is still {req.state}; abort it first")
        self.requests.pop(rid, None)

    def has_unfinished(self):
        return bool(self.waiting or self.running or self.swapped)

    # ------------------------------------------------------------------ scheduling
    def _preempt(self, rid):
        req = self.requests[rid]
        self.running.remove(rid)
        if self.preemption == "swap":
            try:
                self.cache.swap_out(rid)
                req.state = SWAPPED
                self.swapped.append(rid)
                self.stats["preempted_swap"] += 1
                return
            except NoFreeBlocks:
                pass  # host pool full: fall back to recompute
        self.cache.free(rid)
        req.state = WAITING
        self.waiting.appendleft(rid)
        self.stats["preempted_recompute"] += 1

    def _schedule(self):
        """-> [(rid, first position, n tokens, slots (n,))] for this step; blocks are reserved.
        Running requests first (preempting the newest when blocks run out), then swapped-out ones
        back in, then waiting ones, each within the step's token budget; none are admitted in a
        step that had to preempt."""
        plan = []
        budget, preempted = self._schedule_running(self.max_num_batched_tokens, plan)
        if not preempted:
            budget = self._schedule_swapped(budget, plan)
            self._schedule_waiting(budget, plan)
        return plan

    def _plan(self, plan, rid, start, n):  # reserve n slots for rid from position start
        plan.append((rid, start, n, self.cache.prepare(rid, n)))
        return n

    def _set_running(self, rid):
        self.requests[rid].state = RUNNING
        self.running.append(rid)
        self.running.sort()

    def _schedule_running(self, budget, plan):  # -> budget left, whether a request was preempted
        preempted = False
        for rid in sorted(self.running):
            if rid not in self.running or budget <= 0:
                continue
            seq = self.cache.seqs[rid]
            left = len(seq.tokens) - seq.num_computed
            n = min(left, budget) if self.chunked_prefill or left == 1 else left
            if n > budget and plan:
                continue      # an unchunked prefill waits for a step of its own
            while self.cache.blocks_needed(rid, n) > self.cache.allocator.num_free():
                victim = max(self.running)            # the newest request
                self._preempt(victim)
                preempted = True
                if victim == rid:
                    break
            if rid in self.running:
                budget -= self._plan(plan, rid, seq.num_computed, n)
        return budget, preempted

    def _schedule_swapped(self, budget, plan):  # -> budget left; swaps requests back in, oldest first
        while self.swapped:
            rid = self.swapped[0]
            seq, host = self.cache.swapped[rid]
            if len(host) + 1 > self.cache.allocator.num_free() - self.watermark_blocks or \
                    len(self.running) >= self.max_num_seqs or budget <= 0:
                break
            self.swapped.pop(0)
            self.cache.swap_in(rid)
            self._set_running(rid)
            seq = self.cache.seqs[rid]
            n = min(len(seq.tokens) - seq.num_computed, budget)
            if self.cache.blocks_needed(rid, n) <= self.cache.allocator.num_free():
                budget -= self._plan(plan, rid, seq.num_computed, n)
        return budget

    def _schedule_waiting(self, budget, plan):  # admits waiting requests in arrival order
        allocator = self.cache.allocator
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            rid = self.waiting[0]
            req = self.requests[rid]
            counters = allocator.counters()
            done = self.cache.add_sequence(rid, req.tokens)   # prefix-cache hits: tokens already done
            left = len(req.tokens) - done
            n = min(left, budget) if self.chunked_prefill else left
            if (not self.chunked_prefill and n > budget and plan) or \
                    self.cache.blocks_needed(rid, n) > allocator.num_free() - self.watermark_blocks:
                self.cache.free(rid)         # undo the prefix-cache lookups; try again next step
                allocator.forget_lookups(counters)
                break
            self.waiting.popleft()
            self._set_running(rid)
            self.stats["cached_prompt_tokens"] += done
            budget -= self._plan(plan, rid, done, n)

    # ------------------------------------------------------------------ execution
    def step(self):
        """Schedule and run one forward pass. Returns {request id: token} for every token sampled."""
        t0 = time.perf_counter()
        plan = self._schedule()
        if not plan:
            if self.has_unfinished():
                raise RuntimeError("engine: no request can be scheduled (pool too small for any of them)")
            return {}
        try:
            logits = paged_forward(self.model, self.cache, plan, self.use_native)        # (len(plan), V)
        except Exception as e:   # the batch's requests cannot go on; the engine and the others can
            for rid, *_ in plan:
                self.requests[rid].error = f"{type(e).__name__}: {e}"
                self.abort(rid, "error")
            raise
        produced, failed = {}, []
        for i, (rid, start, n, _) in enumerate(plan):
            try:
                tok = self._sample_and_commit(self.requests[rid], logits[i], n)
            except Exception as e:   # one request's settings or logits fail: it alone ends
                self.requests[rid].error = f"{type(e).__name__}: {e}"
                failed.append(rid)
                continue
            if tok is not None:
                produced[rid] = tok
            is_prefill = not (n == 1 and start > 0)
            self.stats["prefill_tokens" if is_prefill else "decode_tokens"] += n
        for rid in failed:  # their new K/V were never committed: no prefix-cache entry holds them
            self.abort(rid, "error")
        for rid in list(produced):
            self._maybe_finish(rid)
        s = self.stats
        s["steps"] += 1
        s["max_batch"] = max(s["max_batch"], len(plan))
        s["kv_used_bytes_sum"] += self.cache.kv_bytes_used()
        s["kv_reserved_bytes_sum"] += self.cache.kv_bytes_reserved()
        s["seconds"] += time.perf_counter() - t0
        return produced

    def _sample_and_commit(self, req, row, n):  # row (V,): logits at this step's last position
        """Check the request's logits, sample its next token if its prompt is all computed, and
        only then commit its n new K/V positions (so a failure leaves nothing in the prefix cache
        and the request's blocks are simply freed). -> the token, or None mid-prefill."""
        if np.isnan(row).any():     # NaN K/V anywhere in the chunk reach its last position's logits
            raise FloatingPointError(f"logits: NaN in the model's output for request {req.rid}")
        seq = self.cache.seqs[req.rid]
        if seq.num_computed + n < len(seq.tokens):        # a prefill chunk: nothing to sample yet
            self.cache.commit(req.rid, n)
            return None
        tok = req.sampler.sample(row, req.tokens)
        logprobs = top_logprobs(row, tok, req.logprobs) if req.logprobs is not None else None
        self.cache.commit(req.rid, n)
        if not req.output and req.children:
            self._fork_children(req, row)
        self._append(req, tok, logprobs)
        return tok

    def _fork_children(self, parent, row):
        """Parallel sampling: each child takes the parent's blocks and samples its own first token
        from the same logits."""
        for cid in parent.children:
            child = self.requests[cid]
            if child.state == FINISHED:      # aborted before its parent's prefill ended
                continue
            self.cache.fork(parent.rid, cid)
            child.state = RUNNING
            self.running.append(cid)
            try:
                self._emit(child, row)
            except Exception as e:   # this child's sampling failed: it alone ends
                child.error = f"{type(e).__name__}: {e}"
                self.abort(cid, "error")
                continue
            self._maybe_finish(cid)
        self.running.sort()

    def _emit(self, req, row):
        tok = req.sampler.sample(row, req.tokens)
        # under the model itself: log-softmax of the raw logits
        self._append(req, tok, top_logprobs(row, tok, req.logprobs) if req.logprobs is not None else None)
        return tok

    def _append(self, req, tok, logprobs):
        if logprobs is not None:
            req.token_logprobs.append(logprobs)
        req.output.append(tok)
        self.cache.append_token(req.rid, tok)

    def _maybe_finish(self, rid):
        req = self.requests[rid]
        if req.state != RUNNING:
            return
        req.stop_len = req.stop(req.output)
        if req.stop_len or len(req.output) >= req.max_new_tokens:
            req.state, req.finish_reason = FINISHED, "stop" if req.stop_len else "length"
            self.running.remove(rid)
            self.cache.free(rid)

    def run(self):
        """Step until every request has finished. -> {request id: new tokens (N,) int64}"""
        while self.has_unfinished():
            self.step()
        return {rid: np.asarray(r.output, dtype=np.int64) for rid, r in self.requests.items()}

    # ------------------------------------------------------------------ reporting
    def memory_utilization(self):
        """Mean over steps of used KV bytes / reserved KV bytes."""
        s = self.stats
        return s["kv_used_bytes_sum"] / s["kv_reserved_bytes_sum"] if s["kv_reserved_bytes_sum"] else 0.0

    def prefix_hit_rate(self):
        return self.cache.allocator.hit_rate()
