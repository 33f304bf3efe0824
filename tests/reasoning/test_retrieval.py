"""Dense retrieval, reciprocal rank fusion, query-likelihood reranking, the RAG index and prompt,
and `minillm rag index|query` (reasoning/dense.py, hybrid.py, rerank.py, lm.py, rag.py; minillm/cli/rag.py)."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.model import ModelConfig, Transformer
from minillm.nn.softmax import log_softmax
from minillm.reasoning import RAGIndex, build_prompt, cosine_top_k, embed, reciprocal_rank_fusion, rerank
from minillm.reasoning.chunking import Chunk
from minillm.reasoning.lm import continuation_logprobs
from minillm.reasoning.rerank import query_likelihood
from minillm.tokenizer import ByteTokenizer


@pytest.fixture(scope="module")
def model():
    return Transformer(ModelConfig.preset("llama-tiny", max_seq_len=64), seed=1)


def test_embed_is_padding_invariant_mean_of_hidden_states(model):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 256, n) for n in (3, 17, 1, 64, 90, 8)]   # 90 > max_seq_len: truncated
    E = embed(model, seqs, batch_size=4)                                # padded batches
    for s, e in zip(seqs, E):
        h = model.forward_train(np.asarray(s[:64])[None])[1][0]         # (T, C), alone, unpadded
        ref = h.mean(axis=0)
        np.testing.assert_allclose(e, ref / np.linalg.norm(ref), rtol=1e-4, atol=1e-5)  # float32 sums
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, rtol=1e-5)


@settings(max_examples=50, deadline=None)
@given(Q=st.integers(1, 3), N=st.integers(1, 30), C=st.integers(1, 8), k=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_cosine_top_k_is_exact(Q, N, C, k, seed):
    rng = np.random.default_rng(seed)
    q, keys = rng.standard_normal((Q, C)), rng.standard_normal((N, C))
    idx, sims = cosine_top_k(q, keys, k)
    assert idx.shape == (Q, min(k, N))
    for row in range(Q):
        cos = keys @ q[row] / np.linalg.norm(keys, axis=1) / np.linalg.norm(q[row])
        brute = sorted(range(N), key=lambda i: (-cos[i], i))[:k]
        np.testing.assert_allclose(sims[row], cos[brute], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.sort(cos[idx[row]]), np.sort(cos[brute]), rtol=1e-5, atol=1e-6)


def test_reciprocal_rank_fusion():
    ids, scores = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60)
    assert ids == ["b", "a", "d", "c"]
    np.testing.assert_allclose(scores, [1 / 62 + 1 / 61, 1 / 61, 1 / 62, 1 / 63])
    ids, _ = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], weights=[2.0, 1.0])
    assert ids == ["a", "b"]
    with pytest.raises(ValueError, match="twice"):
        reciprocal_rank_fusion([["a", "a"]])
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])


@settings(max_examples=40, deadline=None)
@given(rankings=st.lists(st.permutations(list(range(6))), min_size=1, max_size=4))
def test_rrf_unanimous_winner_first(rankings):
    rankings = [list(r) for r in rankings]
    firsts = {r[0] for r in rankings}
    ids, scores = reciprocal_rank_fusion(rankings)
    assert np.all(np.diff(scores) <= 0)
    if len(firsts) == 1:
        assert ids[0] == rankings[0][0]


def test_continuation_logprobs_and_rerank(model):
    ctx, cont = [5, 9, 200, 3], [17, 42, 7]
    lp = continuation_logprobs(model, ctx, cont)
    logits = model.forward(np.array([ctx + cont]))[0]                   # (7, V)
    ref = [log_softmax(logits[3 + j].astype(np.float64))[cont[j]] for j in range(3)]
    np.testing.assert_allclose(lp, ref, rtol=1e-10)
    tok = ByteTokenizer()
    chunks = ["alpha beta", "gamma", "the query text"]
    order, scores = rerank(model, tok, "the query", chunks)
    assert sorted(order.tolist()) == [0, 1, 2] and np.all(np.diff(scores) <= 0)
    for i, s in zip(order, scores):
        assert s == pytest.approx(query_likelihood(model, tok, "the query", chunks[i]))


def test_build_prompt_template_and_budget():
    chunks = [Chunk("The for statement\n iterates.", 0, 10, "for.txt"), Chunk("while loops", 0, 5, "while.txt")]
    p = build_prompt("What does for do?", chunks)
    assert p == ("Answer the question using only the context below. If the context does not contain the "
                 "answer, say \"I don't know\".\n\nContext:\n[1] (for.txt) The for statement iterates.\n"
                 "[2] (while.txt) while loops\n\nQuestion: What does for do?\nAnswer:")
    tok = ByteTokenizer()
    short = build_prompt("What does for do?", chunks, tokenizer=tok, max_tokens=len(tok.encode(p)) - 1)
    assert "[1] (for.txt)" in short and "[2]" not in short


def _write_docs(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "loops.txt").write_text("The for statement iterates over the items of a sequence.\n\n"
                                      "The while statement repeats while a condition is true.")
    (folder / "sub" / "errors.md").write_text("The try statement specifies exception handlers.\n\n"
                                              "Raise an exception with the raise statement.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")


def test_rag_index_retrieve_save_load(tmp_path, model):
    _write_docs(tmp_path / "docs")
    tok = ByteTokenizer()
    index = RAGIndex.from_folder(tmp_path / "docs", chunk_size=60, overlap=0, model=model, tokenizer=tok)
    assert {c.source for c in index.chunks} == {"loops.txt", "sub/errors.md"}
    hits = index.retrieve("exception handlers in try", k=2)
    assert hits[0][0].source == "sub/errors.md" and "try statement" in hits[0][0].text
    for method in ("dense", "hybrid"):
        hits = index.retrieve("while", k=3, method=method, model=model, tokenizer=tok, rerank_with_model=True)
        assert len(hits) == 3
    index.save(tmp_path / "idx")
    again = RAGIndex.load(tmp_path / "idx")
    assert again.chunks == index.chunks
    np.testing.assert_array_equal(again.dense.embeddings, index.dense.embeddings)
    (tmp_path / "idx" / "index.json").write_text(json.dumps({"format": "minillm-rag", "version": 1}))
    with pytest.raises(ValueError, match="damaged"):
        RAGIndex.load(tmp_path / "idx")
    with pytest.raises(ValueError, match="does not exist"):
        RAGIndex.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="embeddings"):
        RAGIndex([Chunk("a", 0, 1)]).retrieve("a", method="dense")


def test_rag_cli(tmp_path, capsys, model):
    from minillm.checkpoint import save_checkpoint
    from minillm.cli import main
    from minillm.optim import AdamW
    _write_docs(tmp_path / "docs")
    run = tmp_path / "run"
    save_checkpoint(str(run / "ckpt"), model, AdamW(model.params), {"step": 0})
    ByteTokenizer().save(str(run / "tokenizer.model"))
    assert main(["rag", "index", str(tmp_path / "docs"), "--out", str(tmp_path / "idx"), "--chunk-size", "70",
                 "--overlap", "10"]) == 0
    assert main(["rag", "query", str(tmp_path / "idx"), "How do I raise an exception?", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "(bm25)" in out and "sub/errors.md" in out and "Question: How do I raise an exception?" in out
    assert main(["rag", "index", str(tmp_path / "docs"), "--out", str(tmp_path / "idx2"), "--run", str(run)]) == 0
    assert main(["rag", "query", str(tmp_path / "idx2"), "for loops", "--rerank", "--generate", "3"]) == 0
    cap = capsys.readouterr()
    out = cap.out
    assert "embedding chunks [" in cap.err and "ETA" in cap.err   # indexing with a model shows progress
    assert "hybrid + rerank" in out and "answer:" in out
    assert main(["rag", "query", str(tmp_path / "nothing"), "x"]) == 2


def test_dense_index_centering():
    from minillm.reasoning import DenseIndex
    rng = np.random.default_rng(4)
    E = rng.standard_normal((20, 6)) + 5.0          # a large shared direction, as LM states have
    q = rng.standard_normal(6) + 5.0
    idx, sims = DenseIndex(E, center=True).search(q, 5)
    U = E / np.linalg.norm(E, axis=1, keepdims=True)
    mu = U.mean(axis=0)
    keys, qc = U - mu, q - mu
    cos = keys @ qc / np.linalg.norm(keys, axis=1) / np.linalg.norm(qc)
    assert list(idx) == sorted(range(20), key=lambda i: -cos[i])[:5]
    np.testing.assert_allclose(sims, cos[idx], rtol=1e-5)
    plain = DenseIndex(E).search(q, 5)[0]
    assert list(plain) == list(cosine_top_k(q, E, 5)[0][0])
