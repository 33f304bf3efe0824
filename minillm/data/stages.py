"""Pipeline stages: the filters, deduplicators, PII scrubber and tokenizer wrapped in one interface.

A stage sees one document at a time: `apply(doc, stats)` returns the (possibly rewritten) document
to keep it, or a string -- the reason -- to drop it. Per-document stages are independent across
shards, so the pipeline runs them in parallel worker processes.

A *global* stage (deduplication, perplexity calibration, tokenizer training) needs the whole corpus
first. The pipeline calls `observe(key, doc)` for every document in a fixed order (key = (shard
index, position)), then `finalize(work_dir)` once, and only then `apply` per shard -- so a cluster
spanning shards keeps the same document no matter how shards are scheduled. `start_shard`,
`end_shard` and `close` let a stage write per-shard and final files (the token files).

STAGE_TYPES maps the `type` of a [[stage]] table in the pipeline TOML to a class; each class's
keyword arguments are that table's keys.
"""
import json
import pathlib
import random

import numpy as np

from ..io.atomic import atomic_write
from ..io.tokens import read_tokens, write_tokens
from ..tokenizer import BPETokenizer, ByteTokenizer, cached_bpe
from .exact_dedup import BloomFilter, text_hash
from .filters import (C4Filter, FineWebFilter, GopherQuality, GopherRepetition, LengthFilter,
                      SymbolRatioFilter)
from .langid import detect_language
from .minhash import lsh_edges, lsh_params, minhash_signatures
from .ner import NERTagger
from .perplexity import CharNGramLM, PerplexityBand, TransformerScorer
from .pii import remove_pii
from .simhash import hamming_pairs, simhash_fingerprints
from .toxicity import BlocklistFilter, ClassifierFilter, HashedNgramClassifier
from .unionfind import UnionFind
from .url_filter import URLFilter


class Stage:
    """Base class. name: unique within a pipeline (the TOML `name`, default the type)."""
    is_global = False

    def __init__(self, name=None):
        self.name = name or getattr(self, "type_name", type(self).__name__)

    def apply(self, doc, stats):  # -> doc | str (drop reason)
        raise NotImplementedError

    def start_shard(self, shard_name, out_dir):
        pass

    def end_shard(self):
        pass

    def close(self, out_dir):
        """After every shard of the run is done (main process)."""

    def summary(self):
        """Facts worth printing after a run (dict), e.g. the LSH parameters chosen."""
        return {}


class GlobalStage(Stage):
    """observe every document in (shard, position) order, finalize once, then apply_at. A
    distributed run (ray_executor.py) splits observation in two: `observe_shard` runs where the
    shard is, on a copy of the stage, and returns a compact summary; the driver then `absorb`s
    the summaries in shard order, which must leave the stage as observing each document would.
    The default ships the documents themselves; dedup stages ship hashes/signatures instead."""
    is_global = True

    def observe(self, key, doc):
        raise NotImplementedError

    def observe_shard(self, shard_index, docs):  # -> picklable summary of one shard
        return [((shard_index, pos), doc) for pos, doc in enumerate(docs)]

    def absorb(self, summary):
        for key, doc in summary:
            self.observe(key, doc)

    def finalize(self, work_dir):
        pass

    def state(self):
        """What apply_at needs after finalize, as JSON data: the pipeline stores it in <out>/_work to
        resume, and load_state(state) on a stage built from the same description restores it. JSON,
        never pickle: a file in the output folder must not be able to run code when read."""
        return {}

    def load_state(self, state):
        pass


def _keys(value, what):
    """A JSON list of [shard, position, ...] rows -> list of (int, int) keys, or a ValueError."""
    if not isinstance(value, list) or not all(isinstance(k, list) and len(k) >= 2 and
                                              all(type(i) is int for i in k[:2]) for k in value):
        raise ValueError(f"{what}: expected a list of [shard, position] integer pairs")
    return [(k[0], k[1]) for k in value]


def _field(state, key, types, what):
    if not isinstance(state, dict) or key not in state or not isinstance(state[key], types):
        raise ValueError(f"{what}: expected a JSON object with {key!r} of type "
                         f"{'/'.join(t.__name__ for t in types)}")
    return state[key]


class FilterStage(Stage):
    """Any object with check(text) -> reason | None (or apply(text) -> (text, reason), which may
    rewrite the text, as C4's line filter does)."""

    def __init__(self, filter, name=None):
        super().__init__(name)
        self.filter = filter

    def apply(self, doc, stats):
        if hasattr(self.filter, "apply"):
            text, reason = self.filter.apply(doc["text"])
            if reason:
                return reason
            return {**doc, "text": text}
        reason = self.filter.check(doc["text"])
        return reason or doc


def _filter_stage(type_name, cls):
    def make(name=None, **params):
        return FilterStage(cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}),
                           name=name or type_name)
    make.__name__ = f"{type_name}_stage"
    make.__doc__ = f"Stage wrapping {cls.__name__}; keys are its fields."
    return make


class LanguageStage(Stage):
    """Keep documents whose detected language is in `keep` (ISO 639-1 codes) with confidence >=
    min_confidence; record meta.language and meta.language_score either way."""
    type_name = "language"

    def __init__(self, keep=("en",), min_confidence=0.5, backend="builtin", model_path=None,
                 max_chars=2000, name=None):
        super().__init__(name)
        self.keep, self.min_confidence = tuple(keep), float(min_confidence)
        self.backend, self.model_path, self.max_chars = backend, model_path, int(max_chars)

    def apply(self, doc, stats):
        code, conf = detect_language(doc["text"][: self.max_chars], self.backend, self.model_path)
        stats.count(f"lang_{code}")
        if code not in self.keep:
            return f"language_{code}"
        if conf < self.min_confidence:
            return "language_low_confidence"
        return {**doc, "meta": {**doc["meta"], "language": code, "language_score": round(conf, 4)}}


class PIIStage(Stage):
    """Replace PII with typed placeholders; the counts per type go to the stage statistics."""
    type_name = "pii"

    def __init__(self, types=None, name=None):
        super().__init__(name)
        self.types = None if types is None else list(types)
        remove_pii("", self.types)  # validates the type names now, not at the first document

    def apply(self, doc, stats):
        text, counts = remove_pii(doc["text"], self.types)
        for kind, n in counts.items():
            stats.count(f"pii_{kind}", n)
        stats.count("docs_with_pii", int(any(counts.values())))
        return {**doc, "text": text}


class NERPIIStage(Stage):
    """Replace person names, street addresses (and, when asked, organisations and locations)
    found by the NER tagger (ner.py) with <PERSON>, <ADDRESS>, <ORG>, <LOCATION>. Runs after the
    regex `pii` stage. weights: an .npz from `minillm data ner-train` (default: the shipped one)."""
    type_name = "pii_ner"
    TYPE_NAMES = {"person": "PER", "address": "ADDR", "org": "ORG", "location": "LOC"}

    def __init__(self, types=("person", "address"), weights=None, name=None):
        super().__init__(name)
        unknown = set(types) - set(self.TYPE_NAMES)
        if unknown:
            raise ValueError(f"types: unknown NER PII types {sorted(unknown)}; "
                             f"known: {sorted(self.TYPE_NAMES)}")
        self.types, self.weights = list(types), weights
        self.tagger = NERTagger.load(weights)          # fails now on a bad file, not mid-run

    def apply(self, doc, stats):
        text, counts = self.tagger.redact(doc["text"], [self.TYPE_NAMES[t] for t in self.types])
        for t in self.types:
            stats.count(f"pii_{t}", counts[self.TYPE_NAMES[t]])
        stats.count("docs_with_pii_ner", int(any(counts.values())))
        return {**doc, "text": text}


class URLFilterStage(Stage):
    """Drop documents whose meta.url is blocklisted (url_filter.py); keys are URLFilter's."""
    type_name = "url_filter"

    def __init__(self, domains=(), urls=(), banned_words=(), domain_files=(), url_files=(),
                 name=None):
        super().__init__(name)
        self.filter = URLFilter(domains, urls, banned_words, domain_files, url_files)

    def apply(self, doc, stats):
        url = doc["meta"].get("url")
        if not url:
            stats.count("no_url")
            return doc
        return self.filter.check(url) or doc


class ToxicityStage(Stage):
    """Blocklist (words / word_files, min_matches, max_ratio) and, optionally, a trained
    HashedNgramClassifier (classifier_path, threshold)."""
    type_name = "toxicity"

    def __init__(self, words=None, word_files=(), min_matches=1, max_ratio=1.0,
                 classifier_path=None, threshold=0.5, name=None):
        super().__init__(name)
        self.blocklist = BlocklistFilter(words, word_files, min_matches, max_ratio)
        self.classifier = (ClassifierFilter(HashedNgramClassifier.load(classifier_path), threshold)
                           if classifier_path else None)

    def apply(self, doc, stats):
        reason = self.blocklist.check(doc["text"])
        if reason is None and self.classifier is not None:
            reason = self.classifier.check(doc["text"])
        return reason or doc


# --- global stages -------------------------------------------------------------------------------

class ExactDedupStage(GlobalStage):
    """Drop every copy after the first of a normalised text (exact_dedup.py); bloom_capacity
    bounds memory with a Bloom filter (then a unique document is dropped with prob. error_rate)."""
    type_name = "exact_dedup"

    def __init__(self, bloom_capacity=None, error_rate=1e-4, name=None):
        super().__init__(name)
        self.bloom = BloomFilter(bloom_capacity, error_rate) if bloom_capacity else None
        self.seen, self.drop = set(), set()

    def observe(self, key, doc):
        self._observe_hash(key, text_hash(doc["text"]))

    def observe_shard(self, shard_index, docs):
        return [((shard_index, pos), text_hash(doc["text"])) for pos, doc in enumerate(docs)]

    def absorb(self, summary):
        for key, h in summary:
            self._observe_hash(key, h)

    def _observe_hash(self, key, h):
        if self.bloom is not None:
            if self.bloom.add(h):
                self.drop.add(key)
        elif h in self.seen:
            self.drop.add(key)
        else:
            self.seen.add(h)

    def finalize(self, work_dir):
        self.seen, self.bloom = set(), None  # apply needs only `drop`: keep the pickle small

    def apply_at(self, key, doc, stats):
        return "exact_duplicate" if key in self.drop else doc

    def state(self):
        return {"drop": sorted(self.drop)}

    def load_state(self, state):
        what = f"stage {self.name}"
        self.drop = set(_keys(_field(state, "drop", (list,), what), f"{what}: drop"))

    def summary(self):
        return {"exact_duplicates": len(self.drop)}


class _ClusterDedupStage(GlobalStage):
    """Shared by MinHash and SimHash: collect one fingerprint per document, cluster with
    union-find, keep one document per cluster (keep = "first" | "longest") or none ("none"),
    and optionally dump the clusters as JSON lines for inspection."""
    BATCH = 4096

    def __init__(self, keep="first", dump_clusters=True, name=None):
        super().__init__(name)
        if keep not in ("first", "longest", "none"):
            raise ValueError(f"keep: expected 'first', 'longest' or 'none', got {keep!r}")
        self.keep, self.dump_clusters = keep, dump_clusters
        self.keys, self.ids, self.lengths, self.snippets, self.pending = [], [], [], [], []
        self.parts, self.drop, self.n_clusters = [], {}, 0

    def observe(self, key, doc):
        self.keys.append(key)
        self.ids.append(doc["id"])
        self.lengths.append(len(doc["text"]))
        self.snippets.append(doc["text"][:120])
        self.pending.append(doc["text"])
        if len(self.pending) >= self.BATCH:
            self._flush()

    def observe_shard(self, shard_index, docs):
        keys, ids, lengths, snippets, texts = [], [], [], [], []
        for pos, doc in enumerate(docs):
            keys.append((shard_index, pos))
            ids.append(doc["id"])
            lengths.append(len(doc["text"]))
            snippets.append(doc["text"][:120])
            texts.append(doc["text"])
        return keys, ids, lengths, snippets, self.fingerprints(texts) if texts else None

    def absorb(self, summary):
        keys, ids, lengths, snippets, fps = summary
        self._flush()                                  # keep the fingerprints in document order
        self.keys += keys
        self.ids += ids
        self.lengths += lengths
        self.snippets += snippets
        if fps is not None:
            self.parts.append(fps)

    def _flush(self):
        if self.pending:
            self.parts.append(self.fingerprints(self.pending))
            self.pending = []

    def finalize(self, work_dir):
        self._flush()
        clusters = self.clusters(np.concatenate(self.parts) if self.parts else None, len(self.keys))
        dump = []
        for members in clusters:
            if self.keep == "first":
                kept = members[0]                              # smallest index = earliest document
            elif self.keep == "longest":
                kept = max(members, key=lambda i: (self.lengths[i], -i))
            else:
                kept = None
            for i in members:
                if i != kept:
                    self.drop[self.keys[i]] = self.ids[kept] if kept is not None else None
            dump.append({"kept": None if kept is None else self.ids[kept],
                         "members": [{"id": self.ids[i], "chars": self.lengths[i],
                                      "start": self.snippets[i]} for i in members]})
        self.n_clusters = len(clusters)
        if self.dump_clusters and work_dir is not None:
            path = pathlib.Path(work_dir) / f"{self.name}_clusters.jsonl"
            with atomic_write(path) as f:
                for c in dump:
                    f.write(json.dumps(c, ensure_ascii=False).encode("utf-8") + b"\n")
            self.dump_path = str(path)
        # apply needs only `drop`: free the per-document lists before the stage is pickled
        self.keys, self.ids, self.lengths, self.snippets, self.parts = [], [], [], [], []

    def apply_at(self, key, doc, stats):
        if key in self.drop:
            return "near_duplicate"
        return doc

    def state(self):
        return {"drop": [[s, p, kept] for (s, p), kept in sorted(self.drop.items())],
                "n_clusters": self.n_clusters, "dump_path": getattr(self, "dump_path", None)}

    def load_state(self, state):
        what = f"stage {self.name}"
        drop = _field(state, "drop", (list,), what)
        self.drop = {k: row[2] if len(row) > 2 else None for k, row in zip(_keys(drop, f"{what}: drop"), drop)}
        self.n_clusters = _field(state, "n_clusters", (int,), what)
        self.dump_path = _field(state, "dump_path", (str, type(None)), what)

    def summary(self):
        out = {"clusters": self.n_clusters, "dropped": len(self.drop), "keep": self.keep}
        if getattr(self, "dump_path", None):
            out["cluster_dump"] = self.dump_path
        return out


class MinHashDedupStage(_ClusterDedupStage):
    """MinHash + LSH near-duplicate removal (minhash.py); (bands, rows) from threshold/num_perm."""
    type_name = "minhash_dedup"

    def __init__(self, threshold=0.8, num_perm=128, ngram=5, shingle="word", seed=0, keep="first",
                 dump_clusters=True, name=None):
        super().__init__(keep, dump_clusters, name)
        self.threshold, self.num_perm, self.ngram = threshold, num_perm, ngram
        self.shingle, self.seed = shingle, seed
        self.params = lsh_params(threshold, num_perm)

    def fingerprints(self, texts):
        return minhash_signatures(texts, self.num_perm, self.ngram, self.seed, self.shingle)

    def clusters(self, sigs, n):
        uf = UnionFind(n)
        if sigs is not None:
            uf.union_edges(*lsh_edges(sigs, self.params.bands, self.params.rows))
        return uf.components(min_size=2)

    def summary(self):
        return {**super().summary(), "lsh": self.params.describe()}


class SimHashDedupStage(_ClusterDedupStage):
    """SimHash near-duplicate removal (simhash.py): pairs within max_distance bits."""
    type_name = "simhash_dedup"

    def __init__(self, max_distance=3, ngram=3, shingle="word", keep="first", dump_clusters=True,
                 name=None):
        super().__init__(keep, dump_clusters, name)
        self.max_distance, self.ngram, self.shingle = max_distance, ngram, shingle

    def fingerprints(self, texts):
        return simhash_fingerprints(texts, self.ngram, self.shingle)

    def clusters(self, fps, n):
        uf = UnionFind(n)
        if fps is not None:
            pairs = hamming_pairs(fps, self.max_distance)
            uf.union_edges(pairs[:, 0], pairs[:, 1])
        return uf.components(min_size=2)


class PerplexityStage(GlobalStage):
    """Perplexity band filter (perplexity.py). Pass 1 draws a deterministic reservoir sample of
    `sample_docs` documents; finalize trains a character KN model on 80% of it (unless a `scorer`
    object or a `model_run` folder of `minillm train` was given) and sets the band from the percentiles of the other 20%. Each document is
    scored on its first max_chars characters."""
    type_name = "perplexity"

    def __init__(self, order=5, low_pct=0.0, high_pct=90.0, min_ppl=None, max_ppl=None,
                 sample_docs=2000, max_chars=5000, seed=0, scorer=None, model_run=None, name=None):
        super().__init__(name)
        if scorer is None and model_run is not None:  # a `minillm train` run folder as the LM
            scorer = TransformerScorer.from_run(model_run)
        self.order, self.sample_docs, self.max_chars = order, int(sample_docs), int(max_chars)
        self.low_pct, self.high_pct, self.min_ppl, self.max_ppl = low_pct, high_pct, min_ppl, max_ppl
        self.scorer, self.rng, self.sample, self.seen = scorer, random.Random(seed), [], 0
        self.band = None

    def observe(self, key, doc):
        # reservoir sampling (Vitter 1985, Algorithm R): every document equally likely, one pass
        self.seen += 1
        text = doc["text"][: self.max_chars]
        if len(self.sample) < self.sample_docs:
            self.sample.append(text)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.sample_docs:
                self.sample[j] = text

    def finalize(self, work_dir):
        n_cal = max(1, len(self.sample) // 5)
        calibration, train = self.sample[:n_cal], self.sample[n_cal:] or self.sample
        self.band = self._band(train, self.min_ppl, self.max_ppl)
        if self.min_ppl is None or self.max_ppl is None:
            if not calibration:
                raise ValueError(f"stage {self.name}: no documents to calibrate the perplexity band")
            self.band.fit(calibration)
        self.train_texts = train if self.scorer is None else []   # what state() keeps to rebuild the LM
        self.sample = []

    def _band(self, train, min_ppl, max_ppl):
        scorer = self.scorer or CharNGramLM.train(train, order=self.order)
        return PerplexityBand(scorer, self.low_pct, self.high_pct, min_ppl, max_ppl)

    def state(self):  # the character LM is rebuilt from its training texts: counting is deterministic
        return {"train": self.train_texts, "min_ppl": self.band.min_ppl, "max_ppl": self.band.max_ppl}

    def load_state(self, state):
        what = f"stage {self.name}"
        train = _field(state, "train", (list,), what)
        if not all(isinstance(t, str) for t in train):
            raise ValueError(f"{what}: expected 'train' to be a list of strings")
        lo, hi = _field(state, "min_ppl", (int, float), what), _field(state, "max_ppl", (int, float), what)
        self.train_texts, self.band = train, self._band(train, float(lo), float(hi))

    def apply_at(self, key, doc, stats):
        return self.band.check(doc["text"][: self.max_chars]) or doc

    def summary(self):
        if self.band is None:
            return {}
        return {"min_ppl": round(self.band.min_ppl, 3), "max_ppl": round(self.band.max_ppl, 3)}


class TokenizeStage(GlobalStage):
    """The last stage: encode every kept document and write the np.memmap token files that
    `minillm train` reads (minillm.io.write_tokens): one per shard under tokens/, then all of them
    concatenated in shard order into `<output>/<output_name>`.

    tokenizer: "auto" or "bpe" (byte-level BPE), "bytes" (ByteTokenizer), or any
    object with .encode(text) -> list[int] and .vocab_size. BPE is loaded from `path` or trained
    by minillm.tokenizer.cached_bpe on the first sample_chars characters of the corpus.
    Documents are separated by the tokenizer's <|endoftext|> id when it has one."""
    type_name = "tokenize"

    def __init__(self, tokenizer="auto", vocab_size=4096, path=None, cache_dir=None,
                 sample_chars=2_000_000, output_name="tokens.bin", name=None):
        super().__init__(name)
        if isinstance(tokenizer, str) and tokenizer not in ("auto", "bpe", "bytes"):
            raise ValueError(f"tokenizer: expected 'auto', 'bpe', 'bytes' or an object, got {tokenizer!r}")
        self.kind, self.vocab_size, self.path = tokenizer, int(vocab_size), path
        self.cache_dir, self.sample_chars, self.output_name = cache_dir, int(sample_chars), output_name
        self.sample, self.sample_len = [], 0
        self.tokenizer, self.eot_id, self.ids, self.shard_files = None, None, None, []
        self.n_vocab = None                          # known once the tokenizer is chosen (_set)
        if not isinstance(tokenizer, str):
            self._set(tokenizer)

    def _set(self, tok):
        self.tokenizer = tok
        self.n_vocab = int(getattr(tok, "vocab_size", None) or getattr(tok, "n_vocab"))
        special = getattr(tok, "special_tokens", None) or {}
        self.eot_id = special.get("<|endoftext|>", getattr(tok, "eot_id", None))

    def _wants_bpe(self):
        return self.kind != "bytes" and self.tokenizer is None

    def observe(self, key, doc):
        if self.tokenizer is None and self.path is None and self.sample_len < self.sample_chars:
            piece = doc["text"][: self.sample_chars - self.sample_len]
            self.sample.append(piece)
            self.sample_len += len(piece)

    def finalize(self, work_dir):
        if self.tokenizer is not None:
            return
        if not self._wants_bpe():
            self._set(ByteTokenizer())
        else:
            if self.path is None:
                cache = self.cache_dir or pathlib.Path(work_dir) / "tokenizer"
                tok = cached_bpe("\n\n".join(self.sample), self.vocab_size, cache)
                self.path = str(pathlib.Path(work_dir) / "tokenizer.bpe")
                tok.save(self.path)                 # the pipeline's output keeps its tokenizer
            self._set(BPETokenizer.load(self.path))
        self.sample = []

    def state(self):
        return {"path": self.path}

    def load_state(self, state):
        what = f"stage {self.name}"
        path = _field(state, "path", (str, type(None)), what)
        if self.tokenizer is not None:               # an object given in code: nothing was chosen
            return
        if not self._wants_bpe():
            self._set(ByteTokenizer())
        elif path is None:
            raise ValueError(f"{what}: expected the path of the BPE tokenizer it chose, got null")
        else:
            self.path = path
            self._set(BPETokenizer.load(path))

    def __getstate__(self):
        # a loaded BPETokenizer holds native handles: ship its file path to workers instead
        state = dict(self.__dict__)
        if self.path is not None and self.kind != "bytes" and isinstance(self.kind, str):
            state["tokenizer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.tokenizer is None and self.path is not None and self.n_vocab is not None:
            self._set(BPETokenizer.load(self.path))

    def start_shard(self, shard_name, out_dir):
        self.ids, self.shard_path = [], pathlib.Path(out_dir) / "tokens" / f"{shard_name}.bin"

    def apply_at(self, key, doc, stats):
        ids = self.tokenizer.encode(doc["text"])
        if self.eot_id is not None:
            ids = list(ids) + [self.eot_id]
        self.ids.extend(ids)
        stats.count("tokens", len(ids))
        return doc

    def end_shard(self):
        write_tokens(self.shard_path, np.asarray(self.ids, dtype=np.int64), self.n_vocab)
        self.ids = None

    def close(self, out_dir):
        files = sorted((pathlib.Path(out_dir) / "tokens").glob("*.bin"))
        parts = [read_tokens(f)[0] for f in files]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)
        write_tokens(pathlib.Path(out_dir) / self.output_name, ids, self.n_vocab)
        self.total_tokens = int(ids.size)

    def summary(self):
        return {"tokenizer": type(self.tokenizer).__name__ if self.tokenizer else None,
                "vocab_size": self.n_vocab,
                "tokens": getattr(self, "total_tokens", None)}


STAGE_TYPES = {
    "language": LanguageStage,
    "length": _filter_stage("length", LengthFilter),
    "symbol_ratio": _filter_stage("symbol_ratio", SymbolRatioFilter),
    "gopher_quality": _filter_stage("gopher_quality", GopherQuality),
    "gopher_repetition": _filter_stage("gopher_repetition", GopherRepetition),
    "c4": _filter_stage("c4", C4Filter),
    "fineweb": _filter_stage("fineweb", FineWebFilter),
    "perplexity": PerplexityStage,
    "exact_dedup": ExactDedupStage,
    "minhash_dedup": MinHashDedupStage,
    "simhash_dedup": SimHashDedupStage,
    "pii": PIIStage,
    "pii_ner": NERPIIStage,
    "toxicity": ToxicityStage,
    "url_filter": URLFilterStage,
    "tokenize": TokenizeStage,
}


def make_stage(spec):
    """Build a stage from one [[stage]] table: {"type": ..., "name": ..., **parameters}."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in STAGE_TYPES:
        raise ValueError(f"stage type: expected one of {sorted(STAGE_TYPES)}, got {kind!r}")
    name = spec.pop("name", kind)
    if kind in ("gopher_repetition",):   # TOML keys are strings; the n-gram tables want ints
        for k in ("top_ngram_max_char_frac", "dup_ngram_max_char_frac"):
            if k in spec:
                spec[k] = {int(n): float(v) for n, v in spec[k].items()}
    try:
        return STAGE_TYPES[kind](name=name, **spec)
    except TypeError as e:
        raise ValueError(f"stage {name!r} (type {kind}): {e}") from e
