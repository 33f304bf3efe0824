"""One field of an untrusted header must not make memory or time grow without bound (hardening,
item 5): GGUF block_count, config.json num_hidden_layers, state.json n_layer are checked against
ModelConfig's upper bounds and against the tensors the file actually holds, before any per-layer
work or allocation."""
import json

import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm import checkpoint
from minillm.checkpoint import load_checkpoint, save_checkpoint
from minillm.loaders import load_gguf, load_hf, save_gguf, save_hf
from minillm.model import CONFIG_LIMITS
from minillm.optim import AdamW

from .test_gguf_errors import rewrite


@pytest.fixture(scope="module")
def tiny():
    return Transformer(ModelConfig.preset("llama-tiny", vocab_size=300), seed=0)


@pytest.mark.parametrize("field", sorted(CONFIG_LIMITS))
def test_model_config_has_upper_bounds(field):
    base = dict(arch="llama", vocab_size=256, n_layer=2, n_head=4, d_model=64, ffn_dim=128, max_seq_len=64)
    with pytest.raises(ValueError, match=rf"^{field}: expected an int in \[1, {CONFIG_LIMITS[field]}\], got"):
        ModelConfig(**{**base, field: CONFIG_LIMITS[field] * 4})
    with pytest.raises(ValueError, match=rf"^{field}: expected an int"):
        ModelConfig(**{**base, field: 1e9})                       # a JSON float is not a size


@pytest.mark.parametrize("field, value", [("rope_theta", -1.0), ("rope_theta", float("inf")),
                                          ("norm_eps", 0.0), ("z_loss", float("nan")), ("init_std", -0.1)])
def test_model_config_rejects_non_finite_and_negative_scalars(field, value):
    with pytest.raises(ValueError, match=rf"^{field}: expected a finite number"):
        ModelConfig.preset("llama-tiny", **{field: value})


@pytest.mark.parametrize("count", [2**31, 1000, 3])
def test_gguf_block_count_is_checked_against_the_file(tmp_path, tiny, count):
    save_gguf(tiny, tmp_path / "m.gguf")
    rewrite(tmp_path / "m.gguf", tmp_path / "bad.gguf", llama__block_count=count)
    with pytest.raises(ValueError, match=f"bad.gguf: 'llama.block_count' is {count}, the file holds tensors of 2 blocks"):
        load_gguf(tmp_path / "bad.gguf")


def test_gguf_metadata_of_the_wrong_kind_is_an_error(tmp_path, tiny):
    save_gguf(tiny, tmp_path / "m.gguf")
    rewrite(tmp_path / "m.gguf", tmp_path / "bad.gguf", llama__embedding_length="64")
    with pytest.raises(ValueError, match="'llama.embedding_length': expected int, got '64'"):
        load_gguf(tmp_path / "bad.gguf")


@pytest.mark.parametrize("value", [10**9, 1e9, "2"])
def test_config_json_num_hidden_layers_is_bounded(tmp_path, tiny, value):
    save_hf(tiny, tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    cfg["num_hidden_layers"] = value
    (tmp_path / "hf" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="n_layer: expected an int in"):
        load_hf(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_hf(tmp_path / "hf")


def test_state_json_n_layer_is_bounded(tmp_path, tiny):
    opt = AdamW(tiny.params, lr=1e-3)
    save_checkpoint(tmp_path / "ckpt", tiny, opt, {"step": 1})
    state = next((tmp_path / "ckpt").glob("step_*")) / "state.json"
    meta = json.loads(state.read_text())
    meta["model_config"]["n_layer"] = 10**8
    if "meta_sha256" in meta:        # the digest detects accidents, not an author: re-sign the edit
        meta["meta_sha256"] = checkpoint._meta_digest(meta)
    state.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"n_layer: expected an int in \[1, 1024\], got 100000000"):
        load_checkpoint(state.parent)


@pytest.mark.parametrize("content", [b"\xec\xff{}", b"[1, 2]", b'{"sha256": 3}', b"[" * 100000])
def test_state_json_of_the_wrong_shape_is_one_error(tmp_path, tiny, content):
    """Found by the fuzz suite: load_checkpoint raised UnicodeDecodeError/TypeError/RecursionError."""
    save_checkpoint(tmp_path / "ckpt", tiny, AdamW(tiny.params, lr=1e-3), {"step": 1})
    state = next((tmp_path / "ckpt").glob("step_*")) / "state.json"
    state.write_bytes(content)
    with pytest.raises(ValueError, match="state.json"):
        load_checkpoint(state.parent)
