"""Reward model: the Transformer with a scalar head, trained on human (here: programmatic) preference
pairs with the Bradley-Terry loss -- InstructGPT stage 2 (Ouyang et al. 2022, Sec. 3.5, eq. 1).

ScalarHeadModel puts a linear head v_t = w . h_t + b on the final hidden state h_t (B, T, C) of a
Transformer (the LM head is dropped). The same class serves two roles:
  - the reward model r(x, y) = v at the LAST token of prompt + response (the only position that has
    read the whole response under causal attention);
  - PPO's value model V(s_t) = v_t at EVERY token (ppo.py), initialised from the reward model, as
    InstructGPT does.
Gradients are hand-written: dL/dv -> (dL/dw, dL/db, dL/dh = dL/dv * w) -> Transformer.backward(caches,
dhidden=...). Unlike dpo.py, which turns the policy itself into a classifier, the reward model is a
separate network that PPO then queries.
"""
import copy
from dataclasses import dataclass

import numpy as np

from .batch import pair_batch, score_pairs, train_on_pairs
from .losses import bradley_terry_loss

HEAD_W, HEAD_B = "score.weight", "score.bias"   # the Hugging Face name of a sequence-classification head


class ScalarHeadModel:
    """A Transformer body plus a scalar head. .params holds the body's arrays and the head's, all
    float32 and updated in place by AdamW (the body's dict and this one share the same arrays)."""

    def __init__(self, body, head_w=None, head_b=None, seed=0):
        C = body.config.d_model
        dtype = next(iter(body.params.values())).dtype
        rng = np.random.default_rng(seed)
        # std 1/sqrt(C + 1) as TRL's reward heads: rewards start O(1), not O(sqrt(C))
        w = rng.standard_normal(C) / np.sqrt(C + 1) if head_w is None else np.asarray(head_w)
        b = np.zeros(1) if head_b is None else np.asarray(head_b).reshape(1)
        if w.shape != (C,):
            raise ValueError(f"head_w: expected shape ({C},), got {w.shape}")
        self.body = body
        self.head = {HEAD_W: np.ascontiguousarray(w, dtype=dtype), HEAD_B: np.ascontiguousarray(b, dtype=dtype)}
        self.params = {**body.params, **self.head}

    @classmethod
    def from_model(cls, model, seed=0):
        """A fresh copy of `model` (e.g. the SFT model) as the body, with a new scalar head."""
        return cls(copy.deepcopy(model), seed=seed)

    def copy(self):
        return ScalarHeadModel(copy.deepcopy(self.body), self.head[HEAD_W].copy(), self.head[HEAD_B].copy())

    @property
    def config(self):
        return self.body.config

    def num_params(self):
        return sum(int(a.size) for a in self.params.values())

    def nbytes(self):  # bytes of .params: what PPOTrainer.memory asks of every reward model
        return sum(int(a.nbytes) for a in self.params.values())

    # --------------------------------------------------------------------- per-token values
    def values(self, tokens):  # (B, T) -> (B, T), no gradients
        """v_t = w . h_t + b at every position (the value model's V(s_t))."""
        return self.forward_train(tokens)[0]

    def forward_train(self, tokens):  # (B, T) -> values (B, T), cache
        _, hidden, caches = self.body.forward_train(tokens)                  # hidden (B, T, C)
        v = hidden @ self.head[HEAD_W] + self.head[HEAD_B][0]                # (B, T)
        return v, (hidden, caches)

    def backward(self, dvalues, cache):  # dL/dv (B, T) -> {name: grad} for body and head
        hidden, caches = cache
        dvalues = np.asarray(dvalues, dtype=hidden.dtype)
        dw = np.einsum("bt,btc->c", dvalues, hidden)                         # (C,)
        db = np.array([dvalues.sum()], dtype=hidden.dtype)                   # (1,)
        dhidden = dvalues[..., None] * self.head[HEAD_W]                     # (B, T, C)
        grads = self.body.backward(caches, dhidden=dhidden)                  # the LM head gets 0
        grads[HEAD_W], grads[HEAD_B] = dw, db
        return grads

    # --------------------------------------------------------------------- rewards
    def rewards(self, tokens, last):  # (B, T), (B,) -> (B,)
        """r = v at index last[b] of each row (the final token of prompt + response)."""
        v = self.values(tokens)
        return v[np.arange(len(last)), last]

    def rewards_train(self, tokens, last):  # -> r (B,), backward(dr (B,)) -> grads
        v, cache = self.forward_train(tokens)
        rows = np.arange(len(last))

        def backward(dr):
            dv = np.zeros_like(v)                                            # (B, T): only the last token
            dv[rows, last] = dr
            return self.backward(dv, cache)

        return v[rows, last], backward


def last_index(mask):  # (B, T) response mask -> (B,) index of each row's final response token
    """Rows are prompt + response + right padding, so the final response token is the last 1."""
    mask = np.asarray(mask)
    T = mask.shape[1]
    return T - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)


# ------------------------------------------------------------------------------ preference data
def rankings_to_pairs(prompt, ranked_responses):
    """InstructGPT's K-way rankings: K responses ordered best first -> all C(K, 2) pairs
    (prompt, better, worse). The paper trains on all pairs of one prompt in the same batch; here the
    caller decides (the pairs are returned in rank order)."""
    K = len(ranked_responses)
    return [(prompt, ranked_responses[i], ranked_responses[j]) for i in range(K) for j in range(i + 1, K)]


def _pair_arrays(pairs, pad_id):
    N = len(pairs)
    tokens, mask = pair_batch(pairs, pad_id)                                 # (2N, T): chosen, then rejected
    if np.any(mask.sum(axis=1) == 0):
        raise ValueError("pairs: every response needs at least one token")
    margins = np.array([p[3] if len(p) > 3 else 0.0 for p in pairs], dtype=np.float64)
    return tokens, last_index(mask), margins, N


def pair_rewards(rm, pairs, pad_id=0, chunk=64):  # -> r_chosen (N,), r_rejected (N,)
    def score(part):  # n pairs -> (2n,) rewards, chosen then rejected
        tokens, last, _, _ = _pair_arrays(part, pad_id)
        return rm.rewards(tokens, last)

    return score_pairs(score, pairs, chunk)


def pair_accuracy(rm, pairs, pad_id=0):
    """Share of pairs where the reward model scores the chosen response higher."""
    rw, rl = pair_rewards(rm, pairs, pad_id)
    return float(np.mean(rw > rl))


@dataclass
class RewardConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32           # pairs per step
    epochs: int = 1
    center_coef: float = 0.0       # reward centring (Eisenstein et al. 2023); 0.01 is typical
    max_grad_norm: float = 1.0
    pad_id: int = 0
    seed: int = 0


def reward_step(rm, pairs, cfg):
    """Bradley-Terry loss of one minibatch of pairs (prompt, chosen, rejected[, margin]) and the
    gradients through the head and the whole body."""
    tokens, last, margins, N = _pair_arrays(pairs, cfg.pad_id)
    r, backward = rm.rewards_train(tokens, last)                             # (2N,)
    loss, d_w, d_l = bradley_terry_loss(r[:N].astype(np.float64), r[N:].astype(np.float64),
                                        margin=margins, center_coef=cfg.center_coef)
    grads = backward(np.concatenate([d_w, d_l]))
    return loss, grads, {"accuracy": float(np.mean(r[:N] > r[N:])), "margin": float(np.mean(r[:N] - r[N:])),
                         "reward_mean": float(np.mean(r))}


def train_reward_model(rm, pairs, cfg=None, val_pairs=None, log=None):
    """Train rm in place on preference pairs; returns the per-step history (loss, accuracy, margin)
    with val_accuracy after each epoch when val_pairs are given."""
    cfg = cfg or RewardConfig()
    if not pairs:
        raise ValueError("pairs: expected at least one (prompt, chosen, rejected) pair")
    end_of_epoch = (lambda: {"val_accuracy": pair_accuracy(rm, val_pairs, cfg.pad_id)}) if val_pairs else None
    return train_on_pairs(rm.params, len(pairs), lambda idx: reward_step(rm, [pairs[i] for i in idx], cfg), cfg,
                          end_of_epoch=end_of_epoch, log=log)
