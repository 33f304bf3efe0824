"""Dense retrieval (Karpukhin et al. 2020, "Dense Passage Retrieval", Sec. 3.1): a passage and a
query are each mapped to one vector and relevance is their similarity. Unlike BM25 (bm25.py),
which matches exact words, embeddings can match paraphrases, but only as well as the model knows
the language. Here the encoder is any minillm Transformer without fine-tuning: the mean over
positions of the final hidden states (the LM head's input) of the chunk's tokens, L2-normalised
(mean pooling, as Sentence-BERT does; Reimers & Gurevych 2019), and search is exact cosine top-k
by a matrix product in NumPy (no approximate index: the corpora here have thousands of chunks).
"""
import numpy as np

from .bm25 import top_k_indices


def normalize(x, eps=1e-12):  # (N, C) -> (N, C) unit rows (zero rows stay zero)
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)                               # (N, 1)
    return x / np.maximum(n, eps)


def embed(model, token_lists, batch_size=16, progress=None):
    """Mean-pooled final hidden states: list of N id lists -> (N, C) float32 unit vectors.
    Sequences longer than max_seq_len keep their first max_seq_len tokens. Batches are right-padded:
    with causal attention a position never sees the padding after it, so the valid positions'
    hidden states are exactly those of the unpadded sequence. progress(done, total) after each batch."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    limit, C = model.config.max_seq_len, model.config.d_model
    seqs = []
    for i, ids in enumerate(token_lists):
        a = np.asarray(ids, dtype=np.int64)[:limit]
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"token_lists[{i}]: expected a non-empty 1-D id list, got shape {a.shape}")
        seqs.append(a)
    out = np.zeros((len(seqs), C), dtype=np.float32)                            # (N, C)
    order = np.argsort([len(s) for s in seqs], kind="stable")  # similar lengths together: less padding
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        T = max(len(seqs[i]) for i in idx)
        batch = np.zeros((len(idx), T), dtype=np.int64)                         # (B, T), pad id 0
        mask = np.zeros((len(idx), T, 1), dtype=np.float32)                     # (B, T, 1)
        for r, i in enumerate(idx):
            batch[r, :len(seqs[i])] = seqs[i]
            mask[r, :len(seqs[i])] = 1.0
        hidden = model.forward_train(batch)[1]                                   # (B, T, C)
        out[idx] = (hidden * mask).sum(axis=1) / mask.sum(axis=1)                # (B, C) mean
        if progress is not None:
            progress(min(b0 + batch_size, len(order)), len(order))
    return normalize(out)


def cosine_top_k(queries, keys, k):
    """Exact cosine top-k: (Q, C), (N, C) -> (indices (Q, k) int64, scores (Q, k) float32), best first,
    ties to the lower index. Rows are normalised here, so raw embeddings may be passed."""
    q, K = normalize(np.atleast_2d(queries)), normalize(np.atleast_2d(keys))
    if q.shape[1] != K.shape[1]:
        raise ValueError(f"queries: dimension {q.shape[1]} != keys dimension {K.shape[1]}")
    sims = q @ K.T                                                              # (Q, N)
    idx = np.stack([top_k_indices(row, k) for row in sims])                     # (Q, k)
    return idx, np.take_along_axis(sims, idx, axis=1)


class DenseIndex:
    """Unit-norm chunk embeddings (N, C) and exact cosine search over them.

    center=True subtracts the corpus mean embedding from chunks and queries before the cosine:
    hidden states of a language model share a large common direction (they are anisotropic,
    Ethayarajh 2019), which makes every cosine similar; removing the mean is the first step of
    BERT-whitening (Su et al. 2021)."""

    def __init__(self, embeddings, center=False):
        e = np.asarray(embeddings, dtype=np.float32)
        if e.ndim != 2 or len(e) == 0:
            raise ValueError(f"embeddings: expected a non-empty (N, C) array, got shape {e.shape}")
        self.embeddings = normalize(e)                                           # (N, C)
        self.mean = self.embeddings.mean(axis=0) if center else np.zeros(e.shape[1], np.float32)  # (C,)
        self._keys = normalize(self.embeddings - self.mean)                      # (N, C)

    @classmethod
    def build(cls, model, token_lists, batch_size=16, center=False):
        return cls(embed(model, token_lists, batch_size), center)

    def search(self, query_embedding, k):  # (C,) -> (indices (k,), cosine (k,))
        idx, sims = cosine_top_k(np.asarray(query_embedding) - self.mean, self._keys, k)
        return idx[0], sims[0]
