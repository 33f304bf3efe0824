"""Reasoning and retrieval on top of a minillm model.

  cot.py          few-shot standard / chain-of-thought prompts, answer extraction, self-consistency
  tree_search.py  tree of thoughts: BFS, DFS with a value threshold, MCTS over propose/evaluate
  game24.py       the Game of 24 as a tree-search problem (programmatic and model proposers)
  chunking.py     recursive (character) and token-window chunking with overlap
  bm25.py         BM25 Okapi / L / + / Lucene-idf over an inverted index
  dense.py        mean-pooled model embeddings, exact cosine top-k
  hybrid.py       reciprocal rank fusion
  rerank.py       query-likelihood reranking
  rag.py          RAGIndex (chunks + indexes, save/load) and the RAG prompt
  lm.py           continuation log-probabilities and n samples from a model
"""
from .bm25 import BM25, tokenize
from .chunking import Chunk, recursive_chunks, token_chunks
from .cot import (Example, cot_prompt, extract_answer, majority_accuracy, majority_vote, self_consistency,
                  standard_prompt, zero_shot_cot_prompt)
from .dense import DenseIndex, cosine_top_k, embed
from .hybrid import reciprocal_rank_fusion
from .rag import RAGIndex, build_prompt
from .rerank import query_likelihood, rerank
from .tree_search import LikelihoodEvaluator, ModelProposer, ValuePromptEvaluator, bfs, dfs, mcts

__all__ = ["BM25", "tokenize", "Chunk", "recursive_chunks", "token_chunks", "DenseIndex", "cosine_top_k",
           "embed", "reciprocal_rank_fusion", "RAGIndex", "build_prompt", "query_likelihood", "rerank",
           "Example", "standard_prompt", "cot_prompt", "zero_shot_cot_prompt", "extract_answer", "majority_vote",
           "self_consistency", "majority_accuracy", "bfs", "dfs", "mcts", "ModelProposer", "LikelihoodEvaluator",
           "ValuePromptEvaluator"]
