"""Retrieval-augmented generation (Lewis et al. 2020, "Retrieval-Augmented Generation for
Knowledge-Intensive NLP Tasks"), in the retrieve-then-read form: split documents into chunks
(chunking.py), retrieve the top-k for a question (BM25, dense or hybrid RRF; optionally reranked
by query likelihood), and put them into the prompt in front of the question:

    Answer the question using only the context below. If the context does not contain the
    answer, say "I don't know".

    Context:
    [1] (source) chunk text
    [2] ...

    Question: ...
    Answer:

RAGIndex holds the chunks, their BM25 index and (optionally) their dense embeddings, and saves
them to a folder (index.json + embeddings.npy) that `minillm rag index|query` (minillm/cli/rag.py) reads.
"""
import json
import os

import numpy as np

from ..io.atomic import atomic_write
from .bm25 import BM25, tokenize
from .chunking import Chunk, recursive_chunks
from .dense import DenseIndex, embed
from .hybrid import reciprocal_rank_fusion
from .rerank import rerank

RAG_TEMPLATE = ("Answer the question using only the context below. If the context does not contain "
                "the answer, say \"I don't know\".\n\nContext:\n{context}\n\nQuestion: {question}\nAnswer:")
METHODS = ("bm25", "dense", "hybrid")
FORMAT_VERSION = 1


def build_prompt(question, chunks, template=RAG_TEMPLATE, tokenizer=None, max_tokens=None):
    """The RAG prompt: chunks (list of Chunk or str, best first) numbered [1].. [k] in the context.
    With tokenizer and max_tokens, the lowest-ranked chunks are dropped until the prompt fits."""
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    chunks = list(chunks)

    def render(cs):
        lines = []
        for i, c in enumerate(cs, start=1):
            text = c.text if isinstance(c, Chunk) else str(c)
            src = f"({c.source}) " if isinstance(c, Chunk) and c.source else ""
            lines.append(f"[{i}] {src}{' '.join(text.split())}")   # one line per chunk
        return template.format(context="\n".join(lines), question=question.strip())

    prompt = render(chunks)
    if tokenizer is not None and max_tokens is not None:
        while chunks and len(tokenizer.encode(prompt)) > max_tokens:
            chunks = chunks[:-1]
            prompt = render(chunks)
    return prompt


class RAGIndex:
    """Chunks + BM25 + optional dense embeddings. Build with from_documents / from_folder."""

    def __init__(self, chunks, embeddings=None, meta=None):
        if not chunks:
            raise ValueError("chunks: the index needs at least one chunk")
        self.chunks = list(chunks)
        self.meta = dict(meta or {})
        self.bm25 = BM25([tokenize(c.text) for c in self.chunks])
        self.dense = None
        if embeddings is not None:
            if len(embeddings) != len(self.chunks):
                raise ValueError(f"embeddings: {len(embeddings)} rows for {len(self.chunks)} chunks")
            self.dense = DenseIndex(embeddings)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_documents(cls, documents, chunk_size=800, overlap=100, model=None, tokenizer=None, meta=None,
                       progress=None):
        """documents: {name: text}. With a model and tokenizer the chunks are also embedded
        (progress(done, total) after each batch of chunks)."""
        chunks = []
        for name, text in documents.items():
            chunks.extend(c for c in recursive_chunks(text, chunk_size, overlap, source=name) if c.text.strip())
        if not chunks:
            raise ValueError("documents: no text to index")
        emb = None
        if model is not None:
            if tokenizer is None:
                raise ValueError("tokenizer: needed with a model to embed the chunks")
            emb = embed(model, [tokenizer.encode(c.text) for c in chunks], progress=progress)
        return cls(chunks, emb, {"chunk_size": chunk_size, "overlap": overlap, **(meta or {})})

    @classmethod
    def from_folder(cls, folder, suffixes=(".txt", ".md", ".rst"), **kw):
        """Every text file under folder (recursively, sorted), source = its path relative to folder."""
        if not os.path.isdir(folder):
            raise ValueError(f"folder: {folder!r} is not a directory")
        docs = {}
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(tuple(suffixes)):
                    path = os.path.join(root, f)
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        docs[os.path.relpath(path, folder)] = fh.read()
        if not docs:
            raise ValueError(f"folder: no {'/'.join(suffixes)} files under {folder!r}")
        return cls.from_documents(docs, **kw)

    # ------------------------------------------------------------------ retrieval
    def retrieve(self, question, k=5, method="bm25", model=None, tokenizer=None, rerank_with_model=False,
                 candidates=20):
        """Top-k chunks for a question: -> list of (Chunk, score), best first. "dense" and "hybrid"
        need the index's embeddings and the model + tokenizer that made them; hybrid fuses the BM25
        and dense rankings of `candidates` each by RRF. rerank_with_model reorders the top
        max(k, candidates) by query likelihood (rerank.py)."""
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive int, got {k!r}")
        n = max(k, candidates) if (rerank_with_model or method == "hybrid") else k
        if method != "bm25":
            if self.dense is None:
                raise ValueError("method: this index has no embeddings (build it with a model)")
            if model is None or tokenizer is None:
                raise ValueError(f"model, tokenizer: needed to embed the question for method={method!r}")
        if method in ("bm25", "hybrid"):
            b_idx, b_scores = self.bm25.top_k(tokenize(question), n)
        if method in ("dense", "hybrid"):
            q_ids = tokenizer.encode(question) or [0]
            d_idx, d_scores = self.dense.search(embed(model, [q_ids])[0], n)
        if method == "bm25":
            ids, scores = list(b_idx), b_scores
        elif method == "dense":
            ids, scores = list(d_idx), d_scores
        else:
            ids, scores = reciprocal_rank_fusion([list(b_idx), list(d_idx)], top=n)
        if rerank_with_model:
            if model is None or tokenizer is None:
                raise ValueError("model, tokenizer: needed to rerank")
            order, r_scores = rerank(model, tokenizer, question, [self.chunks[i].text for i in ids])
            ids, scores = [ids[i] for i in order], r_scores
        return [(self.chunks[int(i)], float(s)) for i, s in zip(ids[:k], scores[:k])]

    # ------------------------------------------------------------------ files
    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        doc = {"format": "minillm-rag", "version": FORMAT_VERSION, "meta": self.meta,
               "chunks": [{"text": c.text, "start": c.start, "end": c.end, "source": c.source} for c in self.chunks]}
        if self.dense is not None:
            with atomic_write(os.path.join(folder, "embeddings.npy"), "wb") as f:
                np.save(f, self.dense.embeddings)
        elif os.path.exists(os.path.join(folder, "embeddings.npy")):
            os.unlink(os.path.join(folder, "embeddings.npy"))   # stale embeddings of an older index
        with atomic_write(os.path.join(folder, "index.json"), "w") as f:
            json.dump(doc, f)

    @classmethod
    def load(cls, folder):
        path = os.path.join(folder, "index.json")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("format") != "minillm-rag" or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"not a version-{FORMAT_VERSION} minillm RAG index")
            chunks = [Chunk(c["text"], int(c["start"]), int(c["end"]), c["source"]) for c in doc["chunks"]]
        except FileNotFoundError:
            raise ValueError(f"index: {path} does not exist (run `minillm rag index` first)") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"index: {path} is damaged or not an index: {e}") from None
        emb_path = os.path.join(folder, "embeddings.npy")
        emb = None
        if os.path.exists(emb_path):
            try:
                emb = np.load(emb_path, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise ValueError(f"index: {emb_path} is damaged: {e}") from None
        return cls(chunks, emb, doc.get("meta"))
