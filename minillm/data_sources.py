"""Training data from your own files: `minillm train --data PATH[:WEIGHT] ...`.

A source is a text file (.txt, .txt.gz, or any other UTF-8 file), a .jsonl(.gz) file of {"text": ...}
documents, a folder of such files (minillm.data.documents.list_shards decides which), or a token file
written by minillm.io.write_tokens / `minillm data run` (recognised by its header, whatever its name).
Text is tokenized once per run into token files; token files are read in place through np.memmap.

Several sources form a mixture: each row of a batch first picks its source with probability
weight / sum(weights), then a random window inside it (the way GPT-3 mixed its corpora, Brown et al.
2020, Table 2.2, sampling by weight rather than by size). The last `val_fraction` of every source's
tokens is held out: training windows never touch it and eval windows come only from it.
"""
import math
import os
from dataclasses import dataclass

import numpy as np

from .data.documents import list_shards, read_documents
from .io.tokens import MAGIC, read_header, read_tokens, write_tokens


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


def is_token_file(path):
    """True when `path` starts with the token-file magic (minillm.io.tokens)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return len(head) == 4 and int(np.frombuffer(head, dtype="<i4")[0]) == MAGIC


def check_source(path):
    """Fail early, naming --data, on a missing, empty or unreadable source. -> "tokens" | "text"."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: no such file or folder: {path}")
    if os.path.isdir(path):
        try:
            shards = list_shards(path)
        except ValueError:
            raise ValueError(f"--data: folder {path} holds no .txt or .jsonl(.gz) files") from None
        if all(os.path.getsize(s) == 0 for s in shards):
            raise ValueError(f"--data: every file in {path} is empty")
        return "text"
    if os.path.getsize(path) == 0:
        raise ValueError(f"--data: {path} is empty (0 bytes)")
    if is_token_file(path):
        n, _, _ = read_header(path)              # also catches a truncated file
        if n == 0:
            raise ValueError(f"--data: token file {path} holds 0 tokens")
        return "tokens"
    return "text"


def read_text(path):
    """All documents of a text source joined by blank lines."""
    shards = list_shards(path) if os.path.isdir(path) else [path]
    docs = []
    for shard in shards:
        name = os.fspath(shard)
        if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".txt", ".txt.gz")):
            docs.extend(d["text"] for d in read_documents(shard))
        else:                                    # a text file under any other name
            with open(shard, encoding="utf-8") as f:
                docs.append(f.read())
    text = "\n\n".join(d for d in docs if d.strip())
    if not text.strip():
        raise ValueError(f"--data: {path} holds no text (only whitespace or empty documents)")
    return text


def find_tokenizer(token_path):
    """The tokenizer file that belongs to a token file, if one lies beside it: `minillm train`'s
    tokenizer.model, or `minillm data run`'s tokenizer.bpe (kept in the output's _work folder)."""
    folder = os.path.dirname(os.path.abspath(token_path))
    for cand in (os.path.join(folder, "tokenizer.model"), os.path.join(folder, "tokenizer.bpe"),
                 os.path.join(folder, "_work", "tokenizer.bpe"),
                 os.path.join(os.path.dirname(folder), "_work", "tokenizer.bpe")):
        if os.path.isfile(cand):
            return cand
    return None


def tokenize_sources(specs, texts, tokenizer, out_dir):
    """Encode each text source with `tokenizer` into out_dir/<k>-<name>.bin. -> [token file path]."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for k, (spec, text) in enumerate(zip(specs, texts)):
        name = os.path.basename(os.path.normpath(spec.path)).split(".")[0] or "data"
        ids = np.asarray(tokenizer.encode(text), dtype=np.int64)
        path = os.path.join(out_dir, f"{k}-{name}.bin")
        write_tokens(path, ids, tokenizer.vocab_size)
        paths.append(path)
    return paths


def format_mixture(paths, weights):
    """The TrainConfig.train_data list: ["path:weight", ...]."""
    return [f"{p}:{w:g}" for p, w in zip(paths, weights)]


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
