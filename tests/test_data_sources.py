"""`minillm train --data`: text files, folders, JSON lines and token files, weighted mixtures, the
held-out split, metrics.jsonl, and clear errors for missing or empty sources before training."""
import gzip
import json

import numpy as np
import pytest

from minillm.cli import main as cli
from minillm.data_sources import MixtureBatches, check_source, find_tokenizer, parse_data_spec, read_text
from minillm.io import read_tokens, write_tokens
from minillm.metrics import MetricsLog

TEXT = "The quick brown fox jumps over the lazy dog. " * 60
TRAIN = ["--preset", "llama-tiny", "--tokenizer", "byte", "--steps", "6", "--batch-size", "2",
         "--seq-len", "16", "--eval-interval", "3", "--ckpt-interval", "3"]


def records(path):
    return [json.loads(line) for line in open(path)]


def test_parse_data_spec():
    assert parse_data_spec("a/b.txt") == parse_data_spec("a/b.txt:1")
    assert parse_data_spec("a/b.txt:0.25").weight == 0.25
    with pytest.raises(ValueError, match="--data: expected PATH or PATH:WEIGHT"):
        parse_data_spec("a:b:c")
    with pytest.raises(ValueError, match="weight must be a positive number, got -1.0"):
        parse_data_spec("a.txt:-1")


def test_sources_are_checked_and_read(tmp_path):
    (tmp_path / "a.txt").write_text("first document")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    assert check_source(str(tmp_path)) == "text"
    assert read_text(str(tmp_path)) == "first document\n\nsecond\n\nthird"
    write_tokens(tmp_path / "t.bin", np.arange(10), 16)
    assert check_source(str(tmp_path / "t.bin")) == "tokens"
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n ")
    write_tokens(tmp_path / "none.bin", np.zeros(0, dtype=np.int64), 16)
    with pytest.raises(FileNotFoundError, match="--data: no such file or folder: .*missing.txt"):
        check_source(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match=r"--data: .*empty.txt is empty \(0 bytes\)"):
        check_source(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError, match="holds 0 tokens"):
        check_source(str(tmp_path / "none.bin"))
    with pytest.raises(ValueError, match="holds no text"):
        read_text(str(tmp_path / "blank.txt"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=r"--data: folder .*sub holds no .txt or .jsonl\(.gz\) files"):
        check_source(str(tmp_path / "sub"))


def test_single_source_batches_are_the_plain_token_file_windows(tmp_path):
    ids = np.random.default_rng(0).integers(0, 50, 3000)
    write_tokens(tmp_path / "t.bin", ids, 50)
    x, y = MixtureBatches(str(tmp_path / "t.bin"), 4, 16, seed=3).batch(7)
    rng = np.random.default_rng([3, 7])                      # the documented rule: batch i <- (seed, i)
    starts = rng.integers(0, len(ids) - 17, size=4)
    assert np.array_equal(x, np.stack([ids[s:s + 16] for s in starts]))
    assert np.array_equal(y[:, :-1], x[:, 1:])


def test_mixture_follows_weights_and_held_out_tails_stay_apart(tmp_path):
    write_tokens(tmp_path / "a.bin", np.full(2000, 1), 8)              # source a: all ones
    write_tokens(tmp_path / "b.bin", np.r_[np.full(1800, 2), np.full(200, 3)], 8)  # b's tail is 3s
    spec = [f"{tmp_path / 'a.bin'}:3", f"{tmp_path / 'b.bin'}:1"]
    train = MixtureBatches(spec, 64, 8, seed=0, split="train", val_fraction=0.1)
    rows = np.concatenate([train.batch(i)[0][:, 0] for i in range(50)])
    share_a = np.mean(rows == 1)
    assert abs(share_a - 0.75) < 0.03                                  # 3200 draws: sd ~0.008
    assert not np.any(rows == 3)                                       # never a held-out token
    val = MixtureBatches(spec, 64, 8, seed=1, split="val", val_fraction=0.1)
    vrows = np.concatenate([val.batch(i)[0] for i in range(5)])
    assert set(np.unique(vrows)) <= {1, 3}                             # b's val part is its tail
    with pytest.raises(ValueError, match=r"b.bin: its val part has 20 tokens, need at least seq_len \+ 2"):
        MixtureBatches(str(tmp_path / "b.bin"), 2, 30, seed=0, split="val", val_fraction=0.01)


def test_metrics_log_drops_the_steps_a_resume_redoes(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(str(path))
    for s in range(1, 6):
        log.write({"step": s, "loss": 1.0})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')                                     # cut short by a crash
    log = MetricsLog(str(path), resume_step=3)
    log.write({"step": 4, "loss": 0.5})
    log.close()
    assert [(r["step"], r["loss"]) for r in records(path)] == [(1, 1.0), (2, 1.0), (3, 1.0), (4, 0.5)]


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
