"""`minillm generate` / `minillm chat` and the streaming UTF-8 decoder (cli.py)."""
import io

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.cli import main
from minillm.inference import generate
from minillm.inference.cli import StreamDecoder, chat_format, chat_reply
from minillm.optim import AdamW
from minillm.tokenizer import ByteTokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    model = Transformer(ModelConfig.preset("llama-tiny"), seed=2)
    save_checkpoint(str(d / "ckpt"), model, AdamW(model.params), {"step": 1})
    ByteTokenizer().save(str(d / "tokenizer.model"))
    return str(d)


def test_stream_decoder_never_emits_half_a_character():
    text = "héllo €100 — 日本語 🙂!"
    dec = StreamDecoder(ByteTokenizer())
    pieces = [dec.push(b) for b in text.encode("utf-8")]
    assert "".join(pieces) + dec.flush() == text
    assert not any("\ufffd" in p for p in pieces)
    assert sum(1 for p in pieces if p) < len(text.encode("utf-8"))  # multi-byte chars waited


def test_stream_decoder_flushes_invalid_bytes():
    dec = StreamDecoder(ByteTokenizer())
    assert dec.push(0xE2) == ""          # could still start a 3-byte character
    assert dec.flush() == "\ufffd"       # ...but the stream ended


def test_generate_command_streams_the_model_output(run_dir, capsys):
    assert main(["generate", "--prompt", "Hi", "--run", run_dir, "--max-new-tokens", "12",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out
    from minillm.checkpoint import latest_checkpoint, load_checkpoint
    model = load_checkpoint(latest_checkpoint(run_dir + "/ckpt"))[0]
    expected = ByteTokenizer().decode(generate(model, list(b"Hi"), 12).tolist())
    assert out == "Hi" + expected + "\n"


def test_generate_command_without_checkpoint_says_train_first(tmp_path, capsys):
    assert main(["generate", "--prompt", "Hi", "--run", str(tmp_path)]) == 1
    assert "minillm train" in capsys.readouterr().err


class ScriptedModel:
    """Stand-in model whose greedy continuation of a prompt of length n is `script`, byte by byte."""

    def __init__(self, n, script):
        self.config = ModelConfig.preset("llama-tiny")
        self.n, self.script = n, script.encode("utf-8")

    def forward(self, tokens, kv_cache=None):
        tokens = np.asarray(tokens)
        start = kv_cache.pos if kv_cache is not None else 0
        T = tokens.shape[1]
        logits = np.zeros((1, T, 256), dtype=np.float32)
        for t in range(T):
            i = start + t + 1 - self.n  # index into the script of the token after position start+t
            logits[0, t, self.script[min(max(i, 0), len(self.script) - 1)]] = 1.0
        if kv_cache is not None:
            kv_cache.pos += T
        return logits


def test_chat_reply_streams_and_stops_at_stop_string():
    tok = ByteTokenizer()
    encode, stops, name = chat_format(tok)
    messages = [{"role": "user", "content": "hello"}]
    n = len(encode(messages))
    stop = "<|im_end|>" if name == "chatml" else "\nUser:"
    model = ScriptedModel(n, f" Hi — there!{stop} more")
    written = []
    reply = chat_reply(model, tok, messages, encode, stops, 40, write=written.append, temperature=0.0)
    assert reply == "Hi — there!"
    assert "".join(written) == " Hi — there!"                 # the stop string is never shown
    assert not any("\ufffd" in w for w in written)


def test_chat_uses_chatml_when_templates_exist():
    templates = pytest.importorskip("minillm.tokenizer.templates")
    encode, stops, name = chat_format(ByteTokenizer())
    messages = [{"role": "user", "content": "hi"}]
    assert name == "chatml" and "<|im_end|>" in stops
    assert ByteTokenizer().decode(encode(messages)) == templates.render(messages, "chatml", True)


def test_chat_command_multi_turn(run_dir):
    import argparse

    from minillm.inference import cli
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers())
    ns = p.parse_args(["chat", "--run", run_dir, "--max-new-tokens", "8", "--seed", "0"])
    out = io.StringIO()
    assert cli.cmd_chat(ns, stdin=io.StringIO("hello\n\nhow are you?\n"), out=out) == 0
    assert out.getvalue().count("assistant> ") == 2
