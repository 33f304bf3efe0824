"""Retrieval on CPython's documentation: recall@k of BM25, dense (mean-pooled hidden states of a
small minillm model) and hybrid (reciprocal rank fusion) retrieval, plus query-likelihood
reranking, on two question sets generated from the text itself, then one RAG prompt end to end.

    python examples/rag_demo.py                      # trains a small byte-level model (~2 min)
    python examples/rag_demo.py --run runs/minillm   # or uses a `minillm train` run

Question sets (seeded, generated from pydoc_data.topics, the text minillm trains on):
  sentence  a sentence of a chunk, lower-cased, with a third of its words dropped; relevant =
            every chunk that contains the whole sentence
  topic     "How does <topic name> work in Python?" for each pydoc topic; relevant = that topic's chunks
"""
import argparse
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402

from minillm import ModelConfig, Transformer  # noqa: E402
from minillm.reasoning import (DenseIndex, RAGIndex, build_prompt, embed, reciprocal_rank_fusion,  # noqa: E402
                               rerank, tokenize)


def sentence_questions(index, n, rng):
    """(question, set of relevant chunk ids) from random sentences of random chunks."""
    by_source = {}
    for i, c in enumerate(index.chunks):
        by_source.setdefault(c.source, []).append(i)
    out = []
    for ci in rng.permutation(len(index.chunks)):
        if len(out) == n:
            break
        c = index.chunks[ci]
        sents = [m for m in re.finditer(r"[A-Z][^.!?\n]{40,200}[.!?]", c.text)]
        if not sents:
            continue
        m = sents[int(rng.integers(len(sents)))]
        words = m.group(0).split()
        keep = [w for w in words if rng.random() > 1 / 3] or words[:1]
        start, end = c.start + m.start(), c.start + m.end()
        gold = {j for j in by_source[c.source] if index.chunks[j].start <= start and end <= index.chunks[j].end}
        out.append((" ".join(keep).lower() + "?", gold))
    return out


def topic_questions(index):
    topics = {}
    for i, c in enumerate(index.chunks):
        topics.setdefault(c.source, set()).add(i)
    return [(f"How does {t.replace('-', ' ')} work in Python?", gold) for t, gold in sorted(topics.items())]


def recall_at(rankings, questions, ks):
    return {k: float(np.mean([bool(set(r[:k]) & gold) for r, (_, gold) in zip(rankings, questions)])) for k in ks}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=None, help="a `minillm train` run folder (default: train a small model)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--chunk-size", type=int, default=400)
    ap.add_argument("--rerank", type=int, default=60, help="questions per set to rerank (0: skip)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from pydoc_data.topics import topics
    if args.run:
        from minillm.inference.cli import load_run
        model, tok = load_run(args.run)
    else:
        from minillm.io import write_tokens
        from minillm.tokenizer import ByteTokenizer
        from minillm.train import TrainConfig, corpus_text, train
        tok = ByteTokenizer()
        cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=4, n_head=4, n_kv_head=2, d_model=96, max_seq_len=256)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "train.bin")
            write_tokens(path, np.asarray(tok.encode(corpus_text()), dtype=np.int64), 256)
            tc = TrainConfig(train_data=path, out_dir=os.path.join(tmp, "ckpt"), batch_size=8, seq_len=256,
                             max_steps=args.steps, lr=3e-3, min_lr=3e-4, warmup_steps=15, ckpt_interval=10**9,
                             log_interval=10**9, spike_z=50.0)
            model, hist = train(Transformer(cfg, seed=0), tc, log=lambda m: None, resume=False)
        print(f"trained a byte-level {cfg.num_params():,}-parameter model: {args.steps} steps, "
              f"final loss {hist[-1]['loss']:.3f} ({time.perf_counter() - t0:.0f} s)")

    ts = time.perf_counter()
    index = RAGIndex.from_documents(topics, chunk_size=args.chunk_size, overlap=args.chunk_size // 8,
                                    model=model, tokenizer=tok)
    print(f"indexed {len(index.chunks)} chunks of {len(topics)} pydoc topics, with embeddings "
          f"({time.perf_counter() - ts:.0f} s)")
    rng = np.random.default_rng(0)
    ks = (1, 5, 10, 20)
    for set_name, questions in (("sentence", sentence_questions(index, args.questions, rng)),
                                ("topic", topic_questions(index))):
        q_emb = embed(model, [tok.encode(q) or [0] for q, _ in questions])                 # (Q, C)
        centered = DenseIndex(index.dense.embeddings, center=True)
        runs = {"BM25": [], "dense": [], "dense, mean-centered": [], "hybrid (RRF of BM25, dense)": [],
                "hybrid (RRF of BM25, centered)": []}
        for qi, (q, _) in enumerate(questions):
            b = list(index.bm25.top_k(tokenize(q), 100)[0])
            d = list(index.dense.search(q_emb[qi], 100)[0])
            dc = list(centered.search(q_emb[qi], 100)[0])
            runs["BM25"].append(b)
            runs["dense"].append(d)
            runs["dense, mean-centered"].append(dc)
            runs["hybrid (RRF of BM25, dense)"].append(reciprocal_rank_fusion([b, d])[0])
            runs["hybrid (RRF of BM25, centered)"].append(reciprocal_rank_fusion([b, dc])[0])
        print(f"\nrecall@k, {set_name} questions ({len(questions)}), {len(index.chunks)} chunks "
              f"(chance@10 ~ {10 * np.mean([len(g) for _, g in questions]) / len(index.chunks):.3f})")
        print(f"{'retriever':34s}" + "".join(f"{f'@{k}':>8s}" for k in ks))
        for name, rankings in runs.items():
            r = recall_at(rankings, questions, ks)
            print(f"{name:34s}" + "".join(f"{r[k]:8.3f}" for k in ks))
        if args.rerank:
            sub = questions[:args.rerank]
            reranked = []
            for (q, _), b in zip(sub, runs["BM25"][:args.rerank]):
                order, _ = rerank(model, tok, q, [index.chunks[i].text for i in b[:20]])
                reranked.append([b[i] for i in order] + b[20:])
            base = recall_at(runs["BM25"][:args.rerank], sub, ks)
            r = recall_at(reranked, sub, ks)
            print(f"{'BM25 (first ' + str(len(sub)) + ')':34s}" + "".join(f"{base[k]:8.3f}" for k in ks))
            print(f"{'BM25 top-20 + LM rerank':34s}" + "".join(f"{r[k]:8.3f}" for k in ks))

    question = "How do I catch an exception with the try statement?"
    hits = index.retrieve(question, k=3, method="hybrid", model=model, tokenizer=tok)
    print("\nRAG prompt for:", question)
    print(build_prompt(question, [c for c, _ in hits])[:1200])
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
