"""Pipeline: readers/writers, exact accounting of every document (no loss, no duplication except
by a stage that says so), parallel == serial, resume after an interruption, TOML and CLI."""
import argparse
import gzip
import json

import numpy as np
import pytest

from minillm.data import Pipeline, make_stage, read_documents, write_jsonl
from minillm.cli.data import register
from minillm.data.pipeline import DEFAULT_PIPELINE, default_pipeline, load_config
from minillm.data.stages import Stage
from minillm.io import read_tokens

WORDS = ("river valley farmers stone houses water spring fields children weather clouds traders "
         "coast salt cloth cities village market school garden museum train station").split()


def _doc(rng, n_words=80):
    sents = []
    while sum(len(s.split()) for s in sents) < n_words:
        sents.append("The " + " ".join(rng.choice(WORDS, 9)) + " and the " + " ".join(rng.choice(WORDS, 4)) + ".")
    return "\n".join(sents)


def make_corpus(folder, seed=0):
    rng = np.random.default_rng(seed)
    docs = [_doc(rng) for _ in range(24)]
    docs[5] = docs[1]                                             # exact copy, other shard
    docs[9] = docs[2].replace("river", "rivers", 1)               # near-duplicate
    docs[13] = "Too short to keep."
    docs[17] = docs[17] + "\nWrite to jane.doe@example.com or call +44 20 7946 0958."
    docs[21] = docs[21] + "\nWhat the f.u.c.k is this."
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "a.jsonl", [{"id": f"a{i}", "text": t, "meta": {}} for i, t in enumerate(docs[:8])])
    write_jsonl(folder / "b.jsonl.gz", [{"id": f"b{i}", "text": t, "meta": {}} for i, t in enumerate(docs[8:16])])
    (folder / "c.txt").write_text("\n\n".join(t.replace("\n", " ") for t in docs[16:]))
    return docs


STAGES = [
    {"type": "length", "min_length": 20},
    {"type": "gopher_quality"},
    {"type": "exact_dedup"},
    {"type": "minhash_dedup", "threshold": 0.7, "num_perm": 64, "ngram": 3},
    {"type": "pii"},
    {"type": "toxicity"},
    {"type": "tokenize", "tokenizer": "bytes"},
]


def _ids_in(folder, text_unit="paragraph"):
    from minillm.data import list_shards
    return [d["id"] for p in list_shards(folder) for d in read_documents(p, text_unit)]


def _check_accounting(report, out, ids_in):
    ids_out = [d["id"] for p in sorted((out / "shards").glob("*.jsonl.gz")) for d in read_documents(p)]
    dropped = [d[0] for d in report.dropped]
    assert len(ids_out) == len(set(ids_out))                       # nothing duplicated
    assert sorted(ids_out + dropped) == sorted(ids_in)             # nothing lost
    prev_out = None
    for name, st in report.stages.items():
        assert st.docs_in == st.docs_out + sum(st.dropped.values()), name
        assert prev_out is None or st.docs_in == prev_out, name     # stage k out = stage k+1 in
        prev_out = st.docs_out
    assert report.docs_out == len(ids_out) and report.docs_in == len(ids_in)
    return ids_out


def test_every_document_is_accounted_for_and_tokens_match(tmp_path):
    make_corpus(tmp_path / "in")
    ids_in = _ids_in(tmp_path / "in")
    report = Pipeline(STAGES, workers=2, text_unit="paragraph").run(tmp_path / "in", tmp_path / "out")
    ids_out = _check_accounting(report, tmp_path / "out", ids_in)
    reasons = {(d[1], d[2]) for d in report.dropped}
    assert {("length", "too_short"), ("exact_dedup", "exact_duplicate"),
            ("minhash_dedup", "near_duplicate"), ("toxicity", "blocklist")} <= reasons
    assert "a5" not in ids_out and "a1" in ids_out and "b1" not in ids_out   # later copy goes
    assert report.stages["pii"].counters["pii_email"] == 1
    assert report.stages["pii"].counters["pii_phone"] == 1
    texts = [d["text"] for p in sorted((tmp_path / "out" / "shards").glob("*.jsonl.gz"))
             for d in read_documents(p)]
    assert any("<EMAIL>" in t and "<PHONE>" in t for t in texts)
    tokens, vocab = read_tokens(tmp_path / "out" / "tokens.bin")
    assert vocab == 256
    np.testing.assert_array_equal(tokens, np.frombuffer("".join(texts).encode(), dtype=np.uint8))
    clusters = [json.loads(l) for l in (tmp_path / "out" / "_work" / "minhash_dedup_clusters.jsonl").open()]
    assert any({m["id"] for m in c["members"]} == {"a2", "b1"} for c in clusters)


def test_parallel_run_equals_serial_run(tmp_path):
    make_corpus(tmp_path / "in", seed=1)
    r1 = Pipeline(STAGES, workers=1, text_unit="paragraph").run(tmp_path / "in", tmp_path / "o1")
    r2 = Pipeline(STAGES, workers=2, text_unit="paragraph").run(tmp_path / "in", tmp_path / "o2")
    assert sorted(r1.dropped) == sorted(r2.dropped)
    for f in sorted((tmp_path / "o1" / "shards").glob("*.gz")):
        assert gzip.open(f).read() == gzip.open(tmp_path / "o2" / "shards" / f.name).read()


class Interrupt(Stage):
    """Raises on one document, like a crash half-way through a run."""
    fail_on = "b3"

    def apply(self, doc, stats):
        if doc["id"] == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        return doc


def test_interrupted_run_resumes_without_redoing_finished_shards(tmp_path):
    make_corpus(tmp_path / "in")
    stages = lambda: [make_stage({"type": "exact_dedup"}), Interrupt(name="interrupt"),
                      make_stage({"type": "pii"})]
    with pytest.raises(KeyboardInterrupt):
        Pipeline(stages(), text_unit="paragraph").run(tmp_path / "in", tmp_path / "out")
    done = sorted((tmp_path / "out" / "_work" / "seg0").glob("*.stats.json"))
    assert [p.name for p in done] == ["00000-a.stats.json"]          # shard a finished, b did not
    mtime = done[0].stat().st_mtime_ns
    Interrupt.fail_on = None
    try:
        report = Pipeline(stages(), text_unit="paragraph").run(tmp_path / "in", tmp_path / "out")
    finally:
        Interrupt.fail_on = "b3"
    assert report.tasks_run == 2 and report.tasks_total == 3       # only b and c ran again
    assert done[0].stat().st_mtime_ns == mtime
    _check_accounting(report, tmp_path / "out", _ids_in(tmp_path / "in"))
    with pytest.raises(ValueError, match="different pipeline"):
        Pipeline([make_stage({"type": "pii"})], text_unit="paragraph").run(tmp_path / "in", tmp_path / "out")


def test_toml_pipeline_runs_from_the_cli(tmp_path, capsys):
    make_corpus(tmp_path / "in")
    (tmp_path / "p.toml").write_text("""
[input]
path = "in"
text_unit = "paragraph"
[output]
path = "out"
[run]
workers = 1
[[stage]]
type = "length"
min_length = 20
[[stage]]
type = "minhash_dedup"
threshold = 0.7
num_perm = 64
ngram = 3
[[stage]]
type = "gopher_repetition"
[stage.top_ngram_max_char_frac]
2 = 0.3
""")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "run", str(tmp_path / "p.toml"), "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "LSH b=" in out and "near_duplicate" in out
    assert (tmp_path / "out" / "report.json").exists()
    args = parser.parse_args(["data", "lsh", "--threshold", "0.5"])
    assert args.func(args) == 0 and "false-positive area" in capsys.readouterr().out


def test_config_errors_and_default_pipeline(tmp_path):
    assert [s.name for s in default_pipeline().stages][:2] == ["language", "length"]
    assert load_config(DEFAULT_PIPELINE)["run"]["workers"] == 2
    with pytest.raises(ValueError, match="stage type"):
        make_stage({"type": "sparkle"})
    with pytest.raises(ValueError, match="gopher_quality.*min_wordz"):
        make_stage({"type": "gopher_quality", "min_wordz": 3})
    with pytest.raises(ValueError, match="names must be unique"):
        Pipeline([{"type": "pii"}, {"type": "pii"}])
    (tmp_path / "bad.toml").write_text("[[stage]]\ntype = 'pii'\n[oops]\n")
    with pytest.raises(ValueError, match="unknown top-level"):
        load_config(tmp_path / "bad.toml")


def test_readers_and_writers_round_trip(tmp_path):
    docs = [{"id": "x", "text": "héllo\nworld", "meta": {"k": 1}}, {"id": "y", "text": "two", "meta": {}}]
    for name in ("d.jsonl", "d.jsonl.gz"):
        assert write_jsonl(tmp_path / name, docs) == (2, len("héllo\nworld".encode()) + 3)
        assert list(read_documents(tmp_path / name)) == docs
    (tmp_path / "t.txt").write_text("a b\n\nc d\ne\n")
    assert [d["text"] for d in read_documents(tmp_path / "t.txt", "paragraph")] == ["a b", "c d\ne"]
    assert [d["text"] for d in read_documents(tmp_path / "t.txt", "line")] == ["a b", "c d", "e"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        list(read_documents(tmp_path / "bad.jsonl"))


def test_simhash_perplexity_and_bpe_tokenize_stages_in_worker_processes(tmp_path):
    tokenizer = pytest.importorskip("minillm.tokenizer")
    make_corpus(tmp_path / "in")
    stages = [{"type": "simhash_dedup", "max_distance": 6, "ngram": 2, "keep": "longest"},
              {"type": "perplexity", "order": 3, "high_pct": 100.0, "low_pct": 0.0},
              {"type": "tokenize", "tokenizer": "bpe", "vocab_size": 300}]
    report = Pipeline(stages, workers=2, text_unit="paragraph").run(tmp_path / "in", tmp_path / "out")
    ids_out = _check_accounting(report, tmp_path / "out", _ids_in(tmp_path / "in"))
    assert report.stages["simhash_dedup"].dropped["near_duplicate"] >= 2   # the copy and the edit
    assert {"a1", "a5"} - set(ids_out) and {"a2", "b1"} - set(ids_out)
    texts = [d["text"] for p in sorted((tmp_path / "out" / "shards").glob("*.jsonl.gz"))
             for d in read_documents(p)]
    tok = tokenizer.BPETokenizer.load(tmp_path / "out" / "_work" / "tokenizer.bpe")
    ids, vocab = read_tokens(tmp_path / "out" / "tokens.bin")
    assert vocab == tok.n_vocab
    eot = tok.special_tokens["<|endoftext|>"]
    want = [i for t in texts for i in tok.encode(t) + [eot]]
    np.testing.assert_array_equal(ids, want)
