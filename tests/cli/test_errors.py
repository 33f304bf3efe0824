"""The CLI speaks in one line: every bad command line ends with `minillm CMD: error: ...` on stderr,
no traceback, exit code 2 for a command line that cannot work and 1 for a failure while running;
--debug / MINILLM_DEBUG=1 show the traceback instead (minillm/cli/__init__.py, cli/args.py)."""
import os
import shlex
import subprocess
import sys

import pytest

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.cli import main
from minillm.optim import AdamW
from minillm.run_folder import checkpoint_dir, tokenizer_path
from minillm.tokenizer import ByteTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A folder with a tiny run, a text file, a bad TOML, a JSON-lines file and a folder."""
    d = tmp_path_factory.mktemp("cli")
    m = Transformer(ModelConfig.preset("llama-tiny", vocab_size=256, max_seq_len=32, n_layer=1), seed=0)
    save_checkpoint(checkpoint_dir(d / "run"), m, AdamW(m.params), {"step": 1})
    ByteTokenizer().save(tokenizer_path(d / "run"))
    (d / "text.txt").write_text("hello world\n" * 20)
    (d / "bad.toml").write_text("[input\npath = 3\n")
    (d / "nostage.toml").write_text('[input]\npath = "x"\n')
    (d / "sft.jsonl").write_text('{"instruction": "hi", "output": "ho"}\n')
    (d / "notjson.jsonl").write_text("this is not json\n")
    (d / "empty").mkdir()
    (d / "garbage.bpe").write_bytes(b"\x00\x01garbage")
    return d


# (argv with {d} for the folder above, exit code). Usage errors first, then runtime failures.
BAD = [
    ("train --grad-accum 0", 2), ("train --steps -5", 2), ("train --steps 1.5", 2), ("train --lr nan", 2),
    ("train --lr 0", 2), ("train --batch-size 0", 2), ("train --preset nope", 2), ("train --val-fraction 1", 2),
    ("train --seq-len x", 2), ("train --tokenizer words", 2), ("train --vocab-size 100 --out {d}/v", 2),
    ("train --out {d}/text.txt", 2), ("train --data {d}/missing.txt --out {d}/t1 --steps 1", 2),
    ("train --fresh --out {d}/empty_not_run --steps 1", 2), ("train --bogus", 2),
    ("plan --flops 1e18 --gflops 0", 2), ("plan --flops -1", 2), ("plan --flops inf", 2), ("plan", 2),
    ("plan --flops 1e18 --plot {d}/empty", 2),
    ("tokenizer encode --model {d}/missing --text hi", 2), ("tokenizer encode --model {d}/empty --text hi", 2),
    ("tokenizer decode --model {d}/garbage.bpe x y", 2), ("tokenizer train {d}/text.txt --vocab-size 0 --out t", 2),
    ("tokenizer train {d}/missing.txt --vocab-size 300 --out t", 2), ("tokenizer", 2),
    ("generate --prompt hi --run {d}/run --max-new-tokens 0", 2),
    ("generate --prompt hi --run {d}/run --max-new-tokens 1e9", 2),
    ("generate --prompt hi --run {d}/run --temperature -1", 2), ("generate --prompt hi --run {d}/run --top-p 0", 2),
    ("generate --prompt hi --run {d}/run --top-k 0", 2), ("generate --prompt hi --run {d}/run --seed -1", 2),
    ("generate --prompt hi --model {d}/missing.gguf", 2), ("generate --prompt '' --run {d}/run", 2),
    ("chat --run {d}/run --max-new-tokens 0", 2), ("sft --run {d}/run --data {d}/missing.jsonl", 2),
    ("sft --run {d}/run --data {d}/sft.jsonl --steps 0", 2), ("sft --run {d}/missing --data {d}/sft.jsonl", 2),
    ("rag index {d}/missing --out {d}/idx", 2), ("rag index {d}/empty --out {d}/text.txt", 2),
    ("rag index {d}/empty --out {d}/idx --chunk-size 10 --overlap 10", 2), ("rag query {d}/missing q", 2),
    ("quantize --run {d}/run", 2), ("quantize --run {d}/run --out q.st --group-size 0", 2),
    ("quantize --model {d}/missing.gguf --out q.st", 2), ("data run {d}/missing.toml", 2),
    ("data run {d}/nostage.toml --workers 0", 2), ("data lsh --threshold 2", 2), ("data lsh --num-perm 0", 2),
    ("serve --model {d}/missing", 2), ("serve --model {d}/run --port 70000", 2), ("nosuchcommand", 2),
    ("data run {d}/bad.toml", 1), ("data run {d}/nostage.toml", 1), ("tokenizer encode --model {d}/garbage.bpe --text hi", 1),
    ("tokenizer encode --model {d}/text.txt --text hi", 1), ("generate --prompt hi --run {d}/empty", 1),
    ("generate --prompt hi --model {d}/text.txt", 1), ("sft --run {d}/empty --data {d}/sft.jsonl --out {d}/s", 1),
    ("sft --run {d}/run --data {d}/notjson.jsonl --out {d}/s --steps 1", 1),
    ("rag query {d}/empty q", 1), ("quantize --run {d}/empty --out {d}/q.st", 1),
]


def _split(argv, d):
    return shlex.split(argv.format(d=d))


@pytest.mark.parametrize("argv, code", BAD, ids=[a for a, _ in BAD])
def test_bad_invocations_get_one_line(env, argv, code, capsys):
    (env / "empty_not_run").mkdir(exist_ok=True)
    (env / "empty_not_run" / "keep.txt").write_text("mine")
    args = _split(argv, env)
    got = main(args)
    err = capsys.readouterr().err
    lines = err.strip("\n").split("\n")
    nested = args[0] in ("tokenizer", "rag", "data") and len(args) > 1 and not args[1].startswith("-")
    prefix = "minillm" if args[0] == "nosuchcommand" else "minillm " + " ".join(args[:2 if nested else 1])
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prefix}: error: "), (prefix, err)
    assert (env / "empty_not_run" / "keep.txt").exists()


def test_default_pipeline_says_where_to_point_its_input(tmp_path, capsys):
    assert main(["data", "default-config"]) == 0
    (tmp_path / "pipeline.toml").write_text(capsys.readouterr().out)
    assert main(["data", "run", str(tmp_path / "pipeline.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"minillm data run: error: input: {tmp_path / 'corpus'} does not exist")
    assert "point [input] path" in err and "--input" in err


def test_no_command_prints_help_and_exit_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_version_and_help(capsys):
    from minillm import __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"minillm {__version__}"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "minillm COMMAND --help" in " ".join(out.split())
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 450)", "(default: 0.003)", "(default: runs/minillm)", "(default: llama-small)"):
        assert default in out


def _run(args, **env):
    e = {**os.environ, "PYTHONPATH": ROOT, **env}
    return subprocess.run([sys.executable, "-m", "minillm.cli", *args], capture_output=True, text=True,
                          env=e, timeout=120)


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "bad.toml").write_text("[input\n")
    p = _run(["data", "run", str(tmp_path / "bad.toml")])
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert p.stderr.startswith("minillm data run: error: ") and "invalid TOML" in p.stderr
    p = _run(["--debug", "data", "run", str(tmp_path / "bad.toml")])
    assert p.returncode == 1 and "Traceback" in p.stderr
    p = _run(["data", "run", str(tmp_path / "bad.toml")], MINILLM_DEBUG="1")
    assert "Traceback" in p.stderr


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    import minillm.cli.plan as plan
    monkeypatch.setattr(plan, "chinchilla_optimal", lambda C: [][1])
    assert main(["plan", "--flops", "1e18"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minillm plan: error: IndexError: list index out of range (a bug? re-run with --debug")
    assert err.count("\n") == 1


def test_long_prompt_is_trimmed_to_the_context(env, capsys):
    prompt = "word " * 20_000                         # 100k characters, a RoPE model with context 32
    assert main(["generate", "--run", str(env / "run"), "--prompt", prompt, "--max-new-tokens", "4",
                 "--temperature", "0"]) == 0
    cap = capsys.readouterr()
    assert "kept the last 28" in cap.err and cap.out.endswith("\n")
