"""Importance matrices: collecting x^2 at every linear input, the GGUF and legacy .dat files (round
trips, read by the gguf package, llama.cpp's normalization), clear errors on corrupted files, and
the `minillm imatrix` / `minillm quantize --type` commands end to end."""
import struct

import numpy as np
import pytest

from minillm.cli import main as cli_main
from minillm.io.gguf import read_gguf
from minillm.loaders import load, save_gguf
from minillm.loaders.gguf import gguf_name
from minillm.model import ModelConfig, Transformer
from minillm.nn.norms import rmsnorm_forward
from minillm.quant.imatrix import Imatrix, collect_imatrix, load_imatrix, save_imatrix
from minillm.tokenizer import ByteTokenizer


def _model():
    cfg = ModelConfig(arch="llama", vocab_size=256, n_layer=2, n_head=4, n_kv_head=2, d_model=64, ffn_dim=128,
                      max_seq_len=64)
    return Transformer(cfg, seed=3)


def _imatrix(rng, n=3, K=64, experts=1):
    im = Imatrix(chunk_count=5, chunk_size=32, datasets=["calib.txt"])
    for i in range(n):
        im.sums[f"blk.{i}.ffn_up.weight"] = (rng.random(K * experts) * 100).astype(np.float32)
        im.counts[f"blk.{i}.ffn_up.weight"] = rng.integers(0, 50, experts)
    return im


def test_collect_equals_direct_computation():
    model = _model()
    tokens = np.random.default_rng(0).integers(0, 256, (3, 16))
    stats = collect_imatrix(model, tokens)
    x = model.params["model.embed_tokens.weight"][tokens].reshape(-1, 64)                  # (48, 64)
    h, _ = rmsnorm_forward(x, model.params["model.layers.0.input_layernorm.weight"], model.config.norm_eps)
    want = np.sum(h.astype(np.float64) ** 2, axis=0)
    for role in ("q_proj", "k_proj", "v_proj"):
        s, count = stats[f"model.layers.0.self_attn.{role}.weight"]
        assert count == 48
        np.testing.assert_allclose(s, want, rtol=1e-5)
    assert set(stats) == {n for n, w in model.params.items() if w.ndim == 2 and ".layers." in n}


@pytest.mark.parametrize("suffix", [".gguf", ".dat"])
def test_file_round_trip(tmp_path, suffix):
    im = _imatrix(np.random.default_rng(1))
    im.counts = {k: np.maximum(v, 1) for k, v in im.counts.items()}
    path = tmp_path / f"im{suffix}"
    save_imatrix(path, im)
    back = load_imatrix(path)
    assert back.legacy == (suffix == ".dat") and back.chunk_count == 5 and back.datasets == ["calib.txt"]
    for name in im.sums:
        np.testing.assert_array_equal(back.sums[name], im.sums[name])
        np.testing.assert_array_equal(back.counts[name], im.counts[name])
        np.testing.assert_array_equal(back.importance()[name], (im.sums[name] / np.float32(im.counts[name][0])))


def test_gguf_layout_as_llama_cpp_writes_it(tmp_path):
    gguf = pytest.importorskip("gguf", reason="the gguf package reads the file independently")
    im = _imatrix(np.random.default_rng(2), experts=2)
    save_imatrix(tmp_path / "im.gguf", im)
    r = gguf.GGUFReader(str(tmp_path / "im.gguf"))
    assert bytes(r.fields["general.type"].parts[-1]).decode() == "imatrix"
    t = {x.name: x for x in r.tensors}
    s = t["blk.0.ffn_up.weight.in_sum2"]
    assert list(s.shape) == [64, 2] and s.tensor_type.name == "F32"                     # ggml ne: [K, n_mat]
    assert list(t["blk.0.ffn_up.weight.counts"].shape) == [1, 2]
    # llama.cpp's normalization: sums / count per expert, 1 where the count is 0
    imp = load_imatrix(tmp_path / "im.gguf").importance()["blk.0.ffn_up.weight"].reshape(2, 64)
    c = im.counts["blk.0.ffn_up.weight"]
    for j in range(2):
        want = im.sums["blk.0.ffn_up.weight"][j * 64:(j + 1) * 64] / np.float32(c[j]) if c[j] else np.ones(64)
        np.testing.assert_array_equal(imp[j], want.astype(np.float32))


def _corrupt(tmp_path, kind):
    im = _imatrix(np.random.default_rng(3))
    if kind == "truncated_dat":
        save_imatrix(tmp_path / "a.dat", im)
        raw = (tmp_path / "a.dat").read_bytes()
        (tmp_path / "a.dat").write_bytes(raw[:40])
        return tmp_path / "a.dat", "truncated"
    if kind == "garbage":
        (tmp_path / "a.dat").write_bytes(struct.pack("<i", -7) + b"xx")
        return tmp_path / "a.dat", "not an imatrix"
    if kind == "truncated_gguf":
        save_imatrix(tmp_path / "a.gguf", im)
        raw = (tmp_path / "a.gguf").read_bytes()
        (tmp_path / "a.gguf").write_bytes(raw[:-100])
        return tmp_path / "a.gguf", "truncated"
    if kind == "nan":
        im.sums["blk.0.ffn_up.weight"][3] = np.nan
        save_imatrix(tmp_path / "a.gguf", im)
        return tmp_path / "a.gguf", "non-finite"
    if kind == "no_counts":
        im.sums["blk.9.ffn_up.weight"] = np.ones(64, np.float32)
        im.counts["blk.9.ffn_up.weight"] = np.array([1])
        save_imatrix(tmp_path / "a.gguf", im)
        meta, tensors = read_gguf(tmp_path / "a.gguf")
        from minillm.io.gguf import write_gguf
        kept = [(n, t, s, r.tobytes()) for n, (t, s, r) in tensors.items() if n != "blk.9.ffn_up.weight.counts"]
        write_gguf(tmp_path / "b.gguf", [], kept)
        return tmp_path / "b.gguf", "no counts"


@pytest.mark.parametrize("kind", ["truncated_dat", "garbage", "truncated_gguf", "nan", "no_counts"])
def test_corrupted_file_is_a_clear_error(tmp_path, kind):
    path, message = _corrupt(tmp_path, kind)
    with pytest.raises(ValueError, match=message) as e:
        load_imatrix(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_cli_imatrix_then_quantize(tmp_path, capsys):
    model = _model()
    save_gguf(model, tmp_path / "m.gguf", tokenizer=ByteTokenizer())
    (tmp_path / "calib.txt").write_text("The quick brown fox jumps over the lazy dog. " * 20)
    assert cli_main(["imatrix", "--model", str(tmp_path / "m.gguf"), "--text", str(tmp_path / "calib.txt"),
                     "--out", str(tmp_path / "im.gguf"), "--ctx", "32", "--chunks", "4"]) == 0
    im = load_imatrix(tmp_path / "im.gguf")
    assert im.chunk_count == 4 and im.chunk_size == 32
    assert set(im.sums) == {gguf_name(n) for n, w in model.params.items() if w.ndim == 2 and ".layers." in n}
    assert all(int(c[0]) == 128 for c in im.counts.values())
    assert cli_main(["quantize", "--model", str(tmp_path / "m.gguf"), "--type", "Q5_K_M", "--out",
                     str(tmp_path / "q.gguf"), "--imatrix", str(tmp_path / "im.gguf")]) == 0
    assert "wrote" in capsys.readouterr().out
    q, tok = load(str(tmp_path / "q.gguf"))
    assert tok is not None and q.config.n_layer == 2
    types = {t for t, _, _ in read_gguf(tmp_path / "q.gguf")[1].values()}
    assert types <= {"f32", "q5_1", "q6_K", "q8_0"}                                       # d 64: fallbacks


def test_cli_errors(tmp_path, capsys):
    save_gguf(_model(), tmp_path / "m.gguf", tokenizer=ByteTokenizer())
    (tmp_path / "im.gguf").write_bytes(b"GGUF")
    assert cli_main(["quantize", "--type", "Q4_K_M", "--out", str(tmp_path / "x.gguf")]) == 2
    assert "--model" in capsys.readouterr().err
    assert cli_main(["quantize", "--model", str(tmp_path / "m.gguf"), "--gguf", str(tmp_path / "x.gguf"),
                     "--imatrix", str(tmp_path / "im.gguf")]) == 2
    assert "--imatrix" in capsys.readouterr().err
    assert cli_main(["quantize", "--model", str(tmp_path / "m.gguf"), "--type", "Q4_K_M", "--out",
                     str(tmp_path / "x.gguf"), "--imatrix", str(tmp_path / "im.gguf")]) == 1
    err = capsys.readouterr().err
    assert "im.gguf" in err and err.count("\n") == 1                                  # a corrupted imatrix: one line
    assert cli_main(["quantize", "--model", str(tmp_path / "m.gguf"), "--type", "Q4_K_XL", "--out", "x.gguf"]) == 2
    assert "--type" in capsys.readouterr().err
    assert cli_main(["imatrix", "--model", str(tmp_path / "m.gguf"), "--text", str(tmp_path / "none.txt"),
                     "--out", str(tmp_path / "i.gguf")]) == 2
    assert "--text" in capsys.readouterr().err
