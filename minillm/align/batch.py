"""Prompt + response pairs as padded arrays: the one batch layout every alignment method trains on.

A row is prompt ids followed by response ids, right-padded to the longest row with pad_id; the
response mask is 1 on response tokens and 0 on the prompt and padding. Right padding is what a causal
model needs: a padded slot only ever comes after the real tokens, so nothing real attends to it.
(Packing several examples into one row instead is sft.pack_examples.)
"""
import numpy as np


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
