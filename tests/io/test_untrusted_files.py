"""Container parsers reject what the libraries defining the formats reject (hardening, items 5-6):
safetensors header length and tiling, shapes, nesting; GGUF duplicates; token ids beyond the header's
vocabulary. Each error is one ValueError naming the file."""
import json
import struct

import numpy as np
import pytest

from minillm.io import load_safetensors, read_gguf, read_tokens, save_safetensors, write_gguf, write_tokens
from minillm.io.gguf import STRING, U32
from minillm.io.jsonl import iter_jsonl, parse_json


def _safetensors(path, header, data):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _reference_rejects(path):
    """Whether the safetensors library refuses the file (None when it is not installed)."""
    try:
        from safetensors.numpy import load_file  # optional reference: only for agreement
    except ImportError:
        return None
    try:
        load_file(str(path))
    except Exception:
        return True
    return False


@pytest.mark.parametrize("delta", [-1, 1])
def test_safetensors_header_length_off_by_one_is_an_error(tmp_path, delta):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode() + b"   "            # trailing spaces: n - 1 still parses as JSON
    data = np.array([1.5, 2.5], np.float32).tobytes()
    p = tmp_path / "x.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw) + delta) + raw + data)
    with pytest.raises(ValueError, match="x.safetensors: corrupt safetensors"):
        load_safetensors(p)
    assert _reference_rejects(p) in (True, None)


@pytest.mark.parametrize("entry, match", [
    ({"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}, "corrupt entry"),
    ({"dtype": "F32", "shape": [2**40, 2**40, 2**40], "data_offsets": [0, 8]}, "has 8 bytes"),
    ({"dtype": "F32", "shape": [-2, -1], "data_offsets": [0, 8]}, "corrupt entry"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}, "corrupt entry"),
    ({"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}, "corrupt entry"),
    ({"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}, "corrupt entry"),
    ("F32", "corrupt entry"),
], ids=["str-dim", "overflow", "negative", "float-offset", "dtype", "scalar-shape", "not-object"])
def test_safetensors_entries_are_validated_before_use(tmp_path, entry, match):
    p = tmp_path / "x.safetensors"
    _safetensors(p, {"a": entry}, b"\0" * 8)
    with pytest.raises(ValueError, match=match):
        load_safetensors(p)


def test_safetensors_gaps_and_deep_nesting_are_errors(tmp_path):
    p = tmp_path / "gap.safetensors"
    _safetensors(p, {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                     "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}, b"\0" * 6)
    with pytest.raises(ValueError, match="a gap"):
        load_safetensors(p)
    assert _reference_rejects(p) in (True, None)
    raw = b"[" * 50000 + b"]" * 50000
    (tmp_path / "deep.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    with pytest.raises(ValueError, match="deep.safetensors: corrupt safetensors header: not valid JSON"):
        load_safetensors(tmp_path / "deep.safetensors")
    # what the writer writes still loads, empty tensors included
    save_safetensors(tmp_path / "ok.safetensors", {"e": np.zeros((0, 3), np.float32), "x": np.arange(3)})
    got = load_safetensors(tmp_path / "ok.safetensors")
    assert got["e"].shape == (0, 3) and got["x"].tolist() == [0, 1, 2]


def test_json_helpers_turn_deep_nesting_into_one_error(tmp_path):
    with pytest.raises(ValueError, match="where: not valid JSON \\(RecursionError"):
        parse_json("[" * 100000 + "]" * 100000, "where")
    with pytest.raises(ValueError, match="where: expected a JSON object, got list"):
        parse_json("[1]", "where", dict)
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n' + "[" * 100000 + "\n")
    with pytest.raises(ValueError, match="a.jsonl:2: not valid JSON"):
        list(iter_jsonl(tmp_path / "a.jsonl"))


def _gguf_reference_rejects(path):
    try:
        from gguf import GGUFReader  # optional reference: only for agreement
    except ImportError:
        return None
    try:
        GGUFReader(str(path))
    except Exception:
        return True
    return False


def test_gguf_duplicate_keys_and_tensor_names_are_errors(tmp_path):
    blob = np.ones(32, np.float32).tobytes()
    write_gguf(tmp_path / "k.gguf", [("a.b", U32, 1), ("a.b", STRING, "x")], [("t", "f32", (32,), blob)])
    with pytest.raises(ValueError, match="duplicate metadata key 'a.b'"):
        read_gguf(tmp_path / "k.gguf")
    assert _gguf_reference_rejects(tmp_path / "k.gguf") in (True, None)
    write_gguf(tmp_path / "t.gguf", [("a.b", U32, 1)], [("t", "f32", (32,), blob), ("t", "f32", (32,), blob)])
    with pytest.raises(ValueError, match="duplicate tensor name 't'"):
        read_gguf(tmp_path / "t.gguf")
    assert _gguf_reference_rejects(tmp_path / "t.gguf") in (True, None)
    write_gguf(tmp_path / "a.gguf", [("general.alignment", STRING, "32")], [("t", "f32", (32,), blob)])
    with pytest.raises(ValueError, match="alignment"):
        read_gguf(tmp_path / "a.gguf")


def test_token_ids_beyond_the_header_vocabulary_are_an_error(tmp_path):
    p = tmp_path / "t.bin"
    write_tokens(p, [1, 2, 3, 250], 256)
    assert read_tokens(p)[0].tolist() == [1, 2, 3, 250]
    raw = bytearray(p.read_bytes())
    raw[16:20] = struct.pack("<i", 200)                      # vocab_size 256 -> 200: id 250 is outside
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"token id 250 at position 3 is outside the header's vocabulary \[0, 200\)"):
        read_tokens(p)
    raw[16:20] = struct.pack("<i", 100000)                   # needs 4-byte ids, the file has 2
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="itemsize 2, expected 4"):
        read_tokens(p)
    raw[16:20] = struct.pack("<i", 0)
    p.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="vocab_size 0"):
        read_tokens(p)
