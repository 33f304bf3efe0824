"""Reward model: Bradley-Terry gradients through the scalar head and the whole Transformer against
float64 finite differences, K-way rankings to pairs, and learning a programmatic preference."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.align.reward import (HEAD_B, HEAD_W, RewardConfig, ScalarHeadModel, last_index, pair_accuracy,
                                  rankings_to_pairs, reward_step, train_reward_model)

PAIRS = [([1, 2], [3, 4, 5], [6]), ([2], [8, 9], [10, 1, 2, 3], 0.5), ([4, 4, 4], [5], [6, 7])]


@pytest.mark.parametrize("center", [0.0, 0.1])
def test_reward_gradients_through_head_and_body_match_finite_differences(center, f64_model):
    rm = ScalarHeadModel(f64_model(6), seed=6)
    cfg = RewardConfig(center_coef=center)
    _, grads, _ = reward_step(rm, PAIRS, cfg)
    assert set(grads) == set(rm.params)
    for name in (HEAD_W, HEAD_B, "model.layers.0.self_attn.v_proj.weight", "model.embed_tokens.weight",
                 "model.norm.weight"):
        p = rm.params[name]
        idx = (3,) if p.ndim == 1 and p.size > 1 else ((0,) if p.ndim == 1 else (2, 1))
        old = p[idx]
        p[idx] = old + 1e-6
        fp = reward_step(rm, PAIRS, cfg)[0]
        p[idx] = old - 1e-6
        fm = reward_step(rm, PAIRS, cfg)[0]
        p[idx] = old
        num = (fp - fm) / 2e-6
        assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, grads[name][idx], num)
    assert np.all(grads["lm_head.weight"] == 0)          # the LM head plays no part in a reward


def test_value_backward_matches_torch_chain_rule(f64_model):
    """dL/dv on every token -> head and hidden gradients, against torch autograd for the head part."""
    torch = pytest.importorskip("torch")
    rm = ScalarHeadModel(f64_model(1), seed=1)
    x = np.random.default_rng(1).integers(0, 11, (2, 5))
    dv = np.random.default_rng(2).standard_normal((2, 5))
    v, cache = rm.forward_train(x)
    grads = rm.backward(dv, cache)
    h = torch.tensor(cache[0])
    w = torch.tensor(rm.head[HEAD_W], requires_grad=True)
    b = torch.tensor(rm.head[HEAD_B], requires_grad=True)
    vt = h @ w + b
    (vt * torch.tensor(dv)).sum().backward()
    np.testing.assert_allclose(v, vt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grads[HEAD_W], w.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(grads[HEAD_B], b.grad.numpy(), rtol=1e-10)


def test_rankings_expand_to_all_pairs_and_last_index():
    pairs = rankings_to_pairs([0], [[1], [2], [3], [4]])
    assert len(pairs) == 6 and pairs[0] == ([0], [1], [2]) and pairs[-1] == ([0], [3], [4])
    mask = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    assert last_index(mask).tolist() == [2, 3, 0]


@pytest.mark.slow  # a few seconds on an idle machine; minutes when 2 cores are oversubscribed
def test_reward_model_learns_a_programmatic_preference():
    """Preferred: the response with more 'a' bytes. Held-out accuracy must end well above chance."""
    rng = np.random.default_rng(0)

    def make(n):
        out = []
        for _ in range(n):
            prompt = list(rng.integers(98, 123, 3))
            resp = [list(np.where(rng.random(4) < p, 97, rng.integers(98, 123, 4))) for p in (0.2, 0.8)]
            good, bad = (resp[1], resp[0]) if resp[1].count(97) > resp[0].count(97) else (resp[0], resp[1])
            if good.count(97) != bad.count(97):
                out.append((prompt, good, bad))
        return out

    train, val = make(512), make(128)
    rm = ScalarHeadModel.from_model(Transformer(ModelConfig.preset("llama-tiny"), seed=0))
    before = pair_accuracy(rm, val)
    hist = train_reward_model(rm, train, RewardConfig(lr=2e-3, batch_size=32, epochs=2, center_coef=0.01),
                              val_pairs=val)
    assert hist[-1]["val_accuracy"] > 0.85 and hist[-1]["val_accuracy"] > before
    assert rm.num_params() == Transformer(ModelConfig.preset("llama-tiny")).config.num_params() + 64 + 1
