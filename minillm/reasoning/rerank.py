"""Reranking retrieved chunks by query likelihood: score(chunk) = (1/|q|) sum_j log p(q_j | prompt(chunk),
q_<j), the model's mean log-probability of the query's tokens after the chunk (Sachan et al. 2022,
"Improving Passage Retrieval with Zero-Shot Question Generation", UPR, eq. 1; with a causal LM of
our own instead of T0). A first-stage retriever (BM25, dense, hybrid) picks a few candidates cheaply;
this costs one forward pass per candidate, so it only reorders the top-k.
"""
import numpy as np

from .lm import continuation_logprobs

UPR_TEMPLATE = "Passage: {chunk}\nPlease write a question based on this passage.\nQuestion:"


def query_likelihood(model, tokenizer, query, chunk, template=UPR_TEMPLATE):
    """Mean log p(query tokens | template(chunk)) in nats per token (float)."""
    ctx = tokenizer.encode(template.format(chunk=chunk))
    q = tokenizer.encode(" " + query.strip())
    limit = model.config.max_seq_len
    q = q[:max(1, limit // 2)]          # a very long query keeps room for the passage
    return float(np.mean(continuation_logprobs(model, ctx, q)))


def rerank(model, tokenizer, query, chunks, template=UPR_TEMPLATE):
    """Order `chunks` (list of str) by query likelihood: -> (order (n,) int64 best first, scores (n,))."""
    if isinstance(chunks, str):
        raise TypeError("chunks: expected a list of strings, got one str")
    scores = np.array([query_likelihood(model, tokenizer, query, c, template) for c in chunks],
                      dtype=np.float64)                                          # (n,)
    order = np.lexsort((np.arange(len(scores)), -scores)).astype(np.int64)
    return order, scores[order]
