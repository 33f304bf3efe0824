"""What a server needs from the engine: abort frees blocks, finish reasons, log-probs equal to the
model's log-softmax, OpenAI presence/frequency penalties, and a failing request that ends alone."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.inference import CountPenalty, Engine, generate, log_softmax, top_logprobs
from minillm.inference.engine import FINISHED


def workload(seed=0, n=8, vocab=256):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, vocab, size=int(k)).astype(np.int64) for k in rng.integers(1, 40, size=n)]
    return prompts, [int(k) for k in rng.integers(1, 30, size=n)]


def test_abort_in_every_state_frees_blocks(llama_tiny):
    prompts, news = workload(seed=3, n=6)
    engine = Engine(llama_tiny, block_size=4, num_blocks=24, max_num_seqs=3, preemption="swap",
                    max_num_batched_tokens=16)
    rids = [engine.add_request(p, 25) for p in prompts]
    where = {}                                      # state -> the request aborted in that state
    while engine.has_unfinished():
        engine.step()
        for rid in rids:   # abort one request in each state, the first time one is seen there
            state = engine.requests[rid].state
            if state != FINISHED and state not in where and rid not in where.values():
                engine.abort(rid)
                where[state] = rid
                assert engine.requests[rid].finish_reason == "abort"
        engine.cache.check()
    assert set(where) == {"running", "swapped", "waiting"}
    assert engine.cache.allocator.num_used() == 0 and not engine.cache.swapped and not engine.cache.seqs
    aborted = set(where.values())
    alone = {r: generate(llama_tiny, prompts[r], 25) for r in rids if r not in aborted}
    for r, want in alone.items():   # the others are untouched by the aborts
        np.testing.assert_array_equal(engine.requests[r].output, want)
        assert engine.requests[r].finish_reason == "length"


def test_abort_parallel_parent_before_fork_ends_children(llama_tiny):
    engine = Engine(llama_tiny, block_size=4, max_num_batched_tokens=4)
    rids = engine.add_parallel_requests(np.arange(1, 12), 3, 5, temperature=1.0, seed=0)
    engine.step()                                   # 4 of 11 prompt tokens: nothing forked yet
    engine.abort(rids[0])
    assert all(engine.requests[r].state == FINISHED for r in rids)
    assert not engine.has_unfinished() and engine.cache.allocator.num_used() == 0
    engine.abort(rids[0])                           # finished: a no-op
    for r in rids:
        engine.release(r)
    assert not engine.requests


def test_release_refuses_an_unfinished_request(llama_tiny):
    engine = Engine(llama_tiny)
    rid = engine.add_request([1, 2, 3], 4)
    with pytest.raises(ValueError, match="rid: request 0 is still waiting"):
        engine.release(rid)


def test_finish_reason_stop_and_length(llama_tiny):
    want = generate(llama_tiny, [5, 6, 7], 8)
    engine = Engine(llama_tiny)
    a = engine.add_request([5, 6, 7], 8, stop=[[int(want[2]), int(want[3])]])
    b = engine.add_request([5, 6, 7], 8)
    engine.run()
    ra, rb = engine.requests[a], engine.requests[b]
    assert (ra.finish_reason, ra.stop_len, ra.output) == ("stop", 2, list(want[:4]))
    assert (rb.finish_reason, rb.stop_len, len(rb.output)) == ("length", 0, 8)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_logprobs_equal_the_models_log_softmax(tiny_model, temperature):
    prompt = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    engine = Engine(tiny_model, block_size=4)
    rid = engine.add_request(prompt, 6, temperature=temperature, seed=1, top_k=20, logprobs=3)
    engine.run()
    req = engine.requests[rid]
    tokens = np.r_[prompt, req.output].astype(np.int64)
    lp = log_softmax(tiny_model.forward(tokens[None, :-1])[0, len(prompt) - 1:])     # (N, V)
    for i, (chosen, top_ids, top_lp) in enumerate(req.token_logprobs):
        assert chosen == pytest.approx(lp[i, req.output[i]], abs=1e-4)   # float32 logits, batched order
        np.testing.assert_allclose(top_lp, np.sort(lp[i])[::-1][:3], atol=1e-4)
        np.testing.assert_allclose(lp[i, top_ids], top_lp, atol=1e-4)


@settings(max_examples=50, deadline=None)
@given(V=st.integers(1, 40), k=st.integers(0, 45), seed=st.integers(0, 2**31))
def test_top_logprobs_properties(V, k, seed):
    z = np.random.default_rng(seed).standard_normal(V).astype(np.float32) * 5
    tok = int(np.random.default_rng(seed).integers(V))
    chosen, ids, lps = top_logprobs(z, tok, k)
    assert np.exp(log_softmax(z)).sum() == pytest.approx(1.0)
    assert len(ids) == min(k, V) and np.all(np.diff(lps) <= 0)
    ref = z.astype(np.float64) - np.log(np.exp(z.astype(np.float64)).sum())
    assert chosen == pytest.approx(ref[tok], abs=1e-9)
    np.testing.assert_allclose(lps, ref[ids], atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(V=st.integers(1, 12), start=st.integers(0, 5), ctx=st.lists(st.integers(0, 11), max_size=12),
       presence=st.floats(-2, 2), frequency=st.floats(-2, 2))
def test_count_penalty_matches_the_openai_formula(V, start, ctx, presence, frequency):
    ctx = [t % V for t in ctx]
    z = np.linspace(-1, 1, V)
    got = CountPenalty(presence, frequency, start)(z, ctx)
    want = z.copy()
    for j in range(V):   # the formula written out token by token
        c = ctx[start:].count(j)
        want[j] -= c * frequency + (1.0 if c > 0 else 0.0) * presence
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_count_penalty_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"presence_penalty: expected a value in \[-2, 2\], got 3"):
        CountPenalty(3.0, 0.0)


def test_frequency_penalty_changes_greedy_output_in_the_engine(llama_tiny):
    prompt = [7] * 6
    plain = generate(llama_tiny, prompt, 12)
    engine = Engine(llama_tiny)
    rid = engine.add_request(prompt, 12, frequency_penalty=2.0, presence_penalty=2.0)
    out = engine.run()[rid]
    # by hand: greedy over logits minus the penalties of what was generated so far
    tokens, want = list(prompt), []
    for _ in range(12):
        z = llama_tiny.forward(np.array([tokens]))[0, -1].astype(np.float64)
        c = np.bincount(want, minlength=z.shape[0]) if want else np.zeros(z.shape[0])
        t = int(np.argmax(z - 2.0 * c - 2.0 * (c > 0)))
        want.append(t)
        tokens.append(t)
    np.testing.assert_array_equal(out, want)
    assert len(set(want)) > len(set(plain.tolist())) or len(set(want)) == 12


def test_a_failing_request_ends_alone(llama_tiny):
    prompts, news = workload(seed=4, n=5)
    engine = Engine(llama_tiny, block_size=4)
    rids = [engine.add_request(p, k) for p, k in zip(prompts, news)]
    bad = rids[2]

    def broken(logits, context=None):
        raise FloatingPointError("logits overflowed")
    engine.requests[bad].sampler.sample = broken
    out = engine.run()
    assert engine.requests[bad].finish_reason == "error"
    assert engine.requests[bad].error == "FloatingPointError: logits overflowed"
    for r in rids:
        if r != bad:
            np.testing.assert_array_equal(out[r], generate(llama_tiny, prompts[r], news[r]))
    assert engine.cache.allocator.num_used() == 0


def test_a_failing_forward_fails_its_batch_and_the_engine_goes_on(llama_tiny, monkeypatch):
    engine = Engine(llama_tiny, block_size=4)
    a = engine.add_request([1, 2, 3], 4)
    import minillm.inference.engine as engine_module
    real = engine_module.paged_forward
    monkeypatch.setattr(engine_module, "paged_forward", lambda *args: (_ for _ in ()).throw(MemoryError("x")))
    with pytest.raises(MemoryError):
        engine.step()
    assert engine.requests[a].finish_reason == "error" and engine.cache.allocator.num_used() == 0
    monkeypatch.setattr(engine_module, "paged_forward", real)
    b = engine.add_request([1, 2, 3], 4)
    np.testing.assert_array_equal(engine.run()[b], generate(llama_tiny, [1, 2, 3], 4))


# ---------------------------------------------------------------- one bad request never wedges the engine
def test_nan_logits_fail_one_request_and_commit_nothing(llama_tiny, monkeypatch):
    """A request whose logits come out NaN ends alone with finish_reason "error"; its K/V never
    enter the prefix cache (they were not committed), so a later request with the same prompt is
    computed afresh and matches generate(); the others finish as if it had never been there."""
    import minillm.inference.engine as engine_module
    prompts, news = workload(seed=5, n=4)
    poisoned = [3] * 9                              # two full blocks of 4 and one token
    engine = Engine(llama_tiny, block_size=4)
    rids = [engine.add_request(p, k) for p, k in zip(prompts, news)]
    bad = engine.add_request(poisoned, 3)
    real = engine_module.paged_forward

    def nan_for_bad(model, cache, plan, use_native=True):
        logits = real(model, cache, plan, use_native)                   # (len(plan), V)
        for i, (rid, *_) in enumerate(plan):
            if rid == bad:
                logits[i] = np.nan
        return logits
    monkeypatch.setattr(engine_module, "paged_forward", nan_for_bad)
    out = engine.run()
    assert engine.requests[bad].finish_reason == "error" and "NaN" in engine.requests[bad].error
    for r in rids:
        np.testing.assert_array_equal(out[r], generate(llama_tiny, prompts[r], news[r]))
    assert engine.cache.allocator.num_used() == 0
    monkeypatch.setattr(engine_module, "paged_forward", real)
    hits = engine.stats["cached_prompt_tokens"]
    again = engine.add_request(poisoned, 3)
    np.testing.assert_array_equal(engine.run()[again], generate(llama_tiny, poisoned, 3))
    assert engine.stats["cached_prompt_tokens"] == hits   # nothing of the failed request was reused


def test_a_failing_child_ends_alone(llama_tiny):
    engine = Engine(llama_tiny, block_size=4)
    rids = engine.add_parallel_requests([5, 6, 7, 8, 9], 3, 4, temperature=0.8, seed=1)

    def broken(logits, context=None):
        raise ValueError("bad settings")
    engine.requests[rids[1]].sampler.sample = broken
    out = engine.run()
    assert engine.requests[rids[1]].finish_reason == "error"
    assert [len(out[r]) for r in (rids[0], rids[2])] == [4, 4]
    assert engine.cache.allocator.num_used() == 0


@pytest.mark.parametrize("kw, name", [
    (dict(block_size=0), "block_size"), (dict(block_size=-4), "block_size"), (dict(block_size=2.5), "block_size"),
    (dict(watermark=-0.1), "watermark"), (dict(watermark=float("nan")), "watermark"),
    (dict(watermark=1.0), "watermark"), (dict(num_blocks=0), "num_blocks"),
    (dict(num_host_blocks=-1), "num_host_blocks"), (dict(max_num_seqs=True), "max_num_seqs"),
])
def test_engine_arguments_are_validated(llama_tiny, kw, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        Engine(llama_tiny, **kw)


@pytest.mark.parametrize("kw, name", [
    (dict(temperature=float("nan")), "temperature"), (dict(temperature=float("inf")), "temperature"),
    (dict(temperature=-1.0), "temperature"), (dict(temperature="hot"), "temperature"),
    (dict(top_k=2.5), "top_k"), (dict(top_p=float("nan")), "top_p"), (dict(min_p=float("nan")), "min_p"),
    (dict(stop=-1), "stop"), (dict(stop=[[4, -2]]), "stop"), (dict(stop=10**9), "stop"),
    (dict(presence_penalty=float("nan")), "presence_penalty"),
])
def test_request_arguments_are_validated_and_leave_the_engine_clean(llama_tiny, kw, name):
    engine = Engine(llama_tiny, block_size=4)
    with pytest.raises(ValueError, match=f"^{name}: expected|^{name}: token ids"):
        engine.add_request([1, 2, 3], 2, **kw)
    assert not engine.has_unfinished() and engine.requests == {}
    rid = engine.add_request([1, 2, 3], 2)
    np.testing.assert_array_equal(engine.run()[rid], generate(llama_tiny, [1, 2, 3], 2))
