"""PPO: the policy objective's gradient through the model (float64 finite differences), the reward
layout (KL penalty per token, score on the last action), the adaptive KL controller, batched
rollouts against minillm.inference.generate, and a short run that learns a programmatic reward."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.align.logprobs import logprobs_with_backward
from minillm.align.losses import ppo_loss
from minillm.align.ppo import (AdaptiveKLController, FixedKLController, PPOConfig, PPOTrainer,
                               explained_variance)
from minillm.align.reward import ScalarHeadModel
from minillm.align.rollout import sample_batch, sample_responses
from minillm.inference import generate


def test_ppo_objective_gradient_through_the_model_matches_finite_differences(f64_model):
    m = f64_model(7)
    rng = np.random.default_rng(7)
    x = rng.integers(0, 11, (3, 6))
    old = np.log(np.full((3, 5), 1 / 11.0)) + 0.5 * rng.standard_normal((3, 5))
    adv = rng.standard_normal((3, 5))
    mask = np.zeros((3, 5))
    mask[:, 2:] = 1.0
    c_H = 0.05

    def loss_and_grads():
        lp, H, backward = logprobs_with_backward(m, x, entropy=True)
        L, d_lp = ppo_loss(lp, old, adv, mask, 0.2)
        n = mask.sum()
        return L - c_H * np.sum(H * mask) / n, backward(d_lp, -c_H * mask / n)

    _, grads = loss_and_grads()
    for name in ("model.layers.0.mlp.gate_proj.weight", "lm_head.weight", "model.embed_tokens.weight"):
        p = m.params[name]
        for idx in [(1, 2), (5, 3)]:
            old_v = p[idx]
            p[idx] = old_v + 1e-6
            fp = loss_and_grads()[0]
            p[idx] = old_v - 1e-6
            fm = loss_and_grads()[0]
            p[idx] = old_v
            num = (fp - fm) / 2e-6
            assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, idx)


def test_adaptive_kl_controller():
    ctl = AdaptiveKLController(0.1, target=2.0, horizon=100)
    assert ctl.update(10.0, 10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))    # error clipped at +0.2
    b = ctl.value
    assert ctl.update(1.0, 10) == pytest.approx(b * (1 - 0.2 * 0.1))        # KL below target: β falls
    assert ctl.update(2.0, 10) == pytest.approx(b * (1 - 0.2 * 0.1))        # at target: unchanged
    assert FixedKLController(0.3).update(100.0, 64) == 0.3
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, 0.0, 10)
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2")


def test_explained_variance():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((4, 5))
    mask = np.ones((4, 5))
    assert explained_variance(t, t, mask) == 1.0
    assert explained_variance(np.full_like(t, t.mean()), t, mask) == pytest.approx(0.0)


def test_batched_rollout_matches_generate_greedy_and_stops():
    m = Transformer(ModelConfig.preset("llama-tiny"), seed=4)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 256, (5, 4))
    out = sample_batch(m, prompts, 6, rng, temperature=0.0)
    for b in range(5):
        assert out[b] == generate(m, prompts[b], 6).tolist()
    stop = out[0][2]
    stopped = sample_batch(m, prompts, 6, rng, temperature=0.0, stop_id=stop)
    assert stopped[0] == out[0][:3]
    # mixed prompt lengths are grouped, order preserved
    mixed = [list(prompts[0]), list(prompts[1][:2]), list(prompts[2])]
    res = sample_responses(m, mixed, 3, rng, temperature=0.0, batch_size=2)
    assert res[1] == generate(m, mixed[1], 3).tolist() and res[2] == out[2][:3]


def test_batched_sampling_follows_the_model_distribution():
    """First sampled token frequencies over many rows agree with softmax(logits) (chi-square-like bound)."""
    m = Transformer(ModelConfig(arch="llama", vocab_size=6, n_layer=1, n_head=2, d_model=8, max_seq_len=8), seed=1)
    m.params["lm_head.weight"] *= 50                         # a non-uniform distribution
    prompt = np.zeros((4000, 2), dtype=np.int64)
    toks = np.array([r[0] for r in sample_batch(m, prompt, 1, np.random.default_rng(3))])
    z = m.forward(prompt[:1])[0, -1].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    freq = np.bincount(toks, minlength=6) / len(toks)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / len(toks)) + 1e-3)


class _ProgramReward:
    """A stand-in reward model: 1 if the response's last token id is below 64 (a quarter of the
    vocabulary, so an untrained policy finds it), else 0."""
    def rewards(self, tokens, last):
        return (tokens[np.arange(len(last)), last] < 64).astype(np.float64)

    def nbytes(self):
        return 0


def _trainer(**kw):
    cfg_m = ModelConfig.preset("llama-tiny")
    policy = Transformer(cfg_m, seed=0)
    value = ScalarHeadModel.from_model(policy, seed=1)
    cfg = PPOConfig(**{**dict(max_new_tokens=2, minibatch_size=16, ppo_epochs=2, lr=3e-3, value_lr=1e-3,
                              init_kl_coef=0.02, entropy_coef=0.01), **kw})
    return PPOTrainer(policy, _ProgramReward(), cfg, value_model=value)


def test_rollout_rewards_layout():
    tr = _trainer(init_kl_coef=0.5, whiten_advantages=False)
    prompts = [[1, 2, 3]] * 4
    ro = tr.rollout(prompts)
    B = 4
    assert ro.mask.shape == ro.rewards.shape == (B, ro.tokens.shape[1] - 1)
    kl = (ro.old_logprobs - ro.ref_logprobs) * ro.mask
    np.testing.assert_allclose(ro.rewards.sum(axis=1), ro.scores - 0.5 * kl.sum(axis=1), atol=1e-5)
    assert np.all(ro.advantages[ro.mask == 0] == 0)
    # the policy equals its reference at the start: zero KL, so rewards are the score alone
    np.testing.assert_allclose(kl, 0.0, atol=1e-6)
    mem = tr.memory()
    assert set(mem) == {"policy", "reference", "reward", "value"} and mem["policy"] == mem["reference"]


@pytest.mark.slow  # a few seconds on an idle machine; minutes when 2 cores are oversubscribed
def test_ppo_learns_a_programmatic_reward():
    """One-token responses (a bandit per prompt): the exact probability of a rewarded token, read
    from the policy's logits rather than sampled, must rise from ~1/4 to most of the mass."""
    tr = _trainer(max_new_tokens=1, lr=1e-2, ppo_epochs=4)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(98, 123, 3)) for _ in range(32)]

    def rewarded_mass():
        z = tr.policy.forward(np.array(prompts))[:, -1].astype(np.float64)    # (B, V)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return float(np.mean(p[:, :64].sum(axis=1) / p.sum(axis=1)))

    before = rewarded_mass()
    stats = [tr.step(prompts) for _ in range(8)]
    assert 0.15 < before < 0.35 and rewarded_mass() > 0.6
    assert stats[-1]["reward"] > stats[0]["reward"]
    for k in ("kl", "kl_k3", "clipfrac", "approx_kl", "explained_variance", "entropy", "vf_loss", "pg_loss",
              "kl_coef"):
        assert np.isfinite(stats[-1][k]), k
