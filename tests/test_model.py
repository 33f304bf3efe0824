"""The Transformer: whole-model gradients against finite differences (float64) and, with torch
installed, logits and gradients against Hugging Face transformers on the same random weights."""
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer
from minillm.loaders import load_hf, save_hf
from minillm.inference.decode import forward_cached


def tiny(arch, **kw):
    base = dict(arch=arch, vocab_size=11, n_layer=2, n_head=2, d_model=8, max_seq_len=16)
    if arch == "llama":
        base.update(n_head=4, n_kv_head=2, ffn_dim=12)
    return ModelConfig(**{**base, **kw})


def float64_model(cfg, seed):
    m = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    # perturb norms/biases away from 1/0 so their gradients are generic
    m.params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float64) for k, v in m.params.items()}
    return m


@settings(max_examples=8, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), qk_norm=st.booleans(), z_loss=st.sampled_from([0.0, 1e-3]),
       B=st.integers(1, 2), T=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_model_gradients_match_finite_differences(arch, qk_norm, z_loss, B, T, seed):
    m = float64_model(tiny(arch, qk_norm=qk_norm, z_loss=z_loss), seed)
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 11, (B, T)), rng.integers(0, 11, (B, T))
    _, grads = m.loss_and_grads(x, y)
    eps = 1e-6

    def central(p, idx, h):  # (L(w + h) - L(w - h)) / 2h = dL/dw + h^2 (d3L/dw3) / 6 + O(h^4)
        old = p[idx]
        p[idx] = old + h
        lp = m.loss_and_grads(x, y)[0]
        p[idx] = old - h
        lm = m.loss_and_grads(x, y)[0]
        p[idx] = old
        return (lp - lm) / (2 * h)
    for name, p in m.params.items():
        for idx in {tuple(rng.integers(0, s) for s in p.shape) for _ in range(3)}:
            # Richardson extrapolation cancels the h^2 term: with qk_norm a key vector of small norm
            # makes the third derivative large enough that the plain difference at 1e-6 is off by
            # 2e-6 relative (llama, qk_norm, B 2, T 6, seed 328: k_proj (3, 2)); extrapolated, it converges
            num = (4 * central(p, idx, eps) - central(p, idx, 2 * eps)) / 3
            g = grads[name][idx]
            # relative error < 1e-6; the differences' own rounding noise is ~loss * 1e-16 / eps
            # ~ 3e-10, so components below 1e-3 are held to an absolute 1e-9 instead
            assert abs(g - num) <= 1e-6 * max(abs(num), 1e-3), (name, idx, g, num)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_activation_checkpointing_gives_identical_gradients_with_less_memory(arch):
    m = Transformer(ModelConfig.preset(f"{arch}-tiny"), seed=1)
    x = np.random.default_rng(0).integers(0, 256, (2, 32))
    l1, g1 = m.loss_and_grads(x, x)
    l2, g2 = m.loss_and_grads(x, x, checkpoint=True)
    assert l1 == l2 and all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert m.activation_bytes(x, checkpoint=True) < 0.5 * m.activation_bytes(x)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_kv_cache_forward_matches_full_forward(arch):
    cfg = ModelConfig.preset(f"{arch}-tiny")
    m = Transformer(cfg, seed=2)
    x = np.random.default_rng(0).integers(0, 256, (2, 12))
    full = m.forward(x)
    cache = types.SimpleNamespace(pos=0, k=np.zeros((cfg.n_layer, 2, cfg.n_kv_head, 16, cfg.head_dim), np.float32))
    cache.v = np.zeros_like(cache.k)
    parts = [forward_cached(m, x[:, :5], cache)] + [forward_cached(m, x[:, t:t + 1], cache) for t in range(5, 12)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, atol=1e-5)
    assert cache.pos == 12


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="bert")
    with pytest.raises(ValueError, match="n_kv_head"):
        ModelConfig(arch="llama", n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="d_model"):
        ModelConfig(d_model=10, n_head=4)
    with pytest.raises(ValueError, match="name"):
        ModelConfig.preset("gpt5")
    m = Transformer(ModelConfig.preset("gpt2-tiny"))
    with pytest.raises(ValueError, match="tokens"):
        m.forward(np.array([[0, 256]]))
    with pytest.raises(ValueError, match="tokens"):
        m.forward(np.zeros((1, 200), dtype=np.int64))  # longer than max_seq_len for learned positions
    with pytest.raises(ValueError, match="targets"):
        m.loss_and_grads(np.zeros((1, 4), np.int64), np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match="params"):
        Transformer(ModelConfig.preset("gpt2-tiny"), params={"x": np.zeros(1, np.float32)})


def test_param_and_flop_counts():
    cfg = ModelConfig.preset("gpt2")
    assert cfg.num_params() == 124_439_808  # GPT-2 small with tied embeddings
    assert ModelConfig.preset("llama-134m").num_params() == 134_105_856
    # 6N rule of thumb: training FLOPs/token within 10% of 6 x non-embedding+head params at short T
    n = cfg.num_params(non_embedding=True) + cfg.vocab_size * cfg.d_model
    assert abs(cfg.flops_per_token(seq_len=1) / (6 * n) - 1) < 0.01


# --------------------------------------------------------------------------- parity with transformers
def _hf_model(arch, torch, transformers):
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=97, n_positions=64, n_embd=48, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                       num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
                                       rope_theta=500.0, bos_token_id=0, eos_token_id=0)
        model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # make norms and biases non-trivial
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_load_hf_matches_transformers_logits_and_gradients(arch, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = _hf_model(arch, torch, transformers)
    hf.save_pretrained(tmp_path)
    m = load_hf(tmp_path)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 97, (3, 20)), rng.integers(0, 97, (3, 20))
    logits = hf(torch.tensor(x)).logits
    np.testing.assert_allclose(m.forward(x), logits.detach().numpy(), atol=1e-4)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 97), torch.tensor(y).reshape(-1))
    loss.backward()
    ours, grads = m.loss_and_grads(x, y)
    assert abs(ours - loss.item()) < 1e-5
    named = dict(hf.named_parameters())
    for name, g in grads.items():
        ref = named[name].grad.numpy()
        if arch == "gpt2" and name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            ref = ref.T  # Conv1D stores (in, out)
        err = np.max(np.abs(g - ref)) / max(np.max(np.abs(ref)), 1e-8)
        assert err < 1e-4, (name, err)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_save_hf_loads_in_transformers(arch, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = tiny(arch, vocab_size=50, d_model=32, max_seq_len=32)
    m = Transformer(cfg, seed=3)
    save_hf(m, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = np.random.default_rng(1).integers(0, 50, (2, 9))
    with torch.no_grad():
        ref = hf(torch.tensor(x)).logits.numpy()
    np.testing.assert_allclose(m.forward(x), ref, atol=1e-4)
    again = load_hf(tmp_path)
    assert all(np.array_equal(again.params[k], m.params[k]) for k in m.params)


def test_forward_train_backward_with_hidden_gradient():
    """backward(caches, dlogits, dhidden) is the chain rule through the same graph: a loss on the
    hidden states (like a reward head) gets finite-difference-exact gradients in float64."""
    m = float64_model(tiny("llama"), 5)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 11, (2, 4))
    w_head = rng.standard_normal(m.config.d_model)
    logits, hidden, caches = m.forward_train(x)
    dlogits = rng.standard_normal(logits.shape)
    grads = m.backward(caches, dlogits=dlogits, dhidden=np.broadcast_to(w_head, hidden.shape).copy())

    def f():
        lg, h, _ = m.forward_train(x)
        return np.sum(lg * dlogits) + np.sum(h @ w_head)

    name = "model.layers.0.mlp.down_proj.weight"
    p = m.params[name]
    old = p[1, 2]
    p[1, 2] = old + 1e-6
    fp = f()
    p[1, 2] = old - 1e-6
    fm = f()
    p[1, 2] = old
    num = (fp - fm) / 2e-6
    assert abs(grads[name][1, 2] - num) <= 1e-6 * max(abs(num), 1e-3)


def test_quantized_hook_replaces_linear_weights():
    cfg = ModelConfig.preset("llama-tiny")
    m = Transformer(cfg, seed=0)
    x = np.random.default_rng(0).integers(0, 256, (1, 6))
    ref = m.forward(x)

    class Dense:  # a trivial "quantized" weight: the same matrix behind the hook interface
        def __init__(self, w):
            self.w, self.shape = w, w.shape

        def matmul(self, a):
            return a @ self.w.T

    name = "model.layers.0.mlp.up_proj.weight"
    params = {k: v for k, v in m.params.items() if k != name}
    q = Transformer(cfg, params=params, quantized={name: Dense(m.params[name])})
    np.testing.assert_allclose(q.forward(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="inference-only"):
        q.loss_and_grads(x, x)
