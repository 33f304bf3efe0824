"""RoPE scaling (nn/rope.py): inverse frequencies and attention factors equal Hugging Face's
rope-initialisation functions for every type, and every scaled RoPE keeps the relative-position
property (q_m . k_n depends only on m - n)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.nn.rope import rope_forward, rope_parameters, rope_tables

SEED = st.integers(0, 2**32 - 1)

# (HF rope_parameters dict, seq_len for the dynamic rule) per case; head_dim / theta / L0 vary below
CASES = [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "linear", "factor": 1.5},
    {"rope_type": "dynamic", "factor": 2.0},
    {"rope_type": "dynamic", "factor": 8.0},
    {"rope_type": "yarn", "factor": 4.0},
    {"rope_type": "yarn", "factor": 16.0, "beta_fast": 16, "beta_slow": 2},
    {"rope_type": "yarn", "factor": 8.0, "truncate": False},
    {"rope_type": "yarn", "factor": 4.0, "mscale": 0.707, "mscale_all_dim": 1.0},
    {"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.3},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
    {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0},
]


def hf_rope(params, head_dim, theta, max_pos, seq_len=None):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cfg = transformers.LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                                   max_position_embeddings=max_pos,
                                   rope_parameters={**params, "rope_theta": theta})
    inv_freq, factor = ROPE_INIT_FUNCTIONS[params["rope_type"]](cfg, None, seq_len=seq_len)
    return inv_freq.numpy(), float(factor)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
@pytest.mark.parametrize("head_dim,theta,L0", [(64, 10000.0, 128), (16, 500.0, 64), (128, 500000.0, 8192)])
def test_matches_hugging_face(case, head_dim, theta, L0):
    seq_lens = [None] if case["rope_type"] != "dynamic" else [None, L0 // 2, L0, 3 * L0, 8 * L0 + 5]
    for seq_len in seq_lens:
        ref_f, ref_a = hf_rope(case, head_dim, theta, L0, seq_len)
        if case["rope_type"] == "dynamic":  # our seq_len is the current length; L0 from the dict
            ours = rope_parameters(head_dim, theta, {**case, "original_max_position_embeddings": L0},
                                   seq_len)
        else:  # our seq_len at construction plays max_position_embeddings (the default L0)
            ours = rope_parameters(head_dim, theta, case, L0)
        # HF computes in float32: relative error of base**x and the ramp ~ 1e-7 * a few
        np.testing.assert_allclose(ours[0], ref_f, rtol=2e-6, atol=0)
        assert math.isclose(ours[1], ref_a, rel_tol=1e-12), (ours[1], ref_a)


@pytest.mark.parametrize("s", [2.0, 4.0, 8.0])
def test_ntk_equals_hf_dynamic_at_s_times_length(s):
    """Static NTK-aware scaling by s is dynamic NTK (factor 1) evaluated at length s * L0."""
    ref_f, ref_a = hf_rope({"rope_type": "dynamic", "factor": 1.0}, 64, 10000.0, 128, int(s * 128))
    ours_f, ours_a = rope_parameters(64, 10000.0, {"rope_type": "ntk", "factor": s})
    np.testing.assert_allclose(ours_f, ref_f, rtol=2e-6)
    # by construction the lowest frequency is interpolated by exactly s, the highest kept
    base_f = rope_parameters(64, 10000.0)[0]
    assert ours_f[0] == base_f[0] and math.isclose(ours_f[-1], base_f[-1] / s, rel_tol=1e-12)


def test_yarn_temperature_and_interpolation_ends():
    base_f = rope_parameters(64, 10000.0)[0]
    f, a = rope_parameters(64, 10000.0, {"rope_type": "yarn", "factor": 4.0,
                                         "original_max_position_embeddings": 128})
    assert math.isclose(a, 0.1 * math.log(4.0) + 1.0)
    assert f[0] == base_f[0]                                   # fastest rotation: extrapolated
    assert math.isclose(f[-1], base_f[-1] / 4.0, rel_tol=1e-12)  # slowest: interpolated by s
    assert np.all(f <= base_f) and np.all(f >= base_f / 4.0 * (1 - 1e-12))


def test_default_unchanged_and_dynamic_is_identity_within_training_length():
    f0, a0 = rope_parameters(32, 10000.0)
    assert a0 == 1.0 and np.array_equal(f0, 1.0 / 10000.0 ** (np.arange(0, 32, 2) / 32))
    assert np.array_equal(rope_parameters(32, 10000.0, {"rope_type": "default"})[0], f0)
    dyn = {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 64}
    np.testing.assert_allclose(rope_parameters(32, 10000.0, dyn, 10)[0], f0, rtol=1e-15)
    assert np.all(rope_parameters(32, 10000.0, dyn, 200)[0][1:] < f0[1:])


@pytest.mark.parametrize("bad,match", [
    ({"rope_type": "bogus", "factor": 2.0}, "rope_type"),
    ({"rope_type": "linear"}, "factor"),
    ({"rope_type": "linear", "factor": 0.5}, "factor"),
    ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64}, "low_freq_factor"),
    ({"rope_type": "yarn", "factor": 2.0}, "original_max_position_embeddings"),
])
def test_bad_scaling(bad, match):
    with pytest.raises(ValueError, match=match):
        rope_parameters(16, 10000.0, bad)
    with pytest.raises(TypeError, match="scaling"):
        rope_parameters(16, 10000.0, "linear")


SCALINGS = [None, {"rope_type": "linear", "factor": 4.0}, {"rope_type": "ntk", "factor": 8.0},
            {"rope_type": "dynamic", "factor": 4.0, "original_max_position_embeddings": 32},
            {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32},
            {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 32}]


@settings(max_examples=60, deadline=None)
@given(scaling=st.sampled_from(SCALINGS), half=st.integers(2, 16), m=st.integers(0, 5000),
       n=st.integers(0, 5000), shift=st.integers(-5000, 5000), seed=SEED)
def test_relative_position_property(scaling, half, m, n, shift, seed):
    """<R(m) q, R(n) k> = <q, R(n - m) k> for any rotation by per-pair angles, so shifting both
    positions by the same amount leaves the score unchanged (Su et al. 2021, eq. 16)."""
    shift = max(shift, -min(m, n))
    D = 2 * half
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((2, 1, 1, 1, D))                       # (B=1, H=1, T=1, D) each
    inv_freq, a = rope_parameters(D, 10000.0, scaling, 200)
    rot = lambda x, p: rope_forward(x, *rope_tables([p], inv_freq, a, np.float64))[0]
    s1 = float(np.sum(rot(q, m) * rot(k, n)))
    s2 = float(np.sum(rot(q, m + shift) * rot(k, n + shift)))
    # angles up to ~1e4 rad: cos/sin of float64 angles carry ~1e4 * 1e-16 absolute error each
    assert math.isclose(s1, s2, rel_tol=1e-9, abs_tol=1e-9 * a * a * D)
    # and the score equals the unrotated q against k rotated by n - m, times the temperature^2
    s3 = float(np.sum(q * rot(k, n - m))) * a if n >= m else float(np.sum(rot(q, m - n) * k)) * a
    assert math.isclose(s1, s3, rel_tol=1e-9, abs_tol=1e-9 * a * a * D)


def test_model_with_linear_scaling_reads_position_m_as_m_over_s():
    """Position interpolation in the model: a Transformer built around the same weights with
    rope_scaling linear s, run at positions s*m, gives the logits of the original at positions m."""
    from minillm import ModelConfig, Transformer
    from minillm.nn import attention_forward
    cfg = ModelConfig.preset("llama-tiny")
    base = Transformer(cfg, seed=4)
    s = 4
    scaled = Transformer(ModelConfig(**{**cfg.to_dict(), "rope_scaling": {"rope_type": "linear", "factor": float(s)}}),
                         params=base.params)
    x = np.random.default_rng(0).integers(0, 256, (1, 10))
    causal = lambda l, q, k, v: attention_forward(q, k, v)[0]
    np.testing.assert_allclose(scaled.forward_with(x, s * np.arange(10), causal),
                               base.forward_with(x, np.arange(10), causal), atol=1e-5)
    yarn = Transformer(ModelConfig(**{**cfg.to_dict(), "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                                        "original_max_position_embeddings": 32}}),
                       params=base.params)
    assert yarn._rope_factor == pytest.approx(0.1 * math.log(4.0) + 1) and np.all(np.isfinite(yarn.forward(x)))
