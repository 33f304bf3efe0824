"""`minillm train` as a new user meets it: Ctrl-C says where the run stopped and how to resume, the
resumed run's loss curve covers the whole run, re-running a finished run says so and keeps its
files, and a short run evaluates and checkpoints at its end rather than every step."""
import json

import pytest

import minillm.cli.train as cli_train
from minillm.cli import main
from minillm.train import train as real_train

TINY = ["--preset", "llama-tiny", "--tokenizer", "byte", "--batch-size", "2", "--seq-len", "16"]


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_interrupt_resume_and_rerun(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--steps", "8", "--ckpt-interval", "4", *TINY]

    def ctrl_c(step, grads):
        if step == 5:                 # steps 1..5 done, the newest checkpoint is step 4
            raise KeyboardInterrupt
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: real_train(*a, **k, fault=ctrl_c))
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.strip() == (f"minillm train: interrupted at step 5; re-run the same command to resume from "
                           f"the checkpoint of step 4 ({run}/ckpt/step_0000004)")
    monkeypatch.setattr(cli_train, "train", real_train)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 4" in out
    axis = [line for line in out.splitlines() if line.strip().startswith("+")][0]
    assert axis.strip() == "+" + "-" * 8              # the curve holds steps 1..8, not only 5..8
    assert "step 1 .. 8" in out
    assert [r["step"] for r in _metrics(run) if "loss" in r] == list(range(1, 9))
    png = run / "loss.png"
    before = png.read_bytes() if png.exists() else None
    assert main(argv) == 0                             # a finished run: nothing to do, nothing lost
    out = capsys.readouterr().out
    assert "already trained 8 steps: nothing to do" in out
    assert (png.read_bytes() if png.exists() else None) == before
    assert [r["step"] for r in _metrics(run) if "loss" in r] == list(range(1, 9))


def test_short_run_evaluates_and_checkpoints_at_its_end(tmp_path, capsys):
    run = tmp_path / "short"
    assert main(["train", "--out", str(run), "--steps", "10", *TINY]) == 0
    assert [r["step"] for r in _metrics(run) if "eval_loss" in r] == [10]
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["latest", "step_0000000", "step_0000010"]


@pytest.mark.parametrize("steps, every", [(60, 10), (450, 75)])
def test_default_cadence(tmp_path, steps, every, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli_train, "train", lambda model, tc, **k: (seen.setdefault("tc", tc), (model, []))[1])
    assert main(["train", "--out", str(tmp_path / "c"), "--steps", str(steps), *TINY]) == 0
    assert seen["tc"].eval_interval == every and seen["tc"].ckpt_interval == every
