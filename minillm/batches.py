"""Training batches: random windows of seq_len + 1 tokens from one token file or a weighted mixture
of several (minillm.io.write_tokens files, read through np.memmap).

Each row of a batch first picks its source with probability weight / sum(weights), then a random
window inside it (the way GPT-3 mixed its corpora, Brown et al. 2020, Table 2.2: sampled by weight,
not by size). The last `val_fraction` of every file's tokens is held out: training windows never
touch it and eval windows come only from it. Batch i is a function of (seed, i) alone, so every
data-parallel rank draws the same global batch and a resumed run replays the same data.
"""
import math
import os
from dataclasses import dataclass

import numpy as np

from .io.tokens import read_tokens


@dataclass
class DataSpec:
    path: str
    weight: float = 1.0


def parse_data_spec(spec):
    """"PATH" or "PATH:WEIGHT" -> DataSpec. A PATH that exists as written wins over a weight suffix."""
    path, weight = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep and head and not os.path.exists(spec):
        try:
            path, weight = head, float(tail)
        except ValueError:
            raise ValueError(f"--data: expected PATH or PATH:WEIGHT, got {spec!r}") from None
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"--data: weight must be a positive number, got {weight} in {spec!r}")
    return DataSpec(path, weight)


class MixtureBatches:
    """Random windows of seq_len + 1 tokens from a weighted mixture of token files; batch i is fully
    determined by (seed, i), so every rank draws the same global batch and resume replays it.

    sources: ["PATH[:WEIGHT]", ...] token files. split "train" reads the first (1 - val_fraction)
    of each file's tokens, "val" the rest; val_fraction 0 means the whole file (a separate val file)."""

    def __init__(self, sources, batch_size, seq_len, seed, split="train", val_fraction=0.0):
        if split not in ("train", "val"):
            raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction}")
        specs = [parse_data_spec(s) for s in ([sources] if isinstance(sources, str) else sources)]
        if not specs:
            raise ValueError("sources: expected at least one token file, got none")
        self.parts, self.vocab_size = [], 0
        for spec in specs:
            tokens, vocab = read_tokens(spec.path)
            cut = len(tokens) - int(len(tokens) * val_fraction) if val_fraction else len(tokens)
            part = tokens[:cut] if split == "train" else (tokens[cut:] if val_fraction else tokens)
            if len(part) < seq_len + 2:
                raise ValueError(f"{spec.path}: its {split} part has {len(part)} tokens, need at least "
                                 f"seq_len + 2 = {seq_len + 2}")
            self.parts.append(part)
            self.vocab_size = max(self.vocab_size, vocab)
        w = np.array([s.weight for s in specs], dtype=np.float64)
        self.probs = w / w.sum()                                          # (K,)
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed

    def batch(self, index):  # -> x (B, T) int64, y (B, T) int64 (y is x shifted by one)
        rng = np.random.default_rng([self.seed, index])
        B, T = self.batch_size, self.seq_len
        if len(self.parts) == 1:
            src = np.zeros(B, dtype=np.int64)
            starts = rng.integers(0, len(self.parts[0]) - T - 1, size=B)
        else:
            src = rng.choice(len(self.parts), size=B, p=self.probs)                 # (B,)
            starts = rng.integers(0, np.array([len(p) for p in self.parts])[src] - T - 1)
        rows = np.stack([self.parts[k][s:s + T + 1] for k, s in zip(src, starts)]).astype(np.int64)
        return rows[:, :-1], rows[:, 1:]
