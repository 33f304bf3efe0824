"""The continuous-batching engine gives every request exactly what it would get alone (engine.py)."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.inference import Engine, generate


def workload(seed=0, n=8, vocab=256, shared_prefix=0):
    rng = np.random.default_rng(seed)
    prefix = rng.integers(0, vocab, size=shared_prefix)
    prompts = [np.r_[prefix, rng.integers(0, vocab, size=int(k))].astype(np.int64)
               for k in rng.integers(1, 40, size=n)]
    return prompts, [int(k) for k in rng.integers(1, 30, size=n)]


def run_engine(model, prompts, news, **kwargs):
    engine = Engine(model, **kwargs)
    rids = [engine.add_request(p, k) for p, k in zip(prompts, news)]
    out = engine.run()
    return [out[r] for r in rids], engine


CONFIGS = {
    "default": dict(),
    "recompute": dict(num_blocks=18, block_size=4, preemption="recompute"),
    "swap": dict(num_blocks=18, block_size=4, preemption="swap"),
    "chunked": dict(max_num_batched_tokens=7, block_size=8),
    "no-chunk-no-prefix": dict(chunked_prefill=False, enable_prefix_caching=False, max_num_batched_tokens=16),
    "tight-everything": dict(num_blocks=17, block_size=4, max_num_batched_tokens=5, preemption="swap",
                             num_host_blocks=6, enable_prefix_caching=False),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batched_outputs_equal_each_request_alone(tiny_model, name):
    prompts, news = workload(seed=1)
    alone = [generate(tiny_model, p, k) for p, k in zip(prompts, news)]
    outs, engine = run_engine(tiny_model, prompts, news, **CONFIGS[name])
    for a, b in zip(alone, outs):
        np.testing.assert_array_equal(b, a)
    s = engine.stats
    if name == "recompute":
        assert s["preempted_recompute"] > 0 and s["preempted_swap"] == 0
    if name in ("swap", "tight-everything"):
        assert s["preempted_swap"] > 0
    if name == "chunked":
        assert s["steps"] > sum(news) / len(news)   # prompts of up to 39 tokens in chunks of <= 7
    assert s["max_batch"] > 1
    engine.cache.check()
    assert engine.cache.allocator.num_used() == 0 and not engine.cache.swapped   # all freed


@pytest.mark.parametrize("prefix_caching", [True, False])
def test_prefix_caching_on_and_off_same_outputs(llama_tiny, prefix_caching):
    prompts, news = workload(seed=2, n=6, shared_prefix=37)
    alone = [generate(llama_tiny, p, k) for p, k in zip(prompts, news)]
    engine = Engine(llama_tiny, block_size=8, max_num_batched_tokens=64, max_num_seqs=2,
                    enable_prefix_caching=prefix_caching)
    rids = [engine.add_request(p, k) for p, k in zip(prompts, news)]
    out = engine.run()
    for r, a in zip(rids, alone):
        np.testing.assert_array_equal(out[r], a)
    if prefix_caching:  # 4 full blocks of the 37-token prefix are reused by requests 3..6
        assert engine.stats["cached_prompt_tokens"] >= 4 * 32 and engine.prefix_hit_rate() > 0.3
    else:
        assert engine.stats["cached_prompt_tokens"] == 0


def test_sampled_requests_match_generate_with_the_same_seed(llama_tiny):
    prompts, news = workload(seed=3, n=5)
    kw = dict(temperature=0.9, top_p=0.95)
    engine = Engine(llama_tiny, num_blocks=14, block_size=4)
    rids = [engine.add_request(p, k, seed=10 + i, **kw) for i, (p, k) in enumerate(zip(prompts, news))]
    out = engine.run()
    for i, (r, p, k) in enumerate(zip(rids, prompts, news)):
        np.testing.assert_array_equal(out[r], generate(llama_tiny, p, k, seed=10 + i, **kw))


def test_parallel_sampling_forks_the_prompt_blocks(llama_tiny):
    prompt = np.arange(20, 45)
    engine = Engine(llama_tiny, block_size=4, num_blocks=40)
    rids = engine.add_parallel_requests(prompt, 4, 15, temperature=1.0, seed=5)
    engine.step()  # prefill once, then every child forks the parent's 7 blocks
    tables = [engine.cache.seqs[r].block_table for r in rids]
    assert all(t[:6] == tables[0][:6] for t in tables)                      # full blocks shared
    assert engine.stats["prefill_tokens"] == len(prompt)
    out = engine.run()
    for i, r in enumerate(rids):
        np.testing.assert_array_equal(out[r], generate(llama_tiny, prompt, 15, temperature=1.0, seed=5 + i))
    assert len({tuple(out[r]) for r in rids}) > 1                          # different samples


def test_stop_tokens_finish_a_request_early(llama_tiny):
    full = generate(llama_tiny, [1, 2, 3], 20)
    engine = Engine(llama_tiny)
    r = engine.add_request([1, 2, 3], 20, stop=int(full[5]))
    other = engine.add_request([4, 5], 10)
    out = engine.run()
    first = int(np.argmax(full == full[5]))
    np.testing.assert_array_equal(out[r], full[:first + 1])
    assert len(out[other]) == 10


def test_step_reports_new_tokens_and_requests_finish_independently(llama_tiny):
    engine = Engine(llama_tiny)
    a = engine.add_request([1, 2, 3], 2)
    b = engine.add_request([4, 5, 6], 5)
    assert engine.step() == {a: engine.requests[a].output[0], b: engine.requests[b].output[0]}
    engine.step()
    assert engine.requests[a].state == "finished" and engine.requests[b].state == "running"
    assert set(engine.step()) == {b}


def test_bad_arguments(llama_tiny):
    with pytest.raises(ValueError, match="num_blocks"):
        Engine(llama_tiny, num_blocks=2, block_size=4).add_request(list(range(10)), 5)
    with pytest.raises(ValueError, match="preemption"):
        Engine(llama_tiny, preemption="drop")
    with pytest.raises(ValueError, match="max_new_tokens"):
        Engine(llama_tiny).add_request([1], 0)
    gpt = Transformer(ModelConfig.preset("gpt2-tiny"), seed=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        Engine(gpt).add_request([1] * 120, 10)
