"""Properties of the logits processors and the sampler (sampling.py)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.inference import (MinP, RepetitionPenalty, Sampler, Temperature, TopK, TopP, apply,
                               processors, sample, softmax)

seeds = st.integers(0, 2**32 - 1)


def random_logits(seed, V, scale=3.0):
    return np.random.default_rng(seed).standard_normal(V) * scale  # distinct with probability 1


@settings(max_examples=200, deadline=None)
@given(seed=seeds, V=st.integers(1, 64), p=st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(seed, V, p):
    z = random_logits(seed, V)
    probs = softmax(z)
    kept = np.isfinite(TopP(p)(z))
    n = int(kept.sum())
    desc = np.sort(probs)[::-1]
    assert n >= 1
    assert probs[kept].min() >= probs[~kept].max(initial=0.0)       # the most probable tokens
    assert probs[kept].sum() >= p - 1e-12                           # enough mass
    assert desc[:n - 1].sum() < p                                   # and no smaller prefix has it


def test_top_p_examples():
    z = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.isfinite(TopP(0.5)(z)).tolist() == [True, False, False, False]   # 0.5 >= 0.5 exactly
    assert np.isfinite(TopP(0.51)(z)).tolist() == [True, True, False, False]
    assert np.isfinite(TopP(0.95)(z)).tolist() == [True, True, True, False]
    assert np.isfinite(TopP(1.0)(z)).all()


@settings(max_examples=200, deadline=None)
@given(seed=seeds, V=st.integers(1, 64), k=st.integers(1, 80))
def test_top_k_keeps_k(seed, V, k):
    z = random_logits(seed, V)
    out = TopK(k)(z)
    kept = np.isfinite(out)
    assert kept.sum() == min(k, V)
    assert z[kept].min() >= z[~kept].max(initial=-np.inf)
    np.testing.assert_array_equal(out[kept], z[kept])               # kept logits are untouched


def test_top_k_keeps_ties_at_the_boundary():
    z = np.array([3.0, 1.0, 1.0, 0.0])
    assert np.isfinite(TopK(2)(z)).tolist() == [True, True, True, False]


@settings(max_examples=100, deadline=None)
@given(seed=seeds, V=st.integers(2, 64))
def test_temperature_to_zero_equals_greedy(seed, V):
    z = random_logits(seed, V)
    greedy = int(np.argmax(z))
    gap = np.sort(z)[-1] - np.sort(z)[-2]
    rng = np.random.default_rng(seed)
    for t in (1e-2, 1e-4, 1e-6):
        p = softmax(Temperature(t)(z))
        # every other token is down by exp(-gap / T) at least
        assert p[greedy] >= 1.0 - (V - 1) * np.exp(-gap / t) - 1e-12
    t = gap / 60.0  # exp(-60) ~ 1e-26: far below one draw's resolution (2**-53)
    assert all(sample(z, rng, temperature=t) == greedy for _ in range(20))
    assert sample(z, temperature=0.0) == greedy
    assert Sampler(temperature=0.0).sample(z) == greedy


@settings(max_examples=200, deadline=None)
@given(seed=seeds, V=st.integers(1, 50), t=st.sampled_from([0.0, 0.3, 1.0, 2.5]),
       k=st.one_of(st.none(), st.integers(1, 60)), p=st.one_of(st.none(), st.floats(0.05, 1.0)),
       mp=st.one_of(st.none(), st.floats(0.0, 1.0)), r=st.one_of(st.none(), st.floats(0.5, 2.0)),
       scale=st.sampled_from([0.1, 3.0, 100.0]))
def test_every_processed_distribution_sums_to_one(seed, V, t, k, p, mp, r, scale):
    z = random_logits(seed, V, scale)
    context = np.random.default_rng(seed).integers(0, V, size=5)
    s = Sampler(t, k, p, mp, r, seed)
    probs = s.probs(z, context)
    assert probs.shape == (V,) and np.all(probs >= 0) and np.isfinite(probs).all()
    assert abs(probs.sum() - 1.0) < 1e-12
    tok = s.sample(z, context)
    assert 0 <= tok < V and probs[tok] > 0                          # only kept tokens are drawn


def test_processors_compose_in_order():
    z = np.array([2.0, 1.0, 0.5, -1.0, -3.0])
    procs = processors(temperature=0.5, top_k=3, top_p=0.9)
    assert [type(q) for q in procs] == [Temperature, TopK, TopP]
    by_hand = TopP(0.9)(TopK(3)(Temperature(0.5)(z)))
    np.testing.assert_array_equal(apply(procs, z), by_hand)


def test_min_p_keeps_tokens_within_factor_of_the_best():
    probs = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    kept = np.isfinite(MinP(0.15)(np.log(probs)))
    assert kept.tolist() == (probs >= 0.15 * 0.5).tolist()


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    z = np.array([2.0, -2.0, 1.0])
    out = RepetitionPenalty(2.0)(z, context=[0, 1, 1])
    np.testing.assert_array_equal(out, [1.0, -4.0, 1.0])


def test_samples_follow_the_distribution():
    # 20000 draws from a known distribution: each frequency within 5 standard errors
    p = np.array([0.5, 0.25, 0.125, 0.125])
    rng = np.random.default_rng(0)
    counts = np.bincount([sample(np.log(p), rng, temperature=1.0) for _ in range(20000)], minlength=4)
    se = np.sqrt(p * (1 - p) / 20000)
    assert np.all(np.abs(counts / 20000 - p) < 5 * se)


@pytest.mark.parametrize("kwargs, match", [
    (dict(temperature=-1.0), "temperature"), (dict(top_k=0), "top_k"), (dict(top_p=1.5), "top_p"),
    (dict(min_p=-0.1), "min_p"), (dict(repetition_penalty=0.0), "repetition_penalty")])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        processors(**{"temperature": 1.0, **kwargs})


def test_bad_logits_raise():
    with pytest.raises(ValueError, match="NaN"):
        sample(np.array([0.0, np.nan]))
    with pytest.raises(TypeError, match="rng"):
        sample(np.zeros(3), rng=None, temperature=1.0)


@settings(max_examples=50, deadline=None)
@given(v=st.integers(1, 300), seed=st.integers(0, 2**16), dtype=st.sampled_from([np.float32, np.float64]))
def test_greedy_sampler_is_the_argmax_of_its_logits(v, seed, dtype):
    """Sampler's greedy draw without processors (argmax of the logits as they come, no float64
    copy) equals the argmax of the float64 distribution probs() gives, ties to the first; NaN and
    empty logits raise as with processors."""
    rng = np.random.default_rng(seed)
    z = rng.integers(-3, 3, v).astype(dtype)                      # many ties
    sampler = Sampler()
    assert sampler.sample(z) == int(np.argmax(sampler.probs(z))) == int(np.argmax(z))
    with pytest.raises(ValueError, match="NaN"):
        sampler.sample(np.where(np.arange(v) == v - 1, np.nan, z).astype(dtype))
    with pytest.raises(ValueError, match="V >= 1"):
        sampler.sample(np.zeros(0, dtype))


def test_a_given_argmax_is_taken_only_by_a_plain_greedy_sampler():
    """sample(argmax=...) (decode_run's C argmax) is the token when greedy without processors, -1 is
    NaN; any other sampler ignores it and samples from the logits."""
    z = np.array([0.5, 3.0, 1.0], np.float32)
    assert Sampler().plain_argmax and Sampler().sample(z, argmax=2) == 2      # taken, not recomputed
    with pytest.raises(ValueError, match="logits: contain NaN"):
        Sampler().sample(z, argmax=-1)
    penalised = Sampler(repetition_penalty=100.0)
    assert not penalised.plain_argmax and penalised.sample(z, [1], argmax=1) == 2
    drawn = Sampler(temperature=1.0, seed=0)
    assert not drawn.plain_argmax
    assert drawn.sample(z, argmax=0) == Sampler(temperature=1.0, seed=0).sample(z)
