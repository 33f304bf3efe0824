"""The losses of preference alignment, each returning its value and its hand-written gradient.

  bradley_terry_loss  reward-model loss, Bradley & Terry 1952 as used by Ouyang et al. 2022
                      (InstructGPT, eq. 1), with Llama-2's margin (Touvron et al. 2023, eq. 2) and
                      reward centring (Eisenstein et al. 2023, "Helping or herding?", Sec. 3);
  dpo_loss            Direct Preference Optimization, Rafailov et al. 2023, eq. (7), and its variants
                      IPO (Azar et al. 2023, eq. 17), hinge / SLiC (Zhao et al. 2023), conservative DPO
                      (label smoothing, Mitchell 2023), robust DPO (Chowdhury et al. 2024, eq. 10) and
                      reference-free;
  ppo_loss            the clipped surrogate objective L^CLIP, Schulman et al. 2017, eq. (7);
  value_loss          PPO's clipped value loss (the baselines / OpenAI implementation; Andrychowicz et
                      al. 2021, Sec. 3.2 discuss it);
  gae                 generalized advantage estimation, Schulman et al. 2016, eq. (16);
  kl_estimate         the k1, k2, k3 single-sample KL estimators (Schulman 2020, "Approximating KL
                      divergence"), as the per-token penalty of RLHF uses them;
  whiten              advantage normalisation over the valid tokens.

Unlike logprobs.py (which maps logits to per-token log-probabilities and back), everything here works
on log-probabilities, rewards and values that have already been computed: the gradients returned are
w.r.t. those inputs; chain them through logprobs.token_logprobs_backward into the model.
Every function accepts any float dtype and computes in it (float64 for the gradient checks).
"""
import numpy as np


# ------------------------------------------------------------------------------ shared helpers
def _as_float(x, name):
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a float array, got dtype {x.dtype}")
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _same_shape(ref_name, ref, **arrays):
    for name, a in arrays.items():
        if a.shape != ref.shape:
            raise ValueError(f"{name}: expected shape {ref.shape} (like {ref_name}), got {a.shape}")


def _log_sigmoid(x):  # log σ(x) = -log(1 + e^-x), stable for large |x|
    return -np.logaddexp(0.0, -x)


def _sigmoid(x):  # σ(x) = (1 + tanh(x/2)) / 2 never overflows, unlike 1 / (1 + e^-x)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _masked_mean_denominator(mask):
    """Number of valid tokens (at least 1, so an all-masked batch gives loss 0, not NaN)."""
    return max(float(mask.sum()), 1.0)


# ------------------------------------------------------------------------------ reward model
def bradley_terry_loss(r_chosen, r_rejected, margin=None, center_coef=0.0):  # (N,), (N,) -> float, (N,), (N,)
    """L = mean_i [ -log σ(r_w,i - r_l,i - m_i) + center_coef * (r_w,i + r_l,i)^2 ].

    r_chosen, r_rejected: (N,) scalar rewards r(x, y_w), r(x, y_l). margin: optional (N,) or scalar m
    (Llama-2: a larger margin for pairs rated "significantly better"). center_coef: the reward-centring
    penalty that pins the mean reward of a pair to 0 (the model is otherwise free to drift, since BT
    only sees differences). Returns (loss, dL/dr_chosen (N,), dL/dr_rejected (N,))."""
    rw, rl = _as_float(r_chosen, "r_chosen"), _as_float(r_rejected, "r_rejected")
    if rw.ndim != 1:
        raise ValueError(f"r_chosen: expected shape (N,), got {rw.shape}")
    _same_shape("r_chosen", rw, r_rejected=rl)
    N = rw.shape[0]
    m = np.zeros_like(rw) if margin is None else np.broadcast_to(_as_float(margin, "margin"), rw.shape)
    z = rw - rl - m                                                      # (N,)
    s = rw + rl                                                          # (N,)
    loss = np.mean(-_log_sigmoid(z) + center_coef * s * s) if N else 0.0
    dz = -_sigmoid(-z) / max(N, 1)                                       # d(-log σ(z))/dz = -σ(-z)
    ds = 2.0 * center_coef * s / max(N, 1)                               # (N,)
    return float(loss), dz + ds, -dz + ds


# ------------------------------------------------------------------------------ DPO
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge", "robust")


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
             beta=0.1, loss_type="sigmoid", label_smoothing=0.0, reference_free=False):
    """Direct Preference Optimization, Rafailov et al. 2023, eq. (7), and its variants.

    Inputs are summed sequence log-probabilities (N,) of the chosen (y_w) and rejected (y_l)
    responses under the policy π_θ and the frozen reference π_ref. With
        h = (log π_θ(y_w) - log π_ref(y_w)) - (log π_θ(y_l) - log π_ref(y_l))
    (reference_free: π_ref ≡ 1, so h = log π_θ(y_w) - log π_θ(y_l)), the per-pair loss is
        sigmoid  -(1-ε) log σ(βh) - ε log σ(-βh)                  DPO; ε > 0 is conservative DPO
        robust   [-(1-ε) log σ(βh) + ε log σ(-βh)] / (1 - 2ε)     unbiased under label-flip rate ε
        hinge    max(0, 1 - βh)                                    SLiC-HF
        ipo      (h - 1/(2β))^2                                    IPO: a squared loss, no saturation
    (ε = label_smoothing). Returns (mean loss, dL/dpolicy_chosen_logps (N,), dL/dpolicy_rejected_logps
    (N,)); since h is linear in both, d_rejected = -d_chosen."""
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"beta: expected > 0, got {beta}")
    eps = float(label_smoothing)
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"label_smoothing: expected in [0, 0.5), got {label_smoothing}")
    if eps and loss_type not in ("sigmoid", "robust"):
        raise ValueError(f"label_smoothing: only the sigmoid and robust losses use it, not {loss_type!r}")
    pw, pl = _as_float(policy_chosen_logps, "policy_chosen_logps"), _as_float(policy_rejected_logps,
                                                                             "policy_rejected_logps")
    if pw.ndim != 1:
        raise ValueError(f"policy_chosen_logps: expected shape (N,), got {pw.shape}")
    _same_shape("policy_chosen_logps", pw, policy_rejected_logps=pl)
    if reference_free:
        rw = rl = np.zeros_like(pw)
    else:
        rw, rl = _as_float(ref_chosen_logps, "ref_chosen_logps"), _as_float(ref_rejected_logps,
                                                                            "ref_rejected_logps")
        _same_shape("policy_chosen_logps", pw, ref_chosen_logps=rw, ref_rejected_logps=rl)
    N = max(pw.shape[0], 1)
    h = (pw - rw) - (pl - rl)                                            # (N,)
    z = beta * h                                                         # (N,)
    if loss_type == "sigmoid":
        losses = -(1.0 - eps) * _log_sigmoid(z) - eps * _log_sigmoid(-z)
        dz = -(1.0 - eps) * _sigmoid(-z) + eps * _sigmoid(z)             # d/dz log σ(z) = σ(-z)
        dh = beta * dz
    elif loss_type == "robust":
        losses = (-(1.0 - eps) * _log_sigmoid(z) + eps * _log_sigmoid(-z)) / (1.0 - 2.0 * eps)
        dz = (-(1.0 - eps) * _sigmoid(-z) - eps * _sigmoid(z)) / (1.0 - 2.0 * eps)
        dh = beta * dz
    elif loss_type == "hinge":
        losses = np.maximum(0.0, 1.0 - z)
        dh = np.where(z < 1.0, -beta, 0.0).astype(pw.dtype)              # subgradient 0 at the kink
    else:  # ipo: (h - τ)^2 with τ = 1/(2β), Azar et al. 2023, eq. (17)
        d = h - 1.0 / (2.0 * beta)
        losses = d * d
        dh = 2.0 * d
    dh = dh / N
    return float(np.sum(losses) / N), dh, -dh


def dpo_implicit_rewards(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                         ref_rejected_logps, beta=0.1):
    """DPO's implicit rewards r = β (log π_θ(y) - log π_ref(y)) (Rafailov et al. 2023, eq. 5 up to
    the prompt-only term) for chosen and rejected (N,) each, and the statistics worth logging."""
    r_w = beta * (np.asarray(policy_chosen_logps) - np.asarray(ref_chosen_logps))     # (N,)
    r_l = beta * (np.asarray(policy_rejected_logps) - np.asarray(ref_rejected_logps))  # (N,)
    stats = {"reward_chosen": float(np.mean(r_w)), "reward_rejected": float(np.mean(r_l)),
             "reward_accuracy": float(np.mean(r_w > r_l)), "reward_margin": float(np.mean(r_w - r_l))}
    return r_w, r_l, stats


# ------------------------------------------------------------------------------ PPO
def ppo_loss(logprobs, old_logprobs, advantages, mask, clip_eps=0.2):  # (B, T) x 4 -> float, (B, T)
    """The clipped surrogate objective, Schulman et al. 2017, eq. (7), negated to a loss:

        L = - mean_t [ min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t) ],   ρ_t = exp(log π_θ - log π_old)

    averaged over the tokens where mask is 1. The gradient w.r.t. log π_θ is -ρ_t A_t / n on tokens
    where the unclipped term is the minimum, and 0 where clipping is active (ρ > 1+ε with A > 0, or
    ρ < 1-ε with A < 0): those tokens have already moved far enough. Returns (loss, d_logprobs (B, T))."""
    lp = _as_float(logprobs, "logprobs")
    old, adv, m = (_as_float(a, n) for a, n in ((old_logprobs, "old_logprobs"), (advantages, "advantages"),
                                                (mask, "mask")))
    _same_shape("logprobs", lp, old_logprobs=old, advantages=adv, mask=m)
    if not clip_eps >= 0:
        raise ValueError(f"clip_eps: expected >= 0, got {clip_eps}")
    n = _masked_mean_denominator(m)
    ratio = np.exp(lp - old)                                             # (B, T)
    unclipped = ratio * adv                                              # (B, T)
    clipped = np.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv       # (B, T)
    loss = -np.sum(np.minimum(unclipped, clipped) * m) / n
    # d/dlp of min(...) is ρA where the unclipped term is selected (ties: it is, as torch.min does
    # not define; at a tie both branches have the same value, and inside the clip range the same slope)
    active = (unclipped <= clipped)                                      # (B, T) bool
    d_lp = np.where(active, -unclipped, 0.0) * m / n                     # (B, T)
    return float(loss), d_lp.astype(lp.dtype, copy=False)


def ppo_stats(logprobs, old_logprobs, mask, clip_eps=0.2):
    """Diagnostics of one PPO minibatch: clip fraction (share of tokens whose ratio left [1-ε, 1+ε]),
    approx-KL(π_old || π_θ) by the k3 estimator (John Schulman's recommended low-variance one) and
    the mean ratio π_θ / π_old over the masked tokens."""
    lp, old, m = (np.asarray(a, dtype=np.float64) for a in (logprobs, old_logprobs, mask))
    n = _masked_mean_denominator(m)
    ratio = np.exp(lp - old)
    clipfrac = float(np.sum((np.abs(ratio - 1.0) > clip_eps) * m) / n)
    approx_kl = float(np.sum(((ratio - 1.0) - (lp - old)) * m) / n)     # k3 with r = π_θ/π_old
    return {"clipfrac": clipfrac, "approx_kl": approx_kl, "ratio": float(np.sum(ratio * m) / n)}


def value_loss(values, old_values, returns, mask, clip_eps=0.2):  # (B, T) x 4 -> float, (B, T)
    """PPO's clipped value loss: L = 0.5 mean_t max((V - R)^2, (V_old + clip(V - V_old, -ε, ε) - R)^2)
    over the masked tokens. Clipping stops one minibatch from moving the value far from the value the
    rollout saw. Returns (loss, dL/dvalues (B, T)); the clipped branch contributes no gradient when
    it is the maximum and V lies outside the clip band (clip is flat there)."""
    v = _as_float(values, "values")
    vo, R, m = (_as_float(a, n) for a, n in ((old_values, "old_values"), (returns, "returns"), (mask, "mask")))
    _same_shape("values", v, old_values=vo, returns=R, mask=m)
    n = _masked_mean_denominator(m)
    v_clip = vo + np.clip(v - vo, -clip_eps, clip_eps)                   # (B, T)
    e1, e2 = (v - R) ** 2, (v_clip - R) ** 2                             # (B, T)
    loss = 0.5 * np.sum(np.maximum(e1, e2) * m) / n
    inside = np.abs(v - vo) <= clip_eps                                  # clip has slope 1 here
    d_v = np.where(e1 >= e2, v - R, np.where(inside, v_clip - R, 0.0)) * m / n
    return float(loss), d_v.astype(v.dtype, copy=False)


def gae(rewards, values, mask, gamma, lam):  # (B, T) x 3 -> (B, T), (B, T)
    """Generalized advantage estimation, Schulman et al. 2016, eq. (16):

        δ_t = r_t + γ V(s_{t+1}) - V(s_t),   A_t = Σ_k (γλ)^k δ_{t+k}

    computed backwards as A_t = δ_t + γλ A_{t+1}. mask (B, T) marks the tokens that are actions
    (the response); V after the last one is 0 (the episode ends), so with λ = 1 A_t equals the
    discounted return minus V_t, and with λ = 0 it is the one-step TD error. Masked positions get
    A = 0. Returns (advantages, returns = advantages + values), both (B, T)."""
    r = _as_float(rewards, "rewards")
    v, m = _as_float(values, "values"), _as_float(mask, "mask")
    _same_shape("rewards", r, values=v, mask=m)
    if r.ndim != 2:
        raise ValueError(f"rewards: expected shape (B, T), got {r.shape}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma, lam: expected in [0, 1], got {gamma}, {lam}")
    B, T = r.shape
    adv = np.zeros_like(r)                                               # (B, T)
    next_adv = np.zeros(B, dtype=r.dtype)                                # A_{t+1}
    next_value = np.zeros(B, dtype=r.dtype)                              # V(s_{t+1}), 0 past the end
    for t in reversed(range(T)):
        delta = r[:, t] + gamma * next_value - v[:, t]                   # (B,)
        a = (delta + gamma * lam * next_adv) * m[:, t]
        adv[:, t] = a
        # a masked position passes nothing back: the next action's state is the one after it
        next_adv = np.where(m[:, t] > 0, a, next_adv)
        next_value = np.where(m[:, t] > 0, v[:, t], next_value)
    return adv, (adv + v) * m


def whiten(x, mask, shift_mean=True, eps=1e-8):  # (B, T) -> (B, T)
    """(x - mean) / std over the tokens where mask is 1 (masked positions become 0). PPO whitens
    advantages per batch so the step size does not depend on the reward scale."""
    x, m = _as_float(x, "x"), _as_float(mask, "mask")
    _same_shape("x", x, mask=m)
    n = _masked_mean_denominator(m)
    mean = np.sum(x * m) / n
    var = np.sum((x - mean) ** 2 * m) / n
    out = (x - mean) / np.sqrt(var + eps) if shift_mean else x / np.sqrt(var + eps)
    return out * m


# ------------------------------------------------------------------------------ KL estimators
KL_KINDS = ("k1", "k2", "k3")


def kl_estimate(logprobs, ref_logprobs, kind="k1"):  # (...), (...) -> (...), (...)
    """Single-sample estimators of KL(π_θ || π_ref) from tokens sampled from π_θ (Schulman 2020),
    with log r = log π_ref(y) - log π_θ(y):
        k1 = -log r                   unbiased, can be negative per token
        k2 = (log r)^2 / 2            biased, >= 0, low variance
        k3 = (r - 1) - log r          unbiased, >= 0 (since log r <= r - 1), low variance
    Returns (per-token estimate, its derivative w.r.t. logprobs), shapes like logprobs."""
    if kind not in KL_KINDS:
        raise ValueError(f"kind: expected one of {KL_KINDS}, got {kind!r}")
    lp, ref = _as_float(logprobs, "logprobs"), _as_float(ref_logprobs, "ref_logprobs")
    _same_shape("logprobs", lp, ref_logprobs=ref)
    log_r = ref - lp
    if kind == "k1":
        return -log_r, np.ones_like(lp)
    if kind == "k2":
        return 0.5 * log_r * log_r, -log_r
    r = np.exp(log_r)
    # expm1 keeps (r - 1) - log r exact for tiny |log r|, where r - 1 would cancel
    return np.expm1(log_r) - log_r, 1.0 - r
