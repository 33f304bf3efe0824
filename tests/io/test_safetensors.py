"""safetensors: round trips, agreement with the `safetensors` package, and clear errors on damage."""
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minillm.io.safetensors import load_safetensors, save_safetensors

DTYPES = st.sampled_from([np.float32, np.float16, np.float64, np.int64, np.int32, np.int8, np.uint8])


@settings(max_examples=25, deadline=None)
@given(arrays=st.lists(DTYPES.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                                                     max_side=4))),
                       min_size=0, max_size=4))
def test_round_trip(tmp_path_factory, arrays):
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    tensors = {f"t{i}": a for i, a in enumerate(arrays)}
    save_safetensors(path, tensors)
    back = load_safetensors(path)
    assert list(back) == list(tensors)
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and back[k].shape == tensors[k].shape
        np.testing.assert_array_equal(back[k], tensors[k])


def test_agrees_with_reference_library(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64)}
    save_safetensors(tmp_path / "ours.safetensors", tensors)
    theirs = st_numpy.load_file(str(tmp_path / "ours.safetensors"))
    st_numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    ours = load_safetensors(tmp_path / "theirs.safetensors")
    for k in tensors:
        np.testing.assert_array_equal(theirs[k], tensors[k])
        np.testing.assert_array_equal(ours[k], tensors[k])


def test_truncated_and_corrupt_files_raise(tmp_path):
    path = tmp_path / "x.safetensors"
    save_safetensors(path, {"w": np.ones((64, 64), np.float32)})
    raw = path.read_bytes()
    for n in (0, 4, 8, 20, len(raw) - 1):
        (tmp_path / "t.safetensors").write_bytes(raw[:n])
        with pytest.raises(ValueError, match="safetensors|truncated|outside"):
            load_safetensors(tmp_path / "t.safetensors")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["w"]["shape"] = [64, 65]
    bad = json.dumps(header).encode()
    (tmp_path / "s.safetensors").write_bytes(struct.pack("<Q", len(bad)) + bad + raw[8 + n:])
    with pytest.raises(ValueError, match="shape"):
        load_safetensors(tmp_path / "s.safetensors")
    (tmp_path / "j.safetensors").write_bytes(struct.pack("<Q", 5) + b"{nope" + raw[8 + n:])
    with pytest.raises(ValueError, match="corrupt"):
        load_safetensors(tmp_path / "j.safetensors")
