"""`minillm train --data`: a text file, a `minillm data run` token file with its tokenizer, and
missing, empty or mixed sources that fail with a one-line error before any training starts."""
import json

import numpy as np
import pytest

from minillm.cli import main as cli
from minillm.data.sources import find_tokenizer
from minillm.io import read_tokens, write_tokens

TEXT = "The quick brown fox jumps over the lazy dog. " * 60
TRAIN = ["--preset", "llama-tiny", "--tokenizer", "byte", "--steps", "6", "--batch-size", "2",
         "--seq-len", "16", "--eval-interval", "3", "--ckpt-interval", "3"]


def records(path):
    return [json.loads(line) for line in open(path)]


def test_train_on_a_text_file_writes_metrics(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    out = tmp_path / "run"
    assert cli(["train", "--data", str(tmp_path / "corpus.txt"), "--out", str(out), *TRAIN]) == 0
    recs = records(out / "metrics.jsonl")
    steps = [r for r in recs if "loss" in r]
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert all({"step", "loss", "grad_norm", "lr", "tokens"} <= set(r) for r in steps)
    assert steps[-1]["tokens"] == 6 * 2 * 16
    assert [r["step"] for r in recs if "eval_loss" in r] == [3, 6]
    assert (out / "tokenizer.model").exists() and (out / "ckpt" / "latest").exists()


def test_train_on_a_data_pipeline_token_file(tmp_path):
    pytest.importorskip("minillm.tokenizer")
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.txt").write_text(TEXT + f" document {i}")
    (tmp_path / "p.toml").write_text(f"""
[input]
path = "{tmp_path / 'in'}"
[output]
path = "{tmp_path / 'tok'}"
[run]
workers = 1
[[stage]]
type = "tokenize"
tokenizer = "bpe"
vocab_size = 300
""")
    assert cli(["data", "run", str(tmp_path / "p.toml"), "--quiet"]) == 0
    tokens = tmp_path / "tok" / "tokens.bin"
    assert find_tokenizer(str(tokens)) == str(tmp_path / "tok" / "_work" / "tokenizer.bpe")
    out = tmp_path / "run"
    args = ["train", "--data", str(tokens), "--out", str(out), *TRAIN]
    args[args.index("--seq-len") + 1] = "8"
    assert cli(args) == 0
    assert (out / "tokenizer.model").read_bytes() == (tmp_path / "tok" / "_work" / "tokenizer.bpe").read_bytes()
    assert 256 < read_tokens(tokens)[1] <= 300 and records(out / "metrics.jsonl")[-1]["step"] == 6


@pytest.mark.parametrize("make", ["missing", "empty", "empty_tokens", "mixed"])
def test_bad_data_is_a_clear_error_before_training(tmp_path, capsys, make):
    (tmp_path / "ok.txt").write_text(TEXT)
    bad = tmp_path / "bad.bin"
    if make == "empty":
        bad.write_bytes(b"")
    elif make == "empty_tokens":
        write_tokens(bad, np.zeros(0, dtype=np.int64), 256)
    elif make == "mixed":
        write_tokens(bad, np.arange(100), 256)
    out = tmp_path / "run"
    code = cli(["train", "--data", str(tmp_path / "ok.txt"), "--data", f"{bad}:2", "--out", str(out), *TRAIN])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("minillm train: error: --data: ")
    assert {"missing": "no such file", "empty": "is empty", "empty_tokens": "0 tokens",
            "mixed": "cannot mix"}[make] in err
    assert not (out / "ckpt").exists() and not (out / "metrics.jsonl").exists()
