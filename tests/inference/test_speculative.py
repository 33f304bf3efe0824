"""Speculative decoding keeps the target's distribution and, greedy, its exact tokens (speculative.py)."""
import math

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.inference import generate, prompt_lookup_generate, softmax, speculative_generate


def tiny_vocab_model(seed, V=8):
    # init_std 0.4 (not 0.02) so the distributions are far from uniform and target != draft
    cfg = ModelConfig(arch="llama", vocab_size=V, n_layer=1, n_head=2, n_kv_head=1, d_model=16,
                      ffn_dim=32, max_seq_len=32, init_std=0.4)
    return Transformer(cfg, seed=seed)


def chi2_sf(x, dof):
    """P(chi2_dof >= x) = Q(dof/2, x/2), the regularized upper incomplete gamma function
    (Numerical Recipes 6.2: series below a + 1, Lentz continued fraction above)."""
    a, x = dof / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    log_pre = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # P(a, x) = e^-x x^a / Gamma(a+1) * sum x^n / ((a+1)...(a+n))
        term = total = 1.0 / a
        n = 0
        while abs(term) > 1e-16 * abs(total):
            n += 1
            term *= x / (a + n)
            total += term
        return 1.0 - total * math.exp(log_pre)
    b, c, d = x + 1 - a, 1e300, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return math.exp(log_pre) * h


def test_chi2_sf_against_known_values():
    assert abs(chi2_sf(3.841458820694124, 1) - 0.05) < 1e-9      # the 95% point of chi2_1
    assert abs(chi2_sf(18.307038053275146, 10) - 0.05) < 1e-9
    assert abs(chi2_sf(2.0, 2) - math.exp(-1.0)) < 1e-12         # chi2_2 is Exp(1/2)
    scipy_stats = pytest.importorskip("scipy.stats")
    for x, k in [(0.5, 3), (40.0, 30), (100.0, 63), (7.0, 1)]:
        assert abs(chi2_sf(x, k) - scipy_stats.chi2.sf(x, k)) < 1e-10


def chi_square_p_value(counts, probs):
    """Pearson's test of counts against probabilities; cells with expected count < 5 are pooled."""
    counts, expected = counts.ravel(), probs.ravel() * counts.sum()
    small = expected < 5
    obs = np.r_[counts[~small], counts[small].sum()]
    exp = np.r_[expected[~small], expected[small].sum()]
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = float(np.sum((obs - exp) ** 2 / exp))
    return chi2_sf(stat, len(exp) - 1)


def exact_two_token_distribution(model, prompt):  # -> (V, V): P(x1, x2 | prompt)
    V = model.config.vocab_size
    p1 = softmax(model.forward(prompt[None])[0, -1])
    return np.stack([p1[a] * softmax(model.forward(np.r_[prompt, a][None])[0, -1]) for a in range(V)])


def spec_counts(target, draft, prompt, k, n, max_new=2):
    V = target.config.vocab_size
    counts = np.zeros((V, V))
    rates = []
    for s in range(n):  # fixed seeds: the test is deterministic, it cannot flake
        toks, stats = speculative_generate(target, draft, prompt, max_new, k=k, temperature=1.0, seed=s)
        counts[toks[0], toks[1]] += 1
        rates.append(stats["acceptance_rate"])
    return counts, float(np.mean(rates))


def _check_distribution(k, n):
    target, draft = tiny_vocab_model(0), tiny_vocab_model(1)
    prompt = np.array([1, 2, 3])
    P = exact_two_token_distribution(target, prompt)
    Q = exact_two_token_distribution(draft, prompt)
    assert 0.5 * np.abs(P - Q).sum() > 0.3          # the draft is a genuinely different model
    counts, rate = spec_counts(target, draft, prompt, k, n)
    assert 0.05 < rate < 0.95                       # both accept and reject paths ran many times
    assert chi_square_p_value(counts, P) > 1e-3     # indistinguishable from the target...
    assert chi_square_p_value(counts, Q) < 1e-6     # ...while the test easily tells the draft apart


def test_speculative_sampling_keeps_the_target_distribution_k1():
    # k=1, two new tokens: covers accept, reject + residual resample, the bonus token from p_{k+1},
    # and a second round after both caches rolled back
    _check_distribution(k=1, n=1500)


@pytest.mark.slow
def test_speculative_sampling_keeps_the_target_distribution_k2():
    _check_distribution(k=2, n=2500)       # acceptance decided at two draft positions in one round


def test_plain_sampling_passes_the_same_test():  # the reference the test compares against
    target = tiny_vocab_model(0)
    prompt = np.array([1, 2, 3])
    P = exact_two_token_distribution(target, prompt)
    counts = np.zeros_like(P)
    for s in range(600):
        a, b = generate(target, prompt, 2, temperature=1.0, seed=s)
        counts[a, b] += 1
    assert chi_square_p_value(counts, P) > 1e-3


@pytest.mark.parametrize("k", [1, 3, 5])
def test_greedy_speculative_equals_greedy_target(tiny_model, k):
    cfg = tiny_model.config
    draft = Transformer(ModelConfig.preset(f"{cfg.arch}-tiny", n_layer=1), seed=7)
    prompt = np.arange(3, 12)
    ref = generate(tiny_model, prompt, 40)
    out, stats = speculative_generate(tiny_model, draft, prompt, 40, k=k)
    np.testing.assert_array_equal(out, ref)
    same, stats_same = speculative_generate(tiny_model, tiny_model, prompt, 40, k=k)
    np.testing.assert_array_equal(same, ref)
    assert stats_same["acceptance_rate"] == 1.0        # the target drafting for itself never misses
    assert stats_same["target_calls"] == 1 + math.ceil(40 / (k + 1))


def test_prompt_lookup_greedy_equals_greedy_and_accepts_repeats(llama_tiny):
    # a prompt that repeats the model's own greedy continuation: lookup finds it and most of the
    # copied tokens are accepted (not all: with the longer context the model continues differently)
    prompt = np.array([7, 8, 9, 10])
    cont = generate(llama_tiny, prompt, 30)
    prompt2 = np.r_[prompt, cont, prompt]
    ref = generate(llama_tiny, prompt2, 30)
    out, stats = prompt_lookup_generate(llama_tiny, prompt2, 30, k=4)
    np.testing.assert_array_equal(out, ref)
    assert stats["acceptance_rate"] > 0.3 and stats["tokens_per_target_call"] > 1.5
    assert stats["accepted"] <= stats["proposed"] and stats["target_calls"] == stats["steps"] + 1


def test_prompt_lookup_sampling_is_reproducible(llama_tiny):
    a, _ = prompt_lookup_generate(llama_tiny, [1, 2, 1, 2, 1], 20, temperature=1.0, seed=5)
    b, _ = prompt_lookup_generate(llama_tiny, [1, 2, 1, 2, 1], 20, temperature=1.0, seed=5)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 20


def test_bad_arguments(llama_tiny):
    other = Transformer(ModelConfig.preset("llama-tiny", vocab_size=100), seed=0)
    with pytest.raises(ValueError, match="vocab_size"):
        speculative_generate(llama_tiny, other, [1, 2], 5)
    with pytest.raises(ValueError, match="k"):
        speculative_generate(llama_tiny, llama_tiny, [1, 2], 5, k=-1)
    with pytest.raises(ValueError, match="ngram"):
        prompt_lookup_generate(llama_tiny, [1, 2], 5, ngram=0)
