"""The fuzz suite: hypothesis-driven mutations of every file format minillm reads, each batch loaded
in a child process (fuzz_child.py) so that a crash (a signal) or a hang (the timeout) fails the test
instead of taking pytest down. A load must either succeed -- and then what it loaded must work (a
byte-level tokenizer round-trips, a model runs, the safetensors library agrees) -- or raise
minillm's own one-line ValueError; any other exception escaping a parser fails the test.

Budget: MINILLM_FUZZ_EXAMPLES hypothesis examples per format (default 2, about a minute for the
suite), each a batch of MINILLM_FUZZ_BATCH mutated files (default 24). A longer run:

    MINILLM_FUZZ_EXAMPLES=200 pytest -m fuzz tests/fuzz

MINILLM_FUZZ_REPORT=FILE appends each batch's outcomes (ok / error) to FILE as JSON lines.
"""
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer
from minillm.checkpoint import save_checkpoint
from minillm.io import save_safetensors, write_tokens
from minillm.loaders import save_gguf
from minillm.optim import AdamW
from minillm.tokenizer import BPETokenizer, bpe_io

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("MINILLM_FUZZ_EXAMPLES", "2"))
BATCH = int(os.environ.get("MINILLM_FUZZ_BATCH", "24"))
CHILD = pathlib.Path(__file__).with_name("fuzz_child.py")
TIMEOUT = 60 + 5 * BATCH          # seconds for one batch: generous, a hang is minutes or forever
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1]


# ------------------------------------------------------------------------------ seed files
def _proto_field(number, wire, payload):
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | wire) + (varint(len(payload)) + payload if wire == 2 else payload)


def _spm_model():
    """A small SentencePiece ModelProto: <unk>, <s>, </s>, the 256 byte pieces, a few words."""
    pieces = [("<unk>", 0.0, 2), ("<s>", 0.0, 3), ("</s>", 0.0, 3)]
    pieces += [(f"<0x{b:02X}>", 0.0, 6) for b in range(256)]
    pieces += [(w, -float(k + 1), 1) for k, w in enumerate(["\u2581", "\u2581the", "e", "l", "o", "lo", "\u2581he"])]
    out = b""
    for text, score, kind in pieces:
        body = (_proto_field(1, 2, text.encode()) + _proto_field(2, 5, struct.pack("<f", score))
                + _proto_field(3, 0, bytes([kind])))
        out += _proto_field(1, 2, body)
    out += _proto_field(2, 2, _proto_field(3, 0, b"\x01") + _proto_field(35, 0, b"\x01"))   # unigram, byte_fallback
    return out + _proto_field(3, 2, _proto_field(3, 0, b"\x01"))


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """format -> seed path (a folder for tokenizer_json and checkpoint), all small."""
    d = tmp_path_factory.mktemp("seeds")
    text = "the quick brown fox jumps over the lazy dog, 0123456789 times! " * 20
    tok = BPETokenizer.train(text, 300, special_tokens={"<|endoftext|>": 300})
    out = {}
    save_safetensors(d / "w.safetensors", {"a": np.arange(12, dtype=np.float32).reshape(3, 4),
                                          "b": np.arange(5, dtype=np.int64)}, metadata={"k": "v"})
    out["safetensors"] = d / "w.safetensors"
    model = Transformer(ModelConfig.preset("llama-tiny", vocab_size=tok.n_vocab, n_layer=1, d_model=32,
                                           n_head=2, ffn_dim=64, max_seq_len=32), seed=0)
    save_gguf(model, d / "m.gguf", dtype="q8_0", tokenizer=tok)
    out["gguf"] = d / "m.gguf"
    (d / "s.model").write_bytes(_spm_model())
    out["model"] = d / "s.model"
    bpe_io.write_tiktoken(BPETokenizer.from_tiktoken({bytes([x]): x for x in range(256)} |
                                                     {b"th": 256, b"the": 257, b" the": 258}, "cl100k"),
                          d / "r.tiktoken")
    out["tiktoken"] = d / "r.tiktoken"
    (d / "hf").mkdir()
    bpe_io.save_hf(tok, d / "hf" / "tokenizer.json")
    out["tokenizer_json"] = d / "hf" / "tokenizer.json"
    tok.save(d / "t.bpe")
    out["bpe"] = d / "t.bpe"
    save_checkpoint(d / "ckpt", model, AdamW(model.params, lr=1e-3), {"step": 1})
    out["checkpoint"] = next((d / "ckpt").glob("step_*"))
    write_tokens(d / "t.bin", np.arange(100) % 300, 300)
    out["tokens"] = d / "t.bin"
    return out


# ------------------------------------------------------------------------------ mutations
@st.composite
def byte_mutations(draw, data):
    """data with 1-4 random edits: flips, interesting integers (little-endian, 1-8 bytes, mostly in
    the header region where counts, sizes and offsets live), truncation, insertion, deletion."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        head = min(n, 512)
        pos = draw(st.integers(0, max(0, head - 1)) | st.integers(0, max(0, n - 1)))
        op = draw(st.sampled_from(["flip", "int", "truncate", "insert", "delete", "duplicate"]))
        if op == "flip" and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "int" and n:
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1)) % (1 << (8 * width))
            data[pos:pos + width] = value.to_bytes(width, "little")
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "duplicate" and n:
            end = min(n, pos + draw(st.integers(1, 64)))
            data[end:end] = data[pos:end]
    return bytes(data)


NEST = "\x00nest\x00"    # stands for 100,000 levels of nesting in the written text (json.dumps recurses)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from(INTERESTING)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def json_mutations(draw, text):
    """A JSON document with 1-3 nodes replaced (wrong types, huge or negative numbers, NaN) or
    removed, or wrapped in deep nesting: structure-aware, so the loader's checks are reached."""
    doc = json.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        node, key = None, None
        cur = doc
        while isinstance(cur, (dict, list)) and cur and draw(st.integers(0, 3)):
            keys = list(cur) if isinstance(cur, dict) else list(range(len(cur)))
            node, key = cur, draw(st.sampled_from(keys))
            cur = cur[key]
        op = draw(st.sampled_from(["replace", "replace", "remove", "nest"]))
        if node is None:
            continue
        if op == "replace":
            node[key] = draw(JSON_VALUES)
        elif op == "remove":
            del node[key]
        else:
            node[key] = NEST
    return json.dumps(doc).replace(json.dumps(NEST), "[" * 100_000 + "0" + "]" * 100_000)


# ------------------------------------------------------------------------------ the runner
def _run(fmt, paths):
    """Load paths in one child process; fail on a crash, a hang, a raw exception or a wrong load."""
    env = {**os.environ, "MINILLM_FUZZ_CHILD": "1"}
    try:
        r = subprocess.run([sys.executable, str(CHILD), fmt, *map(str, paths)], capture_output=True, text=True,
                           timeout=TIMEOUT, env=env)
    except subprocess.TimeoutExpired as e:
        started = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        pytest.fail(f"{fmt}: hang (no answer in {TIMEOUT} s); last started: {started}")
    last = r.stderr.strip().splitlines()[-3:]
    assert r.returncode == 0, f"{fmt}: the child died with exit status {r.returncode} (signal if < 0); {last}"
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(paths), f"{fmt}: {len(results)} results for {len(paths)} files; {last}"
    if os.environ.get("MINILLM_FUZZ_REPORT"):          # outcome counts for README's table
        with open(os.environ["MINILLM_FUZZ_REPORT"], "a") as f:
            f.write(json.dumps({"format": fmt, "outcomes": [x["outcome"] for x in results]}) + "\n")
    bad = [(paths[x["i"]], x) for x in results if x["outcome"] not in ("ok", "error")]
    assert not bad, f"{fmt}: {bad[0][1]['outcome']} on {bad[0][0]}: {bad[0][1]['type']}: {bad[0][1]['msg']}"


def _fuzz(seed_path, fmt, data, tmp_path):
    """BATCH mutants of the seed's main file, written next to copies of the rest, loaded at once."""
    seed_path = pathlib.Path(seed_path)
    is_dir = seed_path.is_dir()
    paths = []
    for k in range(BATCH):
        target = tmp_path / f"{k}"
        if is_dir:                                        # a checkpoint: mutate one of its files
            shutil.copytree(seed_path, target)
            name = data.draw(st.sampled_from(sorted(p.name for p in seed_path.iterdir())))
            victim, load_path = target / name, target
        elif fmt == "tokenizer_json":
            target.mkdir()
            victim = load_path = target / "tokenizer.json"
        else:
            victim = load_path = target.with_suffix(seed_path.suffix)
        raw = (seed_path / name).read_bytes() if is_dir else seed_path.read_bytes()
        if victim.suffix == ".json" and data.draw(st.booleans()):
            raw = data.draw(json_mutations(raw.decode())).encode()
        else:
            raw = data.draw(byte_mutations(raw))
        victim.write_bytes(raw)
        paths.append(load_path)
    _run(fmt, paths)


FORMATS = ["safetensors", "gguf", "model", "tiktoken", "tokenizer_json", "bpe", "checkpoint", "tokens"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_seed_files_load(seeds, fmt):
    """The unmutated seeds load cleanly: the harness itself works."""
    _run(fmt, [seeds[fmt]])


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_files_never_crash_hang_or_raise_raw_errors(seeds, fmt, tmp_path_factory):
    # no shrinking: each step would rerun a child process; the failure names the file and the error
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def run(data):
        _fuzz(seeds[fmt], fmt, data, tmp_path_factory.mktemp(fmt))
    run()
