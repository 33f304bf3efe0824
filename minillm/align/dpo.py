"""Direct Preference Optimization training (Rafailov et al. 2023, Sec. 4 and eq. 7).

DPO skips the reward model and the RL loop of ppo.py: the policy π_θ is trained directly on
preference pairs (x, y_w, y_l) with the classification loss losses.dpo_loss on summed sequence
log-probabilities, against a frozen reference π_ref (the SFT model). Since π_ref never changes, its
log-probs are computed once before training (precompute_reference_logps) and the reference model
can then be dropped: at training time DPO holds one model, PPO four.

The gradient path: dL/d(log π(y)) from dpo_loss -> per token (times the response mask) ->
logprobs.token_logprobs_backward -> dlogits -> model.backward.

Diagnostics (diagnose): DPO only constrains the *difference* of the chosen and rejected log-ratios,
so the loss can fall towards 0 while the chosen response itself becomes less likely (both log-probs
fall, the rejected one faster; Pal et al. 2024 "Smaug", Razin et al. 2024 "likelihood
displacement"). diagnose() flags that, as well as reward accuracy saturating at 1 with growing
margins (over-optimisation on a small preference set).
"""
from dataclasses import dataclass

import numpy as np

from .batch import pair_batch, score_pairs, train_on_pairs
from .logprobs import logprobs_with_backward, sequence_logprobs, shifted
from .losses import DPO_LOSS_TYPES, dpo_implicit_rewards, dpo_loss


# diagnose()'s thresholds, on means over the first and last `window` steps of a run
DISPLACEMENT_NATS = 1.0       # a fall of log π(y_w) larger than this (nats per response) is displacement
COLLAPSED_LOSS = 0.05         # a DPO loss below this: the pairs are separated by a wide margin (sigmoid
                              # loss log(1 + e^-z) < 0.05 means a margin z above about 3)
MARGIN_GROWTH = 2.0           # the implicit-reward margin more than doubled over the run ...
MIN_MARGIN = 1.0              # ... and ended above this (nats), with reward accuracy saturated at 1
MARGIN_FLOOR = 1e-3           # a start margin this small counts as this, so that "doubled" is meaningful


@dataclass
class DPOConfig:
    beta: float = 0.1              # β: strength of the implicit KL constraint to π_ref
    loss_type: str = "sigmoid"     # "sigmoid" (DPO) | "ipo" | "hinge" | "robust"
    label_smoothing: float = 0.0   # ε: conservative DPO (sigmoid) or robust DPO's assumed flip rate
    reference_free: bool = False   # π_ref ≡ 1 (no reference model at all)
    sft_coef: float = 0.0          # α: + α * mean per-token NLL of y_w (RPO, Pang et al. 2024, eq. 2)
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 16           # pairs per step (2x sequences per forward pass)
    epochs: int = 1
    max_grad_norm: float = 1.0
    pad_id: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type: expected one of {DPO_LOSS_TYPES}, got {self.loss_type!r}")
        if not self.beta > 0:
            raise ValueError(f"beta: expected > 0, got {self.beta}")


def _check_pairs(pairs):
    if not pairs:
        raise ValueError("pairs: expected a non-empty list of (prompt_ids, chosen_ids, rejected_ids)")
    for i, p in enumerate(pairs):
        if len(p) != 3:
            raise ValueError(f"pairs[{i}]: expected (prompt_ids, chosen_ids, rejected_ids), got {len(p)} items")


def precompute_reference_logps(ref_model, pairs, pad_id=0, chunk=64):  # -> (N,), (N,) float64
    """log π_ref(y_w | x) and log π_ref(y_l | x) for every pair, computed once."""
    _check_pairs(pairs)

    def score(part):  # n pairs -> (2n,) summed log-probs, chosen then rejected
        tokens, mask = pair_batch(part, pad_id)
        return sequence_logprobs(ref_model, tokens, mask, chunk=2 * len(part))

    return score_pairs(score, pairs, chunk)


def dpo_step(policy, pairs, ref_chosen, ref_rejected, cfg):
    """Loss, gradients and statistics of one DPO minibatch. ref_*: (N,) reference log-probs."""
    tokens, mask = pair_batch(pairs, cfg.pad_id)                         # (2N, T)
    N = len(pairs)
    logp, _, backward = logprobs_with_backward(policy, tokens)           # (2N, T-1)
    _, m = shifted(tokens, mask)                                         # (2N, T-1)
    seq = np.sum(logp.astype(np.float64) * m, axis=1)                    # (2N,) summed log π(y|x)
    pw, pl = seq[:N], seq[N:]
    loss, d_w, d_l = dpo_loss(pw, pl, ref_chosen, ref_rejected, beta=cfg.beta, loss_type=cfg.loss_type,
                              label_smoothing=cfg.label_smoothing, reference_free=cfg.reference_free)
    dpo_value = loss
    dseq = np.concatenate([d_w, d_l])                                    # (2N,)
    dtok = dseq[:, None] * m                                             # (2N, T-1): each response token
    if cfg.sft_coef:
        # α * mean_i [-log π(y_w,i) / |y_w,i|]: anchors the chosen response's likelihood, the
        # standard remedy for likelihood displacement (see diagnose)
        len_w = np.maximum(m[:N].sum(axis=1), 1.0)                       # (N,)
        nll = -pw / len_w                                                # (N,)
        loss = loss + cfg.sft_coef * float(np.mean(nll))
        dtok[:N] += (-cfg.sft_coef / (N * len_w))[:, None] * m[:N]
    grads = backward(dtok.astype(logp.dtype))
    zeros = np.zeros(N)
    _, _, stats = dpo_implicit_rewards(pw, pl, zeros if cfg.reference_free else ref_chosen,
                                       zeros if cfg.reference_free else ref_rejected, cfg.beta)
    stats.update(loss=loss, dpo_loss=dpo_value, logp_chosen=float(np.mean(pw)), logp_rejected=float(np.mean(pl)))
    return loss, grads, stats


def dpo_train(policy, pairs, cfg=None, ref_model=None, ref_logps=None, eval_fn=None, log=None):
    """Train `policy` in place with DPO on pairs [(prompt_ids, chosen_ids, rejected_ids)].

    The reference log-probs come from ref_logps=(chosen (N,), rejected (N,)) if given, else from
    ref_model (precomputed once), unless cfg.reference_free. eval_fn(policy) -> dict is called after
    every epoch; log(record) receives each step's statistics. Returns (history, warnings) where
    history is the list of per-step records and warnings is diagnose(history)."""
    cfg = cfg or DPOConfig()
    _check_pairs(pairs)
    if cfg.reference_free:
        ref_chosen = ref_rejected = np.zeros(len(pairs))
    elif ref_logps is not None:
        ref_chosen, ref_rejected = (np.asarray(a, dtype=np.float64) for a in ref_logps)
        if ref_chosen.shape != (len(pairs),) or ref_rejected.shape != (len(pairs),):
            raise ValueError(f"ref_logps: expected two arrays of shape ({len(pairs)},), got "
                             f"{ref_chosen.shape}, {ref_rejected.shape}")
    elif ref_model is not None:
        ref_chosen, ref_rejected = precompute_reference_logps(ref_model, pairs, cfg.pad_id)
    else:
        raise ValueError("ref_model: DPO needs a reference (ref_model or ref_logps) unless reference_free")
    history = train_on_pairs(
        policy.params, len(pairs),
        lambda idx: dpo_step(policy, [pairs[i] for i in idx], ref_chosen[idx], ref_rejected[idx], cfg), cfg,
        end_of_epoch=None if eval_fn is None else (lambda: eval_fn(policy)), log=log)
    return history, diagnose(history)


def diagnose(history, window=5):
    """Warnings about DPO's known failure modes, from the per-step records of dpo_train:
      - loss falling while log π(y_w) falls: the margin grows by pushing y_l down faster than y_w,
        so probability mass leaves *both* responses (likelihood displacement);
      - reward accuracy saturated at 1 with a still-growing margin: the policy is overfitting the
        preference set and drifting from the reference (raise β or stop earlier)."""
    if len(history) < 2 * window:
        return []
    first, last = history[:window], history[-window:]
    mean = lambda rows, k: float(np.mean([r.get(k, r.get("loss")) for r in rows]))  # noqa: E731
    out = []
    loss0, loss1 = mean(first, "dpo_loss"), mean(last, "dpo_loss")  # the preference term alone
    c0, c1 = mean(first, "logp_chosen"), mean(last, "logp_chosen")
    if loss1 < loss0 and c1 < c0 - DISPLACEMENT_NATS:
        out.append(f"loss fell {loss0:.3f} -> {loss1:.3f} while the chosen log-prob fell {c0:.2f} -> {c1:.2f}: "
                   f"the margin is being won by lowering both responses (likelihood displacement); "
                   f"consider a larger beta, an SFT term on y_w, or fewer steps")
    if loss1 < COLLAPSED_LOSS:
        out.append(f"loss collapsed to {loss1:.4f}: the pairs are separated by a wide margin; check the "
                   f"KL to the reference and the chosen log-prob ({c1:.2f})")
    acc1, m0, m1 = mean(last, "reward_accuracy"), mean(first, "reward_margin"), mean(last, "reward_margin")
    if acc1 == 1.0 and m1 > MARGIN_GROWTH * max(m0, MARGIN_FLOOR) and m1 > MIN_MARGIN:
        out.append(f"reward accuracy is 1.0 and the implicit-reward margin keeps growing ({m0:.2f} -> {m1:.2f}): "
                   f"over-optimisation of the preference set")
    return out
