"""The pipeline's resume state is data, never code (hardening, item 2): a finalised global stage is
stored as JSON in <out>/_work and restored from it; a planted pickle is never loaded; a damaged
state file is one clear error."""
import json
import pathlib
import pickle

import pytest

from minillm.data import Pipeline, read_documents
from minillm.io import read_tokens

from .test_data_pipeline import make_corpus

STAGES = [{"type": "exact_dedup"},
          {"type": "minhash_dedup", "threshold": 0.7, "num_perm": 32, "ngram": 3},
          {"type": "simhash_dedup", "max_distance": 6, "ngram": 2, "keep": "longest"},
          {"type": "perplexity", "order": 3, "high_pct": 90.0},
          {"type": "tokenize", "tokenizer": "bpe", "vocab_size": 300}]


class _Touch:
    """Unpickling this creates a file: the proof that loading ran code."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def _outputs(out):
    docs = [d for p in sorted((out / "shards").glob("*.jsonl.gz")) for d in read_documents(p)]
    return docs, read_tokens(out / "tokens.bin")[0].tolist()


def _run(src, out):
    return Pipeline(STAGES, workers=1, text_unit="paragraph").run(src, out)


def test_resume_restores_every_global_stage_from_json(tmp_path):
    make_corpus(tmp_path / "in")
    first = _run(tmp_path / "in", tmp_path / "out")
    want = _outputs(tmp_path / "out")
    work = tmp_path / "out" / "_work"
    states = sorted(work.glob("seg*.stage.json"))
    assert len(states) == len(STAGES)                       # one per global stage, all JSON
    for p in states:
        json.loads(p.read_text())
    assert not list(work.glob("*.pkl"))
    # an interruption after every stage was finalised: the shards are redone from the saved states
    for p in list(work.glob("seg*/*.stats.json")) + list((tmp_path / "out" / "shards").glob("*")):
        p.unlink()
    second = _run(tmp_path / "in", tmp_path / "out")
    assert _outputs(tmp_path / "out") == want
    assert [d[:3] for d in second.dropped] == [d[:3] for d in first.dropped]


def test_a_planted_pickle_in_the_output_folder_is_never_loaded(tmp_path):
    make_corpus(tmp_path / "in")
    _run(tmp_path / "in", tmp_path / "out")
    marker = tmp_path / "code_ran"
    for k in range(len(STAGES) + 1):                        # where the old format lived
        (tmp_path / "out" / "_work" / f"seg{k}.stage.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    _run(tmp_path / "in", tmp_path / "out")
    assert not marker.exists()


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a stage state file"),
    ("[" * 100000 + "]" * 100000, "not a stage state file"),        # nesting past the recursion limit
    ('{"drop": [["a", 1]]}', "expected a list of \\[shard, position\\] integer pairs"),
    ('{"drop": 3}', "'drop' of type list"),
], ids=["not-json", "deep-nesting", "bad-key", "bad-type"])
def test_a_damaged_state_file_is_one_clear_error(tmp_path, content, match):
    make_corpus(tmp_path / "in")
    stages = [{"type": "exact_dedup"}, {"type": "tokenize", "tokenizer": "bytes"}]
    Pipeline(stages, workers=1).run(tmp_path / "in", tmp_path / "out")
    (tmp_path / "out" / "_work" / "seg0.stage.json").write_text(content)   # exact_dedup
    with pytest.raises(ValueError, match=match):
        Pipeline(stages, workers=1).run(tmp_path / "in", tmp_path / "out")
