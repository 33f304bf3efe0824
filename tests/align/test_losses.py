"""Alignment losses: gradients against float64 finite differences (always) and torch autograd (when
installed), plus the properties each loss must have (DPO = log 2 at the reference, PPO's clipped
tokens get no gradient, GAE(λ=1) = discounted return - value, KL estimators' signs)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad
from minillm.align import (bradley_terry_loss, dpo_implicit_rewards, dpo_loss, gae, kl_estimate, ppo_loss,
                           ppo_stats, value_loss, whiten)

DPO_CASES = [("sigmoid", 0.0, False), ("sigmoid", 0.1, False), ("robust", 0.2, False), ("hinge", 0.0, False),
             ("ipo", 0.0, False), ("sigmoid", 0.0, True), ("ipo", 0.0, True)]
seeds = st.integers(0, 2**31 - 1)


def _dpo_inputs(rng, N):
    return rng.standard_normal((4, N)) * 3.0 - 10.0        # summed log-probs are negative, O(10)


# ------------------------------------------------------------------ finite differences (float64)
@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 6), seed=seeds, with_margin=st.booleans(), center=st.sampled_from([0.0, 0.05]))
def test_bradley_terry_gradients_match_finite_differences(N, seed, with_margin, center):
    rng = np.random.default_rng(seed)
    rw, rl, m = rng.standard_normal((3, N)) * 2
    margin = m if with_margin else None
    _, dw, dl = bradley_terry_loss(rw, rl, margin=margin, center_coef=center)
    np.testing.assert_allclose(dw, numerical_grad(lambda x: bradley_terry_loss(x, rl, margin, center)[0], rw),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dl, numerical_grad(lambda x: bradley_terry_loss(rw, x, margin, center)[0], rl),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss_type,eps,ref_free", DPO_CASES)
@settings(max_examples=10, deadline=None)
@given(N=st.integers(1, 6), seed=seeds, beta=st.sampled_from([0.05, 0.1, 0.5]))
def test_dpo_gradients_match_finite_differences(loss_type, eps, ref_free, N, seed, beta):
    rng = np.random.default_rng(seed)
    pw, pl, rw, rl = _dpo_inputs(rng, N)
    kw = dict(beta=beta, loss_type=loss_type, label_smoothing=eps, reference_free=ref_free)
    _, dw, dl = dpo_loss(pw, pl, rw, rl, **kw)
    if loss_type == "hinge":  # keep away from the kink β h = 1, where the derivative jumps
        h = (pw - pl) if ref_free else (pw - rw) - (pl - rl)
        if np.any(np.abs(beta * h - 1.0) < 1e-4):
            return
    np.testing.assert_allclose(dw, numerical_grad(lambda x: dpo_loss(x, pl, rw, rl, **kw)[0], pw),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dl, numerical_grad(lambda x: dpo_loss(pw, x, rw, rl, **kw)[0], pl),
                               rtol=1e-6, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=seeds, clip=st.sampled_from([0.1, 0.2]))
def test_ppo_policy_gradient_matches_finite_differences(B, T, seed, clip):
    rng = np.random.default_rng(seed)
    old = -np.abs(rng.standard_normal((B, T)))
    lp = old + 0.3 * rng.standard_normal((B, T))             # ratios both inside and outside the clip band
    adv = rng.standard_normal((B, T))
    mask = (rng.random((B, T)) < 0.8).astype(np.float64)
    ratio = np.exp(lp - old)
    if np.any(np.abs(np.abs(ratio - 1.0) - clip) < 1e-4):    # stay off the kinks of clip()
        return
    _, d = ppo_loss(lp, old, adv, mask, clip)
    np.testing.assert_allclose(d, numerical_grad(lambda x: ppo_loss(x, old, adv, mask, clip)[0], lp),
                               rtol=1e-6, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 6), seed=seeds)
def test_value_loss_gradient_matches_finite_differences(B, T, seed):
    rng = np.random.default_rng(seed)
    vo = rng.standard_normal((B, T))
    v = vo + 0.4 * rng.standard_normal((B, T))
    R = rng.standard_normal((B, T))
    mask = (rng.random((B, T)) < 0.8).astype(np.float64)
    if np.any(np.abs(np.abs(v - vo) - 0.2) < 1e-4):
        return
    _, d = value_loss(v, vo, R, mask, 0.2)
    np.testing.assert_allclose(d, numerical_grad(lambda x: value_loss(x, vo, R, mask, 0.2)[0], v),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_estimator_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(0)
    lp, ref = -np.abs(rng.standard_normal((2, 3, 4)))
    _, d = kl_estimate(lp, ref, kind)
    np.testing.assert_allclose(d, numerical_grad(lambda x: np.sum(kl_estimate(x, ref, kind)[0]), lp),
                               rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ properties
@pytest.mark.parametrize("loss_type,eps", [("sigmoid", 0.0), ("sigmoid", 0.2), ("robust", 0.1)])
def test_dpo_loss_is_log2_when_policy_equals_reference(loss_type, eps):
    rng = np.random.default_rng(1)
    pw, pl = rng.standard_normal((2, 5)) - 20.0
    loss, dw, dl = dpo_loss(pw, pl, pw.copy(), pl.copy(), beta=0.1, loss_type=loss_type, label_smoothing=eps)
    assert loss == pytest.approx(math.log(2.0), abs=1e-12)
    # at h = 0 the (non-smoothed) DPO gradient pushes chosen up and rejected down by β/2 per pair
    if eps == 0.0:
        np.testing.assert_allclose(dw, -0.1 * 0.5 / 5)
        np.testing.assert_allclose(dl, 0.1 * 0.5 / 5)


def test_dpo_loss_types_at_known_points():
    h = np.array([2.0])
    zeros = np.zeros(1)
    assert dpo_loss(h, zeros, zeros, zeros, beta=0.5, loss_type="hinge")[0] == 0.0       # βh = 1
    assert dpo_loss(h, zeros, zeros, zeros, beta=0.25, loss_type="ipo")[0] == pytest.approx(0.0)  # h = 1/(2β)
    assert dpo_loss(h, zeros, zeros, zeros, beta=1.0)[0] == pytest.approx(math.log1p(math.exp(-2.0)))
    # reference-free ignores the reference entirely
    a = dpo_loss(h, zeros, h, zeros, reference_free=True)
    b = dpo_loss(h, zeros, np.array([np.nan]), np.array([np.nan]), reference_free=True)
    assert a[0] == b[0]


def test_dpo_rejects_bad_arguments():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(x, x, x, x, loss_type="kto")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, label_smoothing=0.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(x, x, x, x, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        dpo_loss(x, x, np.zeros(2), x)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)


def test_dpo_implicit_rewards():
    rw, rl, stats = dpo_implicit_rewards(np.array([-1.0, -2.0]), np.array([-3.0, -1.0]),
                                         np.array([-2.0, -2.0]), np.array([-2.0, -2.0]), beta=0.5)
    np.testing.assert_allclose(rw, [0.5, 0.0])
    np.testing.assert_allclose(rl, [-0.5, 0.5])
    assert stats["reward_accuracy"] == 0.5 and stats["reward_margin"] == pytest.approx(0.25)


def test_ppo_gradient_is_zero_where_clipping_is_active():
    eps = 0.2
    old = np.zeros((1, 4))
    lp = np.log(np.array([[1.5, 0.5, 1.5, 0.5]]))            # ratios 1.5 (> 1+ε) and 0.5 (< 1-ε)
    adv = np.array([[1.0, -1.0, -1.0, 1.0]])
    mask = np.ones((1, 4))
    loss, d = ppo_loss(lp, old, adv, mask, eps)
    # clipped and no gradient: ρ > 1+ε with A > 0, ρ < 1-ε with A < 0
    assert d[0, 0] == 0.0 and d[0, 1] == 0.0
    # not clipped (the pessimistic min keeps the unclipped term): gradient -ρA/n
    assert d[0, 2] == pytest.approx(-1.5 * -1.0 / 4) and d[0, 3] == pytest.approx(-0.5 * 1.0 / 4)
    assert loss == pytest.approx(-(1.2 * 1.0 + 0.8 * -1.0 + 1.5 * -1.0 + 0.5 * 1.0) / 4)
    stats = ppo_stats(lp, old, mask, eps)
    assert stats["clipfrac"] == 1.0 and stats["approx_kl"] > 0


def test_ppo_loss_masks_tokens():
    rng = np.random.default_rng(2)
    lp, old, adv = rng.standard_normal((3, 2, 5))
    mask = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=np.float64)
    loss, d = ppo_loss(lp, old, adv, mask)
    assert np.all(d[mask == 0] == 0.0)
    lp2 = np.where(mask > 0, lp, 123.0)                      # garbage in masked slots changes nothing
    assert ppo_loss(lp2, old, adv, mask)[0] == pytest.approx(loss)


@settings(max_examples=30, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 8), seed=seeds, gamma=st.sampled_from([1.0, 0.9, 0.5]))
def test_gae_with_lambda_one_is_discounted_return_minus_value(B, T, seed, gamma):
    rng = np.random.default_rng(seed)
    r, v = rng.standard_normal((2, B, T))
    # a prompt (masked), then the response (actions), then padding (masked)
    start, length = rng.integers(0, T, B), rng.integers(1, T + 1, B)
    mask = np.zeros((B, T))
    for b in range(B):
        mask[b, start[b]:start[b] + length[b]] = 1.0
    adv, ret = gae(r, v, mask, gamma, 1.0)
    for b in range(B):
        idx = np.flatnonzero(mask[b])
        for j, t in enumerate(idx):
            G = sum(gamma ** k * r[b, idx[j + k]] for k in range(len(idx) - j))
            assert adv[b, t] == pytest.approx(G - v[b, t], abs=1e-12)
            assert ret[b, t] == pytest.approx(G, abs=1e-12)
    assert np.all(adv[mask == 0] == 0.0)


def test_gae_with_lambda_zero_is_td_error():
    r = np.array([[0.0, 1.0, 2.0]])
    v = np.array([[0.5, 0.25, 1.0]])
    adv, _ = gae(r, v, np.ones((1, 3)), 0.9, 0.0)
    np.testing.assert_allclose(adv, [[0.0 + 0.9 * 0.25 - 0.5, 1.0 + 0.9 * 1.0 - 0.25, 2.0 - 1.0]])


@settings(max_examples=30, deadline=None)
@given(seed=seeds, scale=st.sampled_from([1e-6, 0.1, 3.0]))
def test_kl_estimators_nonnegative_where_they_must_be_and_unbiased(seed, scale):
    rng = np.random.default_rng(seed)
    lp, ref = rng.standard_normal((2, 50)) * scale
    assert np.all(kl_estimate(lp, ref, "k2")[0] >= 0.0)
    assert np.all(kl_estimate(lp, ref, "k3")[0] >= 0.0)
    # exact KL of two categoricals = E_{y~p}[k1] = E_{y~p}[k3]: check in expectation over p
    logits_p, logits_q = rng.standard_normal((2, 7)) * scale
    logp = logits_p - np.logaddexp.reduce(logits_p)
    logq = logits_q - np.logaddexp.reduce(logits_q)
    kl = np.sum(np.exp(logp) * (logp - logq))
    for kind in ("k1", "k3"):
        assert np.sum(np.exp(logp) * kl_estimate(logp, logq, kind)[0]) == pytest.approx(kl, rel=1e-9, abs=1e-15)


def test_kl_k1_can_be_negative_and_all_vanish_at_equality():
    assert kl_estimate(np.array([-2.0]), np.array([-1.0]), "k1")[0][0] < 0
    x = np.array([-0.7, -3.0])
    for kind in ("k1", "k2", "k3"):
        assert np.all(kl_estimate(x, x, kind)[0] == 0.0)


def test_whiten():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 7)) * 5 + 2
    mask = (rng.random((3, 7)) < 0.7).astype(np.float64)
    w = whiten(x, mask)
    vals = w[mask > 0]
    assert abs(vals.mean()) < 1e-9 and abs(vals.std() - 1.0) < 1e-6
    assert np.all(w[mask == 0] == 0.0)


def test_bradley_terry_margin_and_properties():
    loss, dw, dl = bradley_terry_loss(np.array([1.0]), np.array([1.0]))
    assert loss == pytest.approx(math.log(2.0)) and dw[0] == pytest.approx(-0.5) and dl[0] == pytest.approx(0.5)
    # a margin demands a larger gap before the loss falls
    assert bradley_terry_loss(np.array([2.0]), np.array([1.0]), margin=1.0)[0] == pytest.approx(math.log(2.0))
    # centring: the gradient of the penalty pushes a pair's sum towards zero
    _, dw, dl = bradley_terry_loss(np.array([10.0]), np.array([9.0]), center_coef=0.1)
    assert dw[0] + dl[0] > 0
    with pytest.raises(ValueError, match="r_rejected"):
        bradley_terry_loss(np.zeros(3), np.zeros(2))


# ------------------------------------------------------------------ against torch autograd
def test_losses_match_torch_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    t = lambda a: torch.tensor(a, dtype=torch.float64, requires_grad=True)  # noqa: E731

    # Bradley-Terry with margin and centring
    rw, rl, m = rng.standard_normal((3, 8))
    a, b = t(rw), t(rl)
    ref = (-F.logsigmoid(a - b - torch.tensor(m)) + 0.05 * (a + b) ** 2).mean()
    ref.backward()
    loss, dw, dl = bradley_terry_loss(rw, rl, margin=m, center_coef=0.05)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(dw, a.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(dl, b.grad.numpy(), rtol=1e-10)

    # every DPO variant (the TRL formulas)
    for loss_type, eps, ref_free in DPO_CASES:
        pw, pl, rw_, rl_ = _dpo_inputs(rng, 8)
        beta = 0.1
        a, b = t(pw), t(pl)
        h = (a - b) if ref_free else (a - torch.tensor(rw_)) - (b - torch.tensor(rl_))
        if loss_type == "sigmoid":
            L = -F.logsigmoid(beta * h) * (1 - eps) - F.logsigmoid(-beta * h) * eps
        elif loss_type == "robust":
            L = (-F.logsigmoid(beta * h) * (1 - eps) + F.logsigmoid(-beta * h) * eps) / (1 - 2 * eps)
        elif loss_type == "hinge":
            L = torch.relu(1 - beta * h)
        else:
            L = (h - 1 / (2 * beta)) ** 2
        L.mean().backward()
        loss, dw, dl = dpo_loss(pw, pl, rw_, rl_, beta=beta, loss_type=loss_type, label_smoothing=eps,
                                reference_free=ref_free)
        assert loss == pytest.approx(L.mean().item(), rel=1e-12), loss_type
        np.testing.assert_allclose(dw, a.grad.numpy(), rtol=1e-10, atol=1e-15, err_msg=loss_type)
        np.testing.assert_allclose(dl, b.grad.numpy(), rtol=1e-10, atol=1e-15, err_msg=loss_type)

    # PPO policy part: clipped surrogate, masked token mean
    B, T = 4, 9
    old = -np.abs(rng.standard_normal((B, T)))
    lp = old + 0.3 * rng.standard_normal((B, T))
    adv = rng.standard_normal((B, T))
    mask = (rng.random((B, T)) < 0.8).astype(np.float64)
    x = t(lp)
    ratio = torch.exp(x - torch.tensor(old))
    A = torch.tensor(adv)
    obj = torch.min(ratio * A, torch.clamp(ratio, 0.8, 1.2) * A)
    ref = -(obj * torch.tensor(mask)).sum() / torch.tensor(mask).sum()
    ref.backward()
    loss, d = ppo_loss(lp, old, adv, mask, 0.2)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(d, x.grad.numpy(), rtol=1e-10, atol=1e-15)

    # PPO value part: clipped value loss
    vo = rng.standard_normal((B, T))
    v = vo + 0.4 * rng.standard_normal((B, T))
    R = rng.standard_normal((B, T))
    x = t(v)
    vt = torch.tensor(vo)
    vclip = vt + torch.clamp(x - vt, -0.2, 0.2)
    Rt = torch.tensor(R)
    ref = 0.5 * (torch.maximum((x - Rt) ** 2, (vclip - Rt) ** 2) * torch.tensor(mask)).sum() / mask.sum()
    ref.backward()
    loss, d = value_loss(v, vo, R, mask, 0.2)
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(d, x.grad.numpy(), rtol=1e-10, atol=1e-15)

    # KL estimators
    lp, ref_lp = -np.abs(rng.standard_normal((2, 3, 5)))
    for kind in ("k1", "k2", "k3"):
        x = t(lp)
        log_r = torch.tensor(ref_lp) - x
        k = {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": torch.exp(log_r) - 1 - log_r}[kind]
        k.sum().backward()
        val, d = kl_estimate(lp, ref_lp, kind)
        np.testing.assert_allclose(val, k.detach().numpy(), rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(d, x.grad.numpy(), rtol=1e-10, atol=1e-15)
