"""DPO training: the gradient through log-softmax-gather into the model for every loss variant
(float64 finite differences), loss log 2 at the start, learning a toy preference, diagnostics."""
import math

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.align.dpo import DPOConfig, diagnose, dpo_step, dpo_train, precompute_reference_logps

PAIRS = [([1, 2], [3, 4, 5], [6, 7]), ([2], [8, 9], [10, 1, 2, 3]), ([4, 4, 4], [5], [6])]


@pytest.mark.parametrize("loss_type,eps,ref_free,alpha", [("sigmoid", 0.0, False, 0.0), ("sigmoid", 0.1, False, 0.0),
                                                          ("robust", 0.1, False, 0.0), ("hinge", 0.0, False, 0.0),
                                                          ("ipo", 0.0, False, 0.0), ("sigmoid", 0.0, True, 0.0),
                                                          ("sigmoid", 0.0, False, 0.5)])
def test_dpo_step_gradients_match_finite_differences(loss_type, eps, ref_free, alpha, f64_model):
    policy, ref = f64_model(1), f64_model(2)
    ref_w, ref_l = precompute_reference_logps(ref, PAIRS)
    cfg = DPOConfig(beta=0.7, loss_type=loss_type, label_smoothing=eps, reference_free=ref_free, sft_coef=alpha)
    _, grads, _ = dpo_step(policy, PAIRS, ref_w, ref_l, cfg)
    for name in ("model.layers.0.mlp.up_proj.weight", "lm_head.weight", "model.norm.weight"):
        p = policy.params[name]
        idx = (1, 2) if p.ndim == 2 else (3,)
        old = p[idx]
        p[idx] = old + 1e-6
        fp = dpo_step(policy, PAIRS, ref_w, ref_l, cfg)[0]
        p[idx] = old - 1e-6
        fm = dpo_step(policy, PAIRS, ref_w, ref_l, cfg)[0]
        p[idx] = old
        num = (fp - fm) / 2e-6
        assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, grads[name][idx], num)


def test_dpo_learns_a_toy_preference_and_starts_at_log2():
    cfg_m = ModelConfig.preset("llama-tiny")
    policy, ref = Transformer(cfg_m, seed=0), Transformer(cfg_m, seed=0)
    rng = np.random.default_rng(0)
    # prompt: 3 random bytes; chosen: "aa"; rejected: "bb"
    pairs = [(list(rng.integers(32, 127, 3)), [97, 97], [98, 98]) for _ in range(64)]
    history, _ = dpo_train(policy, pairs, DPOConfig(beta=0.5, lr=3e-3, batch_size=16, epochs=4),
                           ref_model=ref)
    assert history[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-5)    # policy == reference at step 0
    assert history[-1]["loss"] < 0.3 and history[-1]["reward_accuracy"] == 1.0
    assert history[-1]["reward_margin"] > history[0]["reward_margin"]


def test_dpo_config_and_input_errors():
    with pytest.raises(ValueError, match="loss_type"):
        DPOConfig(loss_type="kto")
    m = Transformer(ModelConfig.preset("llama-tiny"))
    with pytest.raises(ValueError, match="ref_model"):
        dpo_train(m, PAIRS)
    with pytest.raises(ValueError, match="pairs"):
        dpo_train(m, [], ref_model=m)
    with pytest.raises(ValueError, match="ref_logps"):
        dpo_train(m, PAIRS, ref_logps=(np.zeros(2), np.zeros(2)))


def test_diagnose_flags_likelihood_displacement_and_collapse():
    rows = [dict(loss=0.69 - 0.07 * i, logp_chosen=-10.0 - 0.5 * i, reward_accuracy=1.0,
                 reward_margin=0.1 + 0.3 * i) for i in range(10)]
    warnings = diagnose(rows)
    assert any("likelihood displacement" in w for w in warnings)
    assert any("over-optimisation" in w for w in warnings)
    healthy = [dict(loss=0.69 - 0.01 * i, logp_chosen=-10.0 + 0.1 * i, reward_accuracy=0.7,
                    reward_margin=0.1) for i in range(10)]
    assert diagnose(healthy) == []
