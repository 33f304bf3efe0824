"""A tiny model served by a real `minillm serve` subprocess on 127.0.0.1 and a free port.

The model has random weights (its text is gibberish, which equality tests do not mind) and a BPE
vocabulary trained in a second on CPython's own documentation, with ChatML's special tokens."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.optim import AdamW

pytest.importorskip("uvicorn", reason="the server needs uvicorn: pip install minillm[serve]")
pytest.importorskip("starlette", reason="the server needs starlette: pip install minillm[serve]")
pytest.importorskip("openai", reason="the tests talk to the server with the official openai client")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CONFIG = dict(arch="llama", vocab_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=64, ffn_dim=176,
              max_seq_len=256)


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """-> (path, model, tokenizer): a `minillm train`-style run folder."""
    from pydoc_data.topics import topics
    from minillm.tokenizer import BPETokenizer
    path = tmp_path_factory.mktemp("served") / "tiny-chat"
    path.mkdir()
    text = "".join(list(topics.values())[:40])
    tok = BPETokenizer.train(text, CONFIG["vocab_size"], special_tokens=SPECIALS)
    tok.save(str(path / "tokenizer.model"))
    model = Transformer(ModelConfig(**CONFIG), seed=3)
    save_checkpoint(str(path / "ckpt"), model, AdamW(model.params), {"step": 1})
    return str(path), model, tok


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, proc, url, model):
        self.proc, self.url, self.model = proc, url, model

    def stop(self, sig=signal.SIGTERM):
        return stop(self.proc, sig)

    def client(self, **kw):
        from openai import OpenAI
        return OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "none"), max_retries=0, **kw)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.status, r.read().decode()

    def metrics(self):
        """{name (with labels): float} from /metrics."""
        out = {}
        for line in self.get("/metrics")[1].splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def start_server(folder, *extra, timeout=60):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "import sys; from minillm.cli import main; sys.exit(main())", "serve",
           "--model", folder, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise RuntimeError(f"server did not start: {proc.stdout.read()}")
        time.sleep(0.2)


def stop(proc, sig=signal.SIGTERM):
    """Stop the server; -> its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
def serve(run_folder):
    """serve(*extra args) -> Served; every server started is stopped at the end of the test."""
    procs = []

    def start(*extra):
        proc, url = start_server(run_folder[0], *extra)
        procs.append(proc)
        return Served(proc, url, os.path.basename(run_folder[0]))
    try:
        yield start
    finally:
        for p in procs:
            stop(p)


@pytest.fixture(scope="module")
def server(run_folder):
    """One server shared by a module's tests (they must leave it idle)."""
    proc, url = start_server(run_folder[0], "--max-num-seqs", "8", "--kv-blocks", "160", "--block-size", "8")
    try:
        yield Served(proc, url, os.path.basename(run_folder[0]))
    finally:
        stop(proc)
