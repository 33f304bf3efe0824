"""ALiBi (nn/alibi.py): slopes as Press et al. 2022 (and BLOOM in transformers), attention with the
linear bias equal to a direct softmax, its backward against finite differences and torch autograd,
and the model option for training and KV-cache inference."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad
from minillm.nn.alibi import alibi_attention_backward, alibi_attention_forward, alibi_slopes
from minillm.inference.decode import forward_cached

SEED = st.integers(0, 2**32 - 1)


def test_slopes_paper_values():
    np.testing.assert_allclose(alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])   # 1/2 ... 1/256
    np.testing.assert_allclose(alibi_slopes(4), [2.0 ** -(2 * (i + 1)) for i in range(4)])
    # 6 heads: the 4-head slopes, then every other slope of 8 heads: 1/2, 1/8
    np.testing.assert_allclose(alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])


@pytest.mark.parametrize("H", [1, 2, 3, 5, 6, 8, 12, 16, 20, 24, 32, 40])
def test_slopes_match_bloom(H):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor
    alibi = build_alibi_tensor(torch.ones(1, 2), H, torch.float32)      # (H, 1, 2): slope * position
    np.testing.assert_allclose(alibi_slopes(H), alibi[:, 0, 1].numpy(), rtol=1e-6)


def direct(q, k, v, slopes):  # one (T, S) score matrix per head, written out term by term
    B, H, T, D = q.shape
    S, G = k.shape[2], H // k.shape[1]
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                pi = S - T + i
                s = np.array([q[b, h, i] @ k[b, h // G, j] / math.sqrt(D) - slopes[h] * (pi - j) if j <= pi
                              else -np.inf for j in range(S)])
                w = np.exp(s - s.max())
                out[b, h, i] = (w / w.sum()) @ v[b, h // G]
    return out


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), G=st.integers(1, 3), T=st.integers(1, 5),
       extra=st.integers(0, 3), D=st.integers(1, 5), seed=SEED)
def test_forward_matches_direct_and_backward_matches_finite_differences(B, Hkv, G, T, extra, D, seed):
    rng = np.random.default_rng(seed)
    H, S = Hkv * G, T + extra
    q, dout = rng.standard_normal((2, B, H, T, D))
    k, v = rng.standard_normal((2, B, Hkv, S, D))
    slopes = alibi_slopes(H) * 4           # steeper than default so the bias matters at short range
    out, cache = alibi_attention_forward(q, k, v, slopes)
    np.testing.assert_allclose(out, direct(q, k, v, slopes), rtol=1e-10, atol=1e-12)
    dq, dk, dv = alibi_attention_backward(dout, cache)
    f = lambda q_, k_, v_: np.sum(alibi_attention_forward(q_, k_, v_, slopes)[0] * dout)
    for got, num in ((dq, numerical_grad(lambda a: f(a, k, v), q)), (dk, numerical_grad(lambda a: f(q, a, v), k)),
                     (dv, numerical_grad(lambda a: f(q, k, a), v))):
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-7)   # central differences: O(eps^2)


def test_backward_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, H, Hkv, T, D = 2, 6, 3, 7, 8
    q, dout = rng.standard_normal((2, B, H, T, D))
    k, v = rng.standard_normal((2, B, Hkv, T, D))
    slopes = alibi_slopes(H)
    out, cache = alibi_attention_forward(q, k, v, slopes)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    pos = torch.arange(T)
    bias = -torch.tensor(slopes)[:, None, None] * (pos[:, None] - pos[None, :])
    bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    ref = torch.nn.functional.scaled_dot_product_attention(
        tq, tk.repeat_interleave(2, dim=1), tv.repeat_interleave(2, dim=1), attn_mask=bias)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, t in zip(alibi_attention_backward(dout, cache), (tq, tk, tv)):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_bad_shapes():
    q = np.zeros((1, 4, 3, 2))
    with pytest.raises(ValueError, match="slopes"):
        alibi_attention_forward(q, np.zeros((1, 2, 3, 2)), np.zeros((1, 2, 3, 2)), alibi_slopes(3))
    with pytest.raises(ValueError, match="k, v"):
        alibi_attention_forward(q, np.zeros((1, 3, 3, 2)), np.zeros((1, 3, 3, 2)), alibi_slopes(4))
    with pytest.raises(ValueError, match="n_head"):
        alibi_slopes(0)


# ------------------------------------------------------------------ the model option
def tiny_alibi(arch, **kw):
    from minillm import ModelConfig
    base = dict(arch=arch, vocab_size=11, n_layer=2, n_head=3, d_model=12, max_seq_len=8, position="alibi")
    if arch == "llama":
        base.update(n_head=4, n_kv_head=2, d_model=8, ffn_dim=12)
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_alibi_model_has_no_position_parameters_and_trains(arch):
    from minillm import ModelConfig, Transformer
    cfg = tiny_alibi(arch)
    assert cfg.position_scheme == "alibi" and not any("wpe" in n for n in cfg.param_shapes())
    assert ModelConfig(**cfg.to_dict()) == cfg                       # round trip (checkpoints)
    m = Transformer(cfg, seed=3)
    rng = np.random.default_rng(3)
    m.params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float64) for k, v in m.params.items()}
    x, y = rng.integers(0, 11, (2, 6)), rng.integers(0, 11, (2, 6))
    _, grads = m.loss_and_grads(x, y)
    eps = 1e-6
    for name, p in m.params.items():                                 # whole-model finite differences
        for idx in {tuple(rng.integers(0, s) for s in p.shape) for _ in range(2)}:
            old = p[idx]
            p[idx] = old + eps
            lp = m.loss_and_grads(x, y)[0]
            p[idx] = old - eps
            lm = m.loss_and_grads(x, y)[0]
            p[idx] = old
            num = (lp - lm) / (2 * eps)
            assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, idx)
    # ALiBi extrapolates: sequences longer than max_seq_len run (no position table to overflow)
    assert np.all(np.isfinite(Transformer(cfg, seed=3).forward(rng.integers(0, 11, (1, 3 * cfg.max_seq_len)))))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_alibi_kv_cache_and_hook_match_full_forward(arch):
    import types

    from minillm import Transformer
    cfg = tiny_alibi(arch)
    m = Transformer(cfg, seed=2)
    x = np.random.default_rng(0).integers(0, 11, (2, 12))
    full = m.forward(x)
    cache = types.SimpleNamespace(pos=0, k=np.zeros((cfg.n_layer, 2, cfg.n_kv_head, 16, cfg.head_dim), np.float32))
    cache.v = np.zeros_like(cache.k)
    parts = [forward_cached(m, x[:, :5], cache)] + [forward_cached(m, x[:, t:t + 1], cache) for t in range(5, 12)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=1e-5)
    # a forward_with hook that attends with the model's slopes gives the same logits
    hook = lambda l, q, k, v: alibi_attention_forward(q, k, v, m.alibi_slopes)[0]
    np.testing.assert_allclose(m.forward_with(x, np.arange(12), hook), full, atol=1e-6)
    # and the bias matters: plain causal attention in the hook changes the logits
    from minillm.nn import attention_forward
    assert not np.allclose(m.forward_with(x, np.arange(12), lambda l, q, k, v: attention_forward(q, k, v)[0]),
                           full, atol=1e-4)


def test_alibi_config_errors():
    with pytest.raises(ValueError, match="position"):
        tiny_alibi("llama", position="sinusoidal")
