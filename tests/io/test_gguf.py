"""The GGUF container alone (no model): what write_gguf stores, the `gguf` package reads back
(metadata values, tensor names, shapes, types, bytes), what the `gguf` package writes, read_gguf
reads back, and the type table agrees with gguf's own."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.io.ggml_types import GGML_TYPES, tensor_nbytes
from minillm.io.gguf import ARRAY, F32, I32, STRING, U32, read_gguf, write_gguf

gguf = pytest.importorskip("gguf")


def test_type_table_matches_the_gguf_package():
    for t in GGML_TYPES.values():
        q = gguf.GGMLQuantizationType(t.id)
        assert q.name.lower() == t.name.lower()
        assert gguf.GGML_QUANT_SIZES[q] == (t.block_size, t.block_bytes)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 5), blocks=st.integers(1, 3), type_name=st.sampled_from(sorted(GGML_TYPES)),
       seed=st.integers(0, 2**16))
def test_written_file_reads_back_in_both_readers(tmp_path_factory, rows, blocks, type_name, seed):
    t = GGML_TYPES[type_name]
    shape = (rows, blocks * max(t.block_size, 32))
    raw = np.random.default_rng(seed).integers(0, 256, tensor_nbytes(type_name, shape), dtype=np.uint8)
    if type_name in ("f32", "f16"):  # keep the floats finite so the gguf reader's view compares cleanly
        raw = np.random.default_rng(seed).standard_normal(shape).astype("<f4" if type_name == "f32" else "<f2")
        raw = raw.view(np.uint8).ravel()
    meta = [("general.architecture", STRING, "test"), ("test.count", U32, rows), ("test.scale", F32, 0.5),
            ("test.names", ARRAY, (STRING, ["a", "bc"])), ("test.ids", ARRAY, (I32, [3, -1]))]
    path = tmp_path_factory.mktemp("gguf") / "t.gguf"
    write_gguf(path, meta, [("w", type_name, shape, raw.tobytes()), ("v", "f32", (3,), np.ones(3, "<f4").tobytes())])
    back, tensors = read_gguf(path)
    assert back["test.count"] == rows and back["test.names"] == ["a", "bc"] and back["test.ids"] == [3, -1]
    assert tensors["w"][0] == type_name and tensors["w"][1] == shape
    np.testing.assert_array_equal(tensors["w"][2], raw)
    r = gguf.GGUFReader(str(path))
    w = {x.name: x for x in r.tensors}["w"]
    assert w.tensor_type.name.lower() == type_name.lower()
    assert tuple(int(d) for d in reversed(w.shape)) == shape
    np.testing.assert_array_equal(np.asarray(w.data).view(np.uint8).ravel(), raw)
    assert r.fields["test.names"].contents() == ["a", "bc"]


def test_reads_what_the_gguf_package_writes(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "g.gguf"), "llama")
    w.add_uint32("test.n", 7)
    x = np.arange(64, dtype=np.float32).reshape(2, 32)
    w.add_tensor("x", x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta, tensors = read_gguf(tmp_path / "g.gguf")
    assert meta["test.n"] == 7 and meta["general.architecture"] == "llama"
    t, shape, raw = tensors["x"]
    assert (t, shape) == ("f32", (2, 32))
    np.testing.assert_array_equal(raw.view("<f4").reshape(shape), x)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="bytes"):
        write_gguf(tmp_path / "x.gguf", [], [("w", "q8_0", (1, 32), b"\0" * 33)])
    with pytest.raises(ValueError, match="ggml type"):
        write_gguf(tmp_path / "x.gguf", [], [("w", "q5_0", (1, 32), b"")])
    with pytest.raises(ValueError, match="multiple"):
        tensor_nbytes("q4_K", (1, 32))
    (tmp_path / "short.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="not a GGUF"):
        read_gguf(tmp_path / "short.gguf")
