"""PPO for language models, InstructGPT style (Ouyang et al. 2022, Sec. 3.5 and eq. 2; Ziegler et
al. 2019; Stiennon et al. 2020), with the PPO algorithm of Schulman et al. 2017.

One iteration of PPOTrainer.step(prompts):
  1. rollout   sample a response per prompt from π_θ with a KV cache (rollout.py);
  2. score     r(x, y) from the reward model at the final token; log-probs of π_θ (now "π_old"),
               of the frozen reference π_ref (the SFT model), and values V(s_t) from the value model;
  3. rewards   per token: -β KL_t (k1 = log π_old - log π_ref, or k3) on every response token, plus
               r(x, y) on the last one -- InstructGPT's objective r - β log(π/π_ref), spread over tokens;
  4. GAE(γ, λ) advantages (losses.gae), whitened over the batch; returns = advantages + values;
  5. update    several epochs over shuffled minibatches: the clipped surrogate L^CLIP (losses.ppo_loss)
               minus an entropy bonus for the policy, the clipped value loss (losses.value_loss) for
               the value model, each with its own AdamW and gradient clipping;
  6. β         the adaptive KL controller (Ziegler et al. 2019, Sec. 2.2) moves β to keep the
               measured KL near its target.

Four models live in memory: policy, reference, reward and value (DPO needs two, dpo.py). The
reference and reward models are only ever run forward.
"""
import copy
from dataclasses import dataclass

import numpy as np

from ..optim import AdamW, clip_grad_norm
from .batch import collate, minibatches
from .logprobs import logprobs_with_backward, model_logprobs, shifted
from .losses import KL_KINDS, gae, kl_estimate, ppo_loss, ppo_stats, value_loss, whiten
from .reward import ScalarHeadModel, last_index
from .rollout import sample_responses


class AdaptiveKLController:
    """β_{t+1} = β_t (1 + K_β e_t),  e_t = clip(KL_t / KL_target - 1, -0.2, 0.2),  K_β = n / horizon
    (Ziegler et al. 2019, eq. 2): a proportional controller that raises β when the policy drifts
    further from the reference than the target, and lowers it when it stays closer."""

    def __init__(self, init_kl_coef, target, horizon):
        if not (init_kl_coef >= 0 and target > 0 and horizon > 0):
            raise ValueError(f"init_kl_coef, target, horizon: expected >= 0, > 0, > 0, got "
                             f"{init_kl_coef}, {target}, {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl, n_steps):
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef):
        self.value = float(kl_coef)

    def update(self, current_kl, n_steps):
        return self.value


@dataclass
class PPOConfig:
    max_new_tokens: int = 16
    temperature: float = 1.0       # sampling temperature of the rollouts (1: sample π_θ exactly)
    stop_id: int = None            # end-of-response token
    ppo_epochs: int = 4            # passes over each rollout batch
    minibatch_size: int = 16
    clip_eps: float = 0.2          # ε of L^CLIP
    value_clip: float = 0.2        # ε of the clipped value loss
    gamma: float = 1.0             # γ: no discounting within a response (InstructGPT)
    lam: float = 0.95              # λ of GAE
    entropy_coef: float = 0.0      # weight of the entropy bonus
    init_kl_coef: float = 0.1      # β at the start
    adaptive_kl: bool = True
    target_kl: float = 1.0         # nats per response, the adaptive controller's set point
    kl_horizon: float = 2000.0     # K_β = rollout size / horizon
    kl_estimator: str = "k1"       # "k1" (unbiased, the InstructGPT penalty) or "k3" (>= 0 per token)
    whiten_advantages: bool = True
    lr: float = 1e-5               # policy learning rate
    value_lr: float = 1e-4
    max_grad_norm: float = 1.0
    pad_id: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator: expected 'k1' or 'k3' (of {KL_KINDS}), got {self.kl_estimator!r}")
        if self.minibatch_size < 1 or self.ppo_epochs < 1:
            raise ValueError(f"minibatch_size, ppo_epochs: expected >= 1, got {self.minibatch_size}, "
                             f"{self.ppo_epochs}")


def explained_variance(pred, target, mask):
    """1 - Var(target - pred) / Var(target) over masked tokens: 1 is a perfect value function,
    0 no better than a constant, < 0 worse."""
    m = mask > 0
    var = np.var(target[m])
    return float(1.0 - np.var(target[m] - pred[m]) / var) if var > 0 else float("nan")


def param_bytes(model):
    """Bytes of model.params, the float arrays an optimizer updates (each also needs AdamW's two
    moments of the same size). Quantized layers are not counted: quant.weight_bytes counts them."""
    return sum(int(a.nbytes) for a in model.params.values())


@dataclass
class Rollout:
    tokens: np.ndarray       # (B, T) int64, prompt + response + padding
    mask: np.ndarray         # (B, T-1) float32: 1 where token t+1 is a response token (an action)
    old_logprobs: np.ndarray  # (B, T-1) log π_old of each token
    ref_logprobs: np.ndarray  # (B, T-1) log π_ref
    values: np.ndarray       # (B, T-1) V(s_t) before each action
    scores: np.ndarray       # (B,) reward-model score r(x, y)
    rewards: np.ndarray      # (B, T-1) per-token rewards (KL penalty + score at the end)
    advantages: np.ndarray   # (B, T-1)
    returns: np.ndarray      # (B, T-1)
    responses: list          # B id lists


class PPOTrainer:
    """Holds the four models and the optimizers. policy is trained in place; ref defaults to a
    frozen copy of the policy as it is now (the SFT model); value defaults to a copy of the reward
    model (InstructGPT initialises the value function from the RM)."""

    def __init__(self, policy, reward_model, cfg=None, ref=None, value_model=None):
        self.cfg = cfg or PPOConfig()
        self.policy = policy
        self.ref = ref if ref is not None else copy.deepcopy(policy)
        self.reward_model = reward_model
        self.value_model = value_model if value_model is not None else reward_model.copy()
        if not isinstance(self.value_model, ScalarHeadModel):
            raise TypeError(f"value_model: expected ScalarHeadModel, got {type(self.value_model).__name__}")
        c = self.cfg
        self.kl_ctl = (AdaptiveKLController(c.init_kl_coef, c.target_kl, c.kl_horizon) if c.adaptive_kl
                       else FixedKLController(c.init_kl_coef))
        self.opt = AdamW(policy.params, lr=c.lr, weight_decay=0.0, betas=(0.9, 0.95))
        self.value_opt = AdamW(self.value_model.params, lr=c.value_lr, weight_decay=0.0, betas=(0.9, 0.95))
        self.rng = np.random.default_rng(c.seed)
        self.iteration = 0

    def memory(self):
        """{role: bytes of its parameters} for the four models PPO holds."""
        return {"policy": param_bytes(self.policy), "reference": param_bytes(self.ref),
                "reward": self.reward_model.nbytes(), "value": self.value_model.nbytes()}

    # --------------------------------------------------------------------- experience
    def rollout(self, prompts):
        c = self.cfg
        responses = sample_responses(self.policy, prompts, c.max_new_tokens, self.rng, c.temperature,
                                     stop_id=c.stop_id)
        return self.score(prompts, responses)

    def score(self, prompts, responses):
        """Everything PPO needs about a batch of (prompt, response) pairs, computed without gradients."""
        c = self.cfg
        tokens, resp_mask = collate(prompts, responses, c.pad_id)            # (B, T)
        if np.any(resp_mask.sum(axis=1) == 0):
            raise ValueError("responses: every response needs at least one token")
        _, mask = shifted(tokens, resp_mask)                                 # (B, T-1) actions
        old = model_logprobs(self.policy, tokens)                            # (B, T-1)
        ref = model_logprobs(self.ref, tokens)                               # (B, T-1)
        last = last_index(resp_mask)                                         # (B,) in token positions
        scores = self.reward_model.rewards(tokens, last)                     # (B,)
        values = self.value_model.values(tokens)[:, :-1] * mask             # V(s_t), state before token t+1
        kl, _ = kl_estimate(old.astype(np.float64), ref.astype(np.float64), c.kl_estimator)
        rewards = -self.kl_ctl.value * kl * mask                             # (B, T-1)
        rewards[np.arange(len(last)), last - 1] += scores                    # the score lands on the last action
        adv, ret = gae(rewards, values.astype(np.float64), mask, c.gamma, c.lam)
        if c.whiten_advantages:
            adv = whiten(adv, mask)
        return Rollout(tokens, mask, old, ref, values, scores, rewards, adv, ret, responses)

    # --------------------------------------------------------------------- optimisation
    def train_minibatch(self, ro, idx):
        """One gradient step of the policy and one of the value model on rows idx of a rollout."""
        c = self.cfg
        T = int(ro.mask[idx].sum(axis=0).nonzero()[0].max()) + 2             # trim padding columns
        tokens, m = ro.tokens[idx, :T], ro.mask[idx, :T - 1]
        old, adv = ro.old_logprobs[idx, :T - 1], ro.advantages[idx, :T - 1]
        lp, H, backward = logprobs_with_backward(self.policy, tokens, entropy=c.entropy_coef > 0)
        pg_loss, d_lp = ppo_loss(lp.astype(np.float64), old, adv, m, c.clip_eps)
        n = max(float(m.sum()), 1.0)
        stats = ppo_stats(lp, old, m, c.clip_eps)
        dH = None
        if H is not None:  # loss -= c_H * mean entropy: the bonus keeps exploration alive
            stats["entropy"] = float(np.sum(H * m) / n)
            dH = -c.entropy_coef * m / n
        grads = backward(d_lp, dH)
        stats["grad_norm"] = clip_grad_norm(grads, c.max_grad_norm)
        self.opt.step(grads)
        # value model: V(s_t) at positions 0..T-2, trained towards the GAE returns
        v, cache = self.value_model.forward_train(tokens)                    # (b, T)
        vf_loss, dv = value_loss(v[:, :-1].astype(np.float64), ro.values[idx, :T - 1], ro.returns[idx, :T - 1],
                                 m, c.value_clip)
        dfull = np.zeros(v.shape, dtype=np.float64)
        dfull[:, :-1] = dv
        vgrads = self.value_model.backward(dfull, cache)
        clip_grad_norm(vgrads, c.max_grad_norm)
        self.value_opt.step(vgrads)
        stats.update(pg_loss=pg_loss, vf_loss=vf_loss)
        return stats

    def step(self, prompts):
        """One PPO iteration on a list of prompts (id lists). Returns the iteration's statistics:
        reward (mean score), kl (mean Σ_t k1 per response vs the reference), kl_k3, kl_coef, pg_loss,
        vf_loss, clipfrac, approx_kl (π_old -> π_θ), ratio (mean π_θ/π_old as each minibatch saw
        it), explained variance of the values, entropy and response length."""
        c = self.cfg
        ro = self.rollout(prompts)
        B = len(prompts)
        k1 = np.sum((ro.old_logprobs - ro.ref_logprobs) * ro.mask, axis=1)   # (B,) sequence KL estimates
        k3 = np.sum(kl_estimate(ro.old_logprobs.astype(np.float64), ro.ref_logprobs, "k3")[0] * ro.mask, axis=1)
        records = []
        for _ in range(c.ppo_epochs):
            for idx in minibatches(B, c.minibatch_size, self.rng):
                records.append(self.train_minibatch(ro, idx))
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(float(np.mean(k1)), B)
        self.iteration += 1
        mean = lambda k: float(np.mean([r[k] for r in records if k in r])) if any(k in r for r in records) \
            else float("nan")  # noqa: E731
        return {"iteration": self.iteration, "reward": float(np.mean(ro.scores)), "kl": float(np.mean(k1)),
                "kl_k3": float(np.mean(k3)), "kl_coef": kl_coef, "pg_loss": mean("pg_loss"),
                "vf_loss": mean("vf_loss"), "clipfrac": mean("clipfrac"), "approx_kl": mean("approx_kl"),
                "ratio": mean("ratio"),
                "entropy": mean("entropy"),
                "explained_variance": explained_variance(ro.values, ro.returns, ro.mask),
                "response_length": float(np.mean(ro.mask.sum(axis=1)))}
