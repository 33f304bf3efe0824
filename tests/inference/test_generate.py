"""generate(): cache vs no cache, stop sequences, streaming, errors (generate.py, kv_cache.py)."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.inference import KVCache, generate, kv_bytes_per_token
from minillm.inference.decode import forward_cached


@pytest.mark.parametrize("kwargs", [dict(), dict(temperature=0.9, top_k=50, top_p=0.9, seed=3),
                                    dict(temperature=1.2, min_p=0.05, repetition_penalty=1.3, seed=4)])
def test_cache_and_no_cache_give_identical_tokens_and_logits(tiny_model, kwargs):
    prompt = np.random.default_rng(0).integers(0, tiny_model.config.vocab_size, size=11)
    a, la = generate(tiny_model, prompt, 30, return_logits=True, **kwargs)
    b, lb = generate(tiny_model, prompt, 30, use_cache=False, return_logits=True, **kwargs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(la, lb, atol=1e-5, rtol=0)
    assert a.dtype == np.int64 and a.shape == (30,)


def test_greedy_matches_argmax_of_full_forward(llama_tiny):
    prompt = np.array([5, 6, 7, 8])
    out = generate(llama_tiny, prompt, 12)
    seq = list(prompt)
    for _ in range(12):
        seq.append(int(np.argmax(llama_tiny.forward(np.array([seq]))[0, -1])))
    np.testing.assert_array_equal(out, seq[4:])


def test_same_seed_same_tokens_different_seed_different(llama_tiny):
    kw = dict(temperature=1.0, seed=11)
    a = generate(llama_tiny, [1, 2, 3], 40, **kw)
    np.testing.assert_array_equal(a, generate(llama_tiny, [1, 2, 3], 40, **kw))
    assert not np.array_equal(a, generate(llama_tiny, [1, 2, 3], 40, temperature=1.0, seed=12))


def test_stop_and_stream(llama_tiny):
    full = generate(llama_tiny, [1, 2, 3], 20)
    stop_tok = int(full[7])
    first = int(np.argmax(full == stop_tok))
    seen = []
    out = generate(llama_tiny, [1, 2, 3], 20, stop=stop_tok, stream=seen.append)
    np.testing.assert_array_equal(out, full[:first + 1])
    assert seen == out.tolist()
    seq = [int(full[4]), int(full[5])]  # a two-token stop sequence
    out = generate(llama_tiny, [1, 2, 3], 20, stop=[seq])
    assert out[-2:].tolist() == seq and len(out) <= 6


def test_cache_is_written_in_place():
    cfg = ModelConfig.preset("llama-tiny")
    model = Transformer(cfg, seed=0)
    cache = KVCache.allocate(cfg, 1, 16)
    k_id, buf = id(cache.k), cache.k.__array_interface__["data"][0]
    forward_cached(model, np.array([[1, 2, 3]]), cache)
    forward_cached(model, np.array([[4]]), cache)
    assert cache.pos == 4 and id(cache.k) == k_id and cache.k.__array_interface__["data"][0] == buf
    assert np.abs(cache.k[:, :, :, :4]).sum() > 0 and np.all(cache.k[:, :, :, 4:] == 0)
    assert cache.nbytes_used() == 4 * kv_bytes_per_token(cfg)
    cache.truncate(2)
    assert cache.pos == 2
    with pytest.raises(ValueError, match="pos"):
        cache.truncate(3)


def test_kv_bytes_per_token_formula():
    cfg = ModelConfig.preset("gpt2")
    assert kv_bytes_per_token(cfg) == 2 * 12 * 12 * 64 * 4 == 73728


def test_bad_arguments(llama_tiny):
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(llama_tiny, [], 5)
    with pytest.raises(ValueError, match="prompt_ids"):
        generate(llama_tiny, [0, 256], 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(llama_tiny, [1], -1)
    gpt = Transformer(ModelConfig.preset("gpt2-tiny"), seed=0)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(gpt, [1] * 100, 29)
    assert generate(llama_tiny, [1], 0).shape == (0,)
