"""Prompt + response pairs as padded arrays: the one batch layout every alignment method trains on.

A row is prompt ids followed by response ids, right-padded to the longest row with pad_id; the
response mask is 1 on response tokens and 0 on the prompt and padding. Right padding is what a causal
model needs: a padded slot only ever comes after the real tokens, so nothing real attends to it.
(Packing several examples into one row instead is sft.pack_examples.)

Preference pairs (prompt, chosen, rejected[, ...]) go through one batch of 2N rows, the N chosen
rows then the N rejected ones (pair_batch), so that one forward pass scores both; the reward model
(reward.py) and DPO (dpo.py) share that layout, the chunked scoring of a pair set (score_pairs) and
the minibatch training loop over pairs (train_on_pairs).
"""
import numpy as np

from ..optim import AdamW, clip_grad_norm


def collate(prompts, responses, pad_id=0):  # lists of id lists -> tokens (B, T) int64, mask (B, T) float32
    """tokens[b] = prompts[b] + responses[b] + padding; mask[b] = 1 on the responses[b] slots."""
    if len(prompts) != len(responses):
        raise ValueError(f"responses: expected {len(prompts)} (one per prompt), got {len(responses)}")
    if not prompts:
        raise ValueError("prompts: expected at least one example, got none")
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    T = max(lengths)
    tokens = np.full((len(prompts), T), pad_id, dtype=np.int64)          # (B, T)
    mask = np.zeros((len(prompts), T), dtype=np.float32)                 # (B, T)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        if len(p) == 0:
            raise ValueError(f"prompts[{b}]: must hold at least one token (the first token is never scored)")
        tokens[b, :len(p)] = p
        tokens[b, len(p):len(p) + len(r)] = r
        mask[b, len(p):len(p) + len(r)] = 1.0
    return tokens, mask


def minibatches(n, batch_size, rng, drop_last=False):
    """Shuffled index arrays covering range(n) once (an epoch)."""
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def pair_batch(pairs, pad_id=0):  # N pairs -> tokens (2N, T), mask (2N, T): chosen rows, then rejected
    """Chosen and rejected sequences of N pairs (prompt, chosen, rejected[, ...]) in one batch."""
    prompts = [list(p[0]) for p in pairs] * 2
    responses = [list(p[1]) for p in pairs] + [list(p[2]) for p in pairs]
    return collate(prompts, responses, pad_id)


def score_pairs(score, pairs, chunk=64):  # score(n pairs) -> (2n,); -> chosen (N,), rejected (N,)
    """Scores of every pair's chosen and rejected sequence, `chunk` pairs per call of score (which
    returns the n chosen scores, then the n rejected ones), bounding the memory of one forward pass."""
    chosen, rejected = [], []
    for i in range(0, len(pairs), chunk):
        part = pairs[i:i + chunk]
        s = score(part)                                                  # (2n,)
        chosen.append(s[:len(part)])
        rejected.append(s[len(part):])
    return np.concatenate(chosen), np.concatenate(rejected)


def train_on_pairs(params, n, step, cfg, end_of_epoch=None, log=None):
    """The loop reward-model and DPO training share: cfg.epochs passes over n examples in shuffled
    minibatches of cfg.batch_size (seeded by cfg.seed); step(idx) -> (loss, grads, stats) for the
    examples idx, then gradient clipping to cfg.max_grad_norm and one AdamW step on `params` (lr,
    weight_decay from cfg; betas (0.9, 0.95)). Returns the per-step records: step's stats plus loss,
    grad_norm, step and epoch; end_of_epoch() -> dict is merged into each epoch's last record, and
    log(record) sees every record."""
    opt = AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    rng = np.random.default_rng(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        for idx in minibatches(n, cfg.batch_size, rng):
            loss, grads, stats = step(idx)
            stats.update(loss=loss, grad_norm=clip_grad_norm(grads, cfg.max_grad_norm))
            opt.step(grads)
            stats.update(step=len(history) + 1, epoch=epoch)
            history.append(stats)
            if log:
                log(stats)
        if end_of_epoch is not None:
            history[-1].update(end_of_epoch())
    return history
