"""Per-token log-probabilities and entropy from logits, with their backward passes: the bridge between
the sequence-level losses of losses.py and the model's logits.

  log π(y_t | y_<t) = z_t[y_t] - logsumexp(z_t)          (log-softmax, then gather the target)
  d/dz_t = g_t (onehot(y_t) - softmax(z_t))               for an upstream gradient g_t
  H_t = -Σ_v p_v log p_v,   dH_t/dz_t = -p (log p + H_t)  (the entropy bonus of PPO)

Where nn/loss.py fuses the mean cross-entropy (the same quantity, averaged, negated) into one kernel
for pre-training, alignment needs the per-token values themselves: DPO sums them over a response,
PPO forms ratios with them. Shift convention used throughout minillm.align: tokens (B, T) and a
response mask (B, T) over tokens; logits at position t predict token t+1, so per-token arrays are
(B, T-1) and align with tokens[:, 1:] and mask[:, 1:].
"""
import numpy as np

from ..nn.softmax import log_softmax


def token_logprobs_forward(logits, targets):  # (B, T, V), (B, T) int -> (B, T), cache
    """log softmax(logits)[targets]: the log-probability of each target token."""
    logits = np.asarray(logits)
    targets = np.asarray(targets)
    if logits.ndim != 3 or logits.dtype.kind != "f":
        raise ValueError(f"logits: expected a float array (B, T, V), got shape {logits.shape} dtype {logits.dtype}")
    if targets.shape != logits.shape[:2] or targets.dtype.kind not in "iu":
        raise ValueError(f"targets: expected an int array of shape {logits.shape[:2]}, got {targets.shape} "
                         f"{targets.dtype}")
    V = logits.shape[-1]
    if targets.size and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets: ids must lie in [0, {V}), got [{targets.min()}, {targets.max()}]")
    logp_all = log_softmax(logits)                                      # (B, T, V)
    logp = np.take_along_axis(logp_all, targets[..., None], axis=-1)[..., 0]  # (B, T)
    return logp, (logp_all, targets)


def token_logprobs_backward(dlogp, cache):  # (B, T) -> dlogits (B, T, V)
    """dL/dz = dL/dlogp * (onehot(y) - softmax(z)), a fresh array."""
    logp_all, targets = cache
    dlogp = np.asarray(dlogp, dtype=logp_all.dtype)
    dlogits = -np.exp(logp_all) * dlogp[..., None]                       # (B, T, V): -g p
    np.put_along_axis(dlogits, targets[..., None],
                      np.take_along_axis(dlogits, targets[..., None], axis=-1) + dlogp[..., None], axis=-1)
    return dlogits


def entropy_forward(logits):  # (B, T, V) -> (B, T), cache
    """Entropy H = -Σ p log p of each position's next-token distribution."""
    logp = log_softmax(np.asarray(logits))                              # (B, T, V)
    p = np.exp(logp)
    H = -np.sum(p * logp, axis=-1)                                       # (B, T)
    return H, (p, logp, H)


def entropy_backward(dH, cache):  # (B, T) -> dlogits (B, T, V)
    p, logp, H = cache
    dH = np.asarray(dH, dtype=p.dtype)
    return -p * (logp + H[..., None]) * dH[..., None]                    # (B, T, V)


# ------------------------------------------------------------------------------ model level
def shifted(tokens, mask=None):  # (B, T) -> targets (B, T-1), mask (B, T-1)
    """Targets and loss mask for the shift convention: position t scores token t+1."""
    tokens = np.asarray(tokens)
    m = None if mask is None else np.asarray(mask, dtype=np.float32)[:, 1:]
    return tokens[:, 1:], m


def model_logprobs(model, tokens, chunk=64):  # (B, T) -> (B, T-1) float32
    """Per-token log-probs of tokens[:, 1:] under the model, without keeping anything for backward
    (reference models, old policies). Runs in chunks of rows to bound the (B, T, V) logits memory."""
    tokens = np.asarray(tokens)
    out = []
    for i in range(0, tokens.shape[0], chunk):
        rows = tokens[i:i + chunk]
        logits = model.forward(rows)                                     # (b, T, V)
        out.append(token_logprobs_forward(logits[:, :-1], rows[:, 1:])[0])
    return np.concatenate(out, axis=0) if out else np.zeros((0, max(tokens.shape[1] - 1, 0)), np.float32)


def sequence_logprobs(model, tokens, mask, chunk=64):  # (B, T), (B, T) -> (B,) float64
    """Σ_t log π(y_t | y_<t) over the tokens where mask is 1 (the response): DPO's log π(y | x)."""
    lp = model_logprobs(model, tokens, chunk)                            # (B, T-1)
    _, m = shifted(tokens, mask)
    return np.sum(lp.astype(np.float64) * m, axis=1)


def logprobs_with_backward(model, tokens, entropy=False):
    """One training forward pass of the policy: tokens (B, T) -> (logp (B, T-1), H (B, T-1) or None,
    backward) where backward(dlogp (B, T-1), dH=None) -> {name: grad} chains the gradients of any
    loss of the log-probs (and entropies) through log-softmax-gather and the whole model."""
    tokens = np.asarray(tokens)
    logits, _, caches = model.forward_train(tokens)                      # (B, T, V)
    logp, c_lp = token_logprobs_forward(logits[:, :-1], tokens[:, 1:])   # (B, T-1)
    H, c_H = entropy_forward(logits[:, :-1]) if entropy else (None, None)

    def backward(dlogp, dH=None):
        dlogits = np.zeros_like(logits)                                  # (B, T, V); last column unused
        dlogits[:, :-1] = token_logprobs_backward(dlogp, c_lp)
        if dH is not None:
            dlogits[:, :-1] += entropy_backward(dH, c_H)
        return model.backward(caches, dlogits)

    return logp, H, backward
