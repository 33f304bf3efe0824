"""Optimisation: AdamW with parameter groups, global-norm gradient clipping, learning-rate schedules.

AdamW is Adam with decoupled weight decay (Loshchilov & Hutter 2019, Alg. 2); the update itself is
the fused kernel minillm.kernels.adamw_step. Following GPT-2/nanoGPT practice, matrices decay and
norms, biases and embeddings do not (default_param_groups). Schedules are plain functions of the
step, so a resumed run needs no scheduler state.
"""
import math

import numpy as np

from . import kernels


def default_param_groups(params, weight_decay):
    """Two groups: 2-D weight matrices decay; vectors (norms, biases) and embedding tables do not."""
    def is_embedding(name):
        return name.endswith(("wte.weight", "wpe.weight", "embed_tokens.weight"))
    decay = [n for n, p in params.items() if p.ndim >= 2 and not is_embedding(n)]
    no_decay = [n for n in params if n not in set(decay)]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


class AdamW:
    """AdamW over a dict of float32 arrays, updated in place.

    groups: list of {"params": [names], "weight_decay": float, "lr_scale": float (default 1)};
    every parameter must be in exactly one group. Default: default_param_groups(params, weight_decay).
    State (m, v, step) is explicit and round-trips through state_dict()/load_state_dict()."""

    def __init__(self, params, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, groups=None):
        if not (lr >= 0):
            raise ValueError(f"lr: expected >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: expected each in [0, 1), got {betas}")
        self.params, self.lr, self.betas, self.eps = params, lr, tuple(betas), eps
        self.groups = groups if groups is not None else default_param_groups(params, weight_decay)
        seen = [n for g in self.groups for n in g["params"]]
        if sorted(seen) != sorted(params):
            missing, dup = set(params) - set(seen), {n for n in seen if seen.count(n) > 1}
            raise ValueError(f"groups: every parameter must be in exactly one group "
                             f"(missing {sorted(missing)[:3]}, repeated {sorted(dup)[:3]})")
        for n, p in params.items():
            if p.dtype != np.float32 or not p.flags.c_contiguous:
                raise ValueError(f"params[{n!r}]: expected a C-contiguous float32 array")
        self.m = {n: np.zeros_like(p) for n, p in params.items()}
        self.v = {n: np.zeros_like(p) for n, p in params.items()}
        self.step_count = 0

    def step(self, grads, lr=None, grad_scale=1.0):
        """Apply one update from grads (dict like params). lr overrides the base lr (schedules).
        grad_scale multiplies every gradient as the update reads it, grads left unchanged: gradient
        clipping in the same pass, step(grads, grad_scale=clip_coefficient(global_grad_norm(grads),
        max_norm)) == clip_grad_norm(grads, max_norm); step(grads), without one more pass over them."""
        lr = self.lr if lr is None else lr
        self.step_count += 1
        b1, b2 = self.betas
        for group in self.groups:
            glr, wd = lr * group.get("lr_scale", 1.0), group["weight_decay"]
            for n in group["params"]:
                p, g = self.params[n], grads[n]
                if g.shape != p.shape:
                    raise ValueError(f"grads[{n!r}]: expected shape {p.shape}, got {g.shape}")
                g = np.ascontiguousarray(g, dtype=np.float32)
                kernels.adamw_step(p, g, self.m[n], self.v[n], glr, b1, b2, self.eps, wd, self.step_count,
                                   grad_scale)

    def state_dict(self):
        """{"step": int, "m.<name>": array, "v.<name>": array} -- arrays safetensors can store."""
        state = {f"m.{n}": a for n, a in self.m.items()}
        state.update({f"v.{n}": a for n, a in self.v.items()})
        return self.step_count, state

    def load_state_dict(self, step, state):
        for n, p in self.params.items():
            for key, store in ((f"m.{n}", self.m), (f"v.{n}", self.v)):
                if key not in state or state[key].shape != p.shape:
                    raise ValueError(f"optimizer state: missing or misshapen {key!r}")
                store[n] = np.ascontiguousarray(state[key], dtype=np.float32)
        self.step_count = int(step)


def global_grad_norm(grads):
    """sqrt(sum of squares over every gradient), accumulated in float64."""
    return math.sqrt(sum(kernels.sum_squares(g) for g in grads.values()))


def clip_coefficient(norm, max_norm):
    """torch.nn.utils.clip_grad_norm_'s factor min(1, max_norm / (norm + 1e-6)) for a global norm."""
    return min(1.0, max_norm / (norm + 1e-6))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most max_norm (Pascanu et al. 2013),
    with torch.nn.utils.clip_grad_norm_'s rule coef = min(1, max_norm / (norm + 1e-6)).
    Returns the norm before clipping."""
    norm = global_grad_norm(grads)
    coef = clip_coefficient(norm, max_norm)
    if coef < 1.0:
        for g in grads.values():
            g *= np.asarray(coef, dtype=g.dtype)
    return norm


def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warmup to max_lr over warmup_steps, then cosine decay to min_lr at total_steps
    (Loshchilov & Hutter 2017, as used by GPT-3 and Chinchilla). step counts from 0."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * frac))


def warmup_stable_decay(step, max_lr, warmup_steps, total_steps, decay_frac=0.2, min_lr=0.0):
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM): linear warmup, a constant plateau at max_lr,
    then a linear decay to min_lr over the last decay_frac of training."""
    decay_start = total_steps - int(round(decay_frac * total_steps))
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step < decay_start:
        return max_lr
    if step >= total_steps:
        return min_lr
    frac = (step - decay_start) / max(1, total_steps - decay_start)
    return max_lr + (min_lr - max_lr) * frac


SCHEDULES = {"cosine": warmup_cosine, "wsd": warmup_stable_decay}
