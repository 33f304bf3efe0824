"""quantize(model, ...): every method/format runs the model through its quantized kernels with the
same forward; checkpoints round-trip; bad arguments raise; the CLI writes a checkpoint."""
import numpy as np
import pytest

from minillm import ModelConfig, Transformer
from minillm.loaders import load_quantized, save_quantized
from minillm.quant import quantize, weight_bytes
from minillm.quant.formats import unpack_int4
from minillm.quant.linear import GGMLLinear, Int4Linear, Int8Linear


@pytest.fixture(scope="module")
def setup():
    cfg = ModelConfig.preset("llama-tiny", d_model=64, ffn_dim=128, n_head=4, n_kv_head=4)
    model = Transformer(cfg, seed=0)
    tokens = np.random.default_rng(0).integers(0, 256, (4, 48))
    return model, tokens, model.forward(tokens[:1])


@pytest.mark.parametrize("method,fmt,tol", [("rtn", "int8", 0.01), ("rtn", "int4", 0.1), ("rtn", "nf4", 0.15),
                                            ("rtn", "llm_int8", 0.02), ("rtn", "q8_0", 0.01),
                                            ("rtn", "q4_0", 0.1), ("rtn", "q4_K", 0.1), ("rtn", "q6_K", 0.02),
                                            ("gptq", "int4", 0.1), ("gptq", "int8", 0.01), ("awq", "int4", 0.1)])
def test_quantize_methods_and_round_trip(setup, method, fmt, tol, tmp_path):
    model, tokens, ref = setup
    calib = tokens if (method != "rtn" or fmt in ("llm_int8", "q4_K")) else None
    qm = quantize(model, method, format=fmt, group_size=32, calibration=calib)
    assert set(qm.quantized) and all(name not in qm.params for name in qm.quantized)
    assert "model.embed_tokens.weight" in qm.params and "lm_head.weight" in qm.params
    out = qm.forward(tokens[:1])
    assert out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < tol
    assert weight_bytes(qm) < weight_bytes(model)
    save_quantized(qm, tmp_path / "q.safetensors")
    back = load_quantized(tmp_path / "q.safetensors")
    np.testing.assert_array_equal(back.forward(tokens[:1]), out)


@pytest.mark.parametrize("method", ["rtn", "gptq", "awq"])
def test_int3_grid_in_int4_layers(setup, method):
    """bits=3: codes 0..7 in the int4 layers; coarser than INT4, so the output error is larger."""
    model, tokens, ref = setup
    calib = tokens if method != "rtn" else None
    q3 = quantize(model, method, bits=3, group_size=32, calibration=calib)
    q4 = quantize(model, method, bits=4, group_size=32, calibration=calib)
    for layer in q3.quantized.values():
        assert layer.fmt == "int4" and unpack_int4(layer.packed).max() <= 7 and layer.zero.max() <= 7
    err3, err4 = (np.abs(m.forward(tokens[:1]) - ref).max() for m in (q3, q4))
    assert err4 < err3 < 0.3 * np.abs(ref).max()


@pytest.mark.parametrize("tied", [True, False])
def test_quantize_head(setup, tied):
    """head=True: the LM head runs a quantized layer too; a tied head keeps its float32 table for the
    embedding lookup; the logits stay close to the float model's and the block layers are unchanged."""
    model, tokens, _ = setup
    if tied:
        cfg = ModelConfig.preset("llama-tiny", d_model=64, ffn_dim=128, tie_embeddings=True)
        model = Transformer(cfg, seed=1)
    ref = model.forward(tokens[:1])
    plain = quantize(model, format="q8_0")
    qm = quantize(model, format="q8_0", head=True)
    name = model.head_weight
    assert name not in plain.quantized and isinstance(qm.quantized[name], GGMLLinear)
    assert (name in qm.params) == tied
    out = qm.forward(tokens[:1])
    assert 0 < np.abs(out - plain.forward(tokens[:1])).max() < 0.02 * np.abs(ref).max()
    assert weight_bytes(qm) < weight_bytes(plain) or tied


def test_int4_quantize_uses_kernels_objects(setup):
    model, tokens, _ = setup
    qm = quantize(model, "rtn", bits=4, group_size=64)
    assert all(isinstance(q, Int4Linear) and q.group_size == 64 for q in qm.quantized.values())
    assert all(isinstance(q, Int8Linear) for q in quantize(model, bits=8).quantized.values())
    assert all(isinstance(q, GGMLLinear) for q in quantize(model, format="q4_0").quantized.values())


def test_true_sequential_gptq_differs_from_independent_layers(setup):
    model, tokens, ref = setup
    qm = quantize(model, "gptq", bits=4, group_size=32, calibration=tokens)
    rtn = quantize(model, "rtn", bits=4, group_size=32)
    err = lambda m: float(np.mean((m.forward(tokens) - model.forward(tokens)) ** 2))  # noqa: E731
    assert err(qm) < err(rtn)


def test_awq_folding_keeps_the_float_function(setup):
    """With a format that is (nearly) lossless, AWQ's rescaling + folding must not change outputs."""
    from minillm.quant import api
    model, tokens, ref = setup
    params = dict(model.params)
    n = model.layer_names[0]
    s = np.random.default_rng(1).uniform(0.5, 2.0, model.config.d_model).astype(np.float32)
    for names, prev in api._block_groups(model.config, n)[:1] + api._block_groups(model.config, n)[2:3]:
        api._fold(params, prev, s)
        for m in names:
            params[m] = params[m] * s[None, :]
    np.testing.assert_allclose(Transformer(model.config, params=params).forward(tokens[:1]), ref, rtol=1e-4, atol=1e-5)


def test_bad_arguments(setup, tmp_path):
    model, tokens, _ = setup
    with pytest.raises(ValueError, match="method"):
        quantize(model, "smoothquant")
    with pytest.raises(ValueError, match="bits"):
        quantize(model, bits=5)
    with pytest.raises(ValueError, match="bits: 3 is the int4 format's INT3 grid only"):
        quantize(model, bits=3, format="nf4")
    with pytest.raises(ValueError, match="calibration"):
        quantize(model, "gptq", bits=4)
    with pytest.raises(ValueError, match="format"):
        quantize(model, "gptq", format="q4_K", calibration=tokens)
    with pytest.raises(ValueError, match="group_size"):
        quantize(model, bits=4, group_size=100)
    with pytest.raises(TypeError, match="Transformer"):
        quantize({"w": 1})
    qm = quantize(model, bits=8)
    with pytest.raises(ValueError, match="already quantized"):
        quantize(qm)
    with pytest.raises(ValueError, match="inference-only"):
        qm.loss_and_grads(tokens, tokens)
    from minillm.io import save_safetensors
    save_safetensors(tmp_path / "plain.safetensors", {"a": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="not a minillm quantized checkpoint"):
        load_quantized(tmp_path / "plain.safetensors")


def test_cli_writes_checkpoint(tmp_path, capsys):
    from minillm.checkpoint import save_checkpoint
    from minillm.cli import main
    from minillm.optim import AdamW
    from minillm.tokenizer import ByteTokenizer
    cfg = ModelConfig.preset("llama-tiny")
    model = Transformer(cfg, seed=0)
    save_checkpoint(str(tmp_path / "ckpt"), model, AdamW(model.params), {"step": 1})
    ByteTokenizer().save(str(tmp_path / "tokenizer.model"))
    out = tmp_path / "q.safetensors"
    assert main(["quantize", "--run", str(tmp_path), "--method", "rtn", "--bits", "4", "--group-size", "32",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "14/14 layers" in err
    assert load_quantized(out).quantized
