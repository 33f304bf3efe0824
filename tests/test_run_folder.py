"""load_run gives back the newest checkpoint's model and the run's tokenizer, and says what is missing."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.optim import AdamW
from minillm.cli import main as cli_main
from minillm.run_folder import checkpoint_dir, clear_run, load_run, load_run_tokenizer, tokenizer_path
from minillm.tokenizer import BPETokenizer, ByteTokenizer


def _model(seed):
    return Transformer(ModelConfig.preset("llama-tiny", vocab_size=300, max_seq_len=16), seed=seed)


def test_load_run_returns_newest_checkpoint_and_tokenizer(tmp_path):
    old, new = _model(0), _model(1)
    save_checkpoint(checkpoint_dir(tmp_path), old, AdamW(old.params), {"step": 1})
    save_checkpoint(checkpoint_dir(tmp_path), new, AdamW(new.params), {"step": 2})
    tok = BPETokenizer.train("the cat sat on the mat " * 30, vocab_size=270)
    tok.save(tokenizer_path(tmp_path))
    model, back = load_run(tmp_path)
    for k, w in new.params.items():
        np.testing.assert_array_equal(model.params[k], w)
    assert back.encode("the cat") == tok.encode("the cat")
    ByteTokenizer().save(tokenizer_path(tmp_path))
    assert isinstance(load_run_tokenizer(tmp_path), ByteTokenizer)


def test_missing_parts_are_named(tmp_path):
    with pytest.raises(ValueError, match="--run: .* has no checkpoint"):
        load_run(tmp_path, "--run")
    m = _model(0)
    save_checkpoint(checkpoint_dir(tmp_path), m, AdamW(m.params), {"step": 1})
    with pytest.raises(ValueError, match="run_dir: .*no tokenizer.model"):
        load_run(tmp_path)


def test_fresh_deletes_only_what_a_run_wrote(tmp_path):
    run = tmp_path / "run"
    m = _model(0)
    save_checkpoint(checkpoint_dir(run), m, AdamW(m.params), {"step": 1})
    ByteTokenizer().save(tokenizer_path(run))
    (run / "metrics.jsonl").write_text("{}\n")
    assert clear_run(run) == ["ckpt", "metrics.jsonl", "tokenizer.model"]
    assert list(run.iterdir()) == []
    assert clear_run(tmp_path / "missing") == []


def test_fresh_refuses_a_folder_it_did_not_create(tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    (home / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match=r"--fresh: .* did not write \(thesis.tex\); refusing"):
        clear_run(home)
    assert sorted(p.name for p in home.iterdir()) == ["metrics.jsonl", "thesis.tex"]
    # the command says so in one line and deletes nothing
    assert cli_main(["train", "--fresh", "--out", str(home), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minillm train: error: --fresh:") and err.count("\n") == 1
    assert (home / "thesis.tex").read_text() == "years of work"
