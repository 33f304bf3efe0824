"""minillm.data: corpus readers/writers, quality filters, deduplication, PII removal, toxicity
filtering and the pipeline that chains them into token files for `minillm train`.

    from minillm.data import remove_pii, detect_language, minhash_signatures, dedup_clusters
    text, counts = remove_pii("mail me at a@b.com")          # ("mail me at <EMAIL>", {...})
    code, conf = detect_language("Das ist ein Satz.")         # ("de", 0.99...)
    sig = minhash_signatures(texts, num_perm=128, ngram=5)    # (N, 128) uint32
    clusters = dedup_clusters(texts, threshold=0.8)            # [[0, 7], [3, 9, 12], ...]

Modules: documents (I/O), filters (Gopher, C4, FineWeb, length, symbols), langid, perplexity,
exact_dedup, minhash (+ LSH), simhash, unionfind, pii, toxicity, stages, pipeline, cli.
Sizes in comments: N documents, P hash functions (num_perm), E candidate pairs.
"""
from .documents import list_shards, make_document, read_documents, write_jsonl, write_text
from .exact_dedup import BloomFilter, ExactDeduplicator, normalize_text, text_hash
from .filters import (C4Filter, FineWebFilter, GopherQuality, GopherRepetition, LengthFilter,
                      SymbolRatioFilter)
from .langid import detect_language
from .minhash import (candidate_pairs, dedup_clusters, estimate_jaccard, lsh_params,
                      minhash_signatures, s_curve)
from .perplexity import CharNGramLM, PerplexityBand
from .pii import remove_pii
from .pipeline import Pipeline, Report, StageStats, default_pipeline, load_config, pipeline_from_config
from .simhash import hamming_pairs, simhash_clusters, simhash_fingerprints
from .stages import STAGE_TYPES, make_stage
from .toxicity import Blocklist, BlocklistFilter, HashedNgramClassifier
from .unionfind import UnionFind

__all__ = [
    "BloomFilter", "Blocklist", "BlocklistFilter", "C4Filter", "CharNGramLM", "ExactDeduplicator",
    "FineWebFilter", "GopherQuality", "GopherRepetition", "HashedNgramClassifier", "LengthFilter",
    "PerplexityBand", "Pipeline", "Report", "STAGE_TYPES", "StageStats", "SymbolRatioFilter",
    "UnionFind", "candidate_pairs", "dedup_clusters", "default_pipeline", "detect_language",
    "estimate_jaccard", "hamming_pairs", "list_shards", "load_config", "lsh_params",
    "make_document", "make_stage", "minhash_signatures", "normalize_text", "pipeline_from_config",
    "read_documents", "remove_pii", "s_curve", "simhash_clusters", "simhash_fingerprints",
    "text_hash", "write_jsonl", "write_text",
]
