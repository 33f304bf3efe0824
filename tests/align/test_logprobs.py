"""Log-softmax-gather and entropy: backward against float64 finite differences and torch autograd,
and the chain into the model (logprobs_with_backward) against finite differences of a parameter."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad, numerical_grad_at
from minillm.align.logprobs import (entropy_backward, entropy_forward, logprobs_with_backward, model_logprobs,
                                    sequence_logprobs, token_logprobs_backward, token_logprobs_forward)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 4), V=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_token_logprobs_and_entropy_backward_match_finite_differences(B, T, V, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((B, T, V)) * 3
    y = rng.integers(0, V, (B, T))
    g = rng.standard_normal((B, T))
    lp, c = token_logprobs_forward(z, y)
    np.testing.assert_allclose(token_logprobs_backward(g, c),
                               numerical_grad(lambda x: np.sum(token_logprobs_forward(x, y)[0] * g), z),
                               rtol=1e-6, atol=1e-8)  # f ~ 10: its rounding ~1e-15 / eps 1e-6 -> ~1e-9 noise
    H, cH = entropy_forward(z)
    np.testing.assert_allclose(entropy_backward(g, cH),
                               numerical_grad(lambda x: np.sum(entropy_forward(x)[0] * g), z),
                               rtol=1e-6, atol=1e-8)
    assert np.all(lp <= 0) and np.all(H >= -1e-12) and np.all(H <= np.log(V) + 1e-12)


def test_logprobs_and_entropy_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 5, 11)) * 4
    y = rng.integers(0, 11, (2, 5))
    g, gh = rng.standard_normal((2, 2, 5))
    zt = torch.tensor(z, requires_grad=True)
    ls = torch.log_softmax(zt, -1)
    lp_t = ls.gather(-1, torch.tensor(y)[..., None])[..., 0]
    H_t = -(ls.exp() * ls).sum(-1)
    ((lp_t * torch.tensor(g)).sum() + (H_t * torch.tensor(gh)).sum()).backward()
    lp, c = token_logprobs_forward(z, y)
    H, cH = entropy_forward(z)
    np.testing.assert_allclose(lp, lp_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(H, H_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(token_logprobs_backward(g, c) + entropy_backward(gh, cH), zt.grad.numpy(),
                               rtol=1e-10, atol=1e-14)


def test_token_logprobs_is_stable_for_huge_logits_and_validates():
    z = np.array([[[1000.0, 0.0, -1000.0]]], dtype=np.float32)
    lp, _ = token_logprobs_forward(z, np.array([[0]]))
    assert lp[0, 0] == 0.0
    with pytest.raises(ValueError, match="targets"):
        token_logprobs_forward(z, np.array([[3]]))
    with pytest.raises(ValueError, match="logits"):
        token_logprobs_forward(z[0], np.array([0]))


def test_logprobs_with_backward_chains_into_the_model(f64_model):
    """A loss on log-probs and entropies: model gradients equal finite differences of a parameter."""
    m = f64_model(3)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 11, (2, 6))
    g, gh = rng.standard_normal((2, 2, 5))
    lp, H, backward = logprobs_with_backward(m, x, entropy=True)
    grads = backward(g, gh)

    def f():
        lp_, H_, _ = logprobs_with_backward(m, x, entropy=True)
        return np.sum(lp_ * g) + np.sum(H_ * gh)

    for name in ("model.layers.0.self_attn.q_proj.weight", "lm_head.weight", "model.embed_tokens.weight"):
        p = m.params[name]
        for idx in [(0, 1), (3, 2)]:
            num = numerical_grad_at(f, p, idx)
            assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, idx)
    # model_logprobs agrees with the training forward; sequence sums respect the mask
    np.testing.assert_allclose(model_logprobs(m, x, chunk=1), lp, rtol=1e-12)
    mask = np.zeros((2, 6))
    mask[:, 3:] = 1
    np.testing.assert_allclose(sequence_logprobs(m, x, mask), lp[:, 2:].sum(1), rtol=1e-12)
