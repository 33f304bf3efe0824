"""The decode bandwidth ceiling: bytes of weights per token counted independently of
memory_wall.weight_bytes_per_token (from the config's shapes), and the measured bandwidth."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm import ModelConfig, Transformer
from minillm.inference.memory_wall import decode_ceiling, read_bandwidth, weight_bytes_per_token, \
    working_set_bandwidth
from minillm.quant.ggml_quants import quantize_blocks
from minillm.quant.linear import GGMLLinear


def expected_bytes(cfg, quantized_bytes=None):
    """float32 bytes of every parameter shape, minus all but one row of each embedding table that
    only feeds a row lookup; quantized_bytes {name: bytes} replaces those parameters' sizes."""
    total = 0
    for name, shape in cfg.param_shapes().items():
        size = quantized_bytes[name] if quantized_bytes and name in quantized_bytes \
            else 4 * int(np.prod(shape))
        lookup_only = name.endswith("wpe.weight") or (
            (name.endswith("wte.weight") or name.endswith("embed_tokens.weight")) and not cfg.tie_embeddings)
        total += size // shape[0] if lookup_only else size
    return total


@pytest.mark.parametrize("preset", ["gpt2-tiny", "llama-tiny"])
def test_weight_bytes_match_the_config_shapes(preset):
    cfg = ModelConfig.preset(preset)
    model = Transformer(cfg, seed=0)
    assert weight_bytes_per_token(model) == expected_bytes(cfg)


def test_gpt2_124m_streams_its_matrices_and_the_tied_head():
    # 124M parameters of which wpe (1024 x 768) is read one row at a time: ~0.49 GB of float32
    model = Transformer(ModelConfig.preset("gpt2"), seed=0)
    n = weight_bytes_per_token(model)
    assert n == expected_bytes(model.config)
    assert 0.48e9 < n < 0.50e9


def test_quantized_layers_count_their_own_bytes():
    cfg = ModelConfig.preset("llama-tiny")
    params = Transformer(cfg, seed=0).params
    names = ["lm_head.weight", "model.layers.0.mlp.up_proj.weight"]
    quantized = {n: GGMLLinear("q8_0", quantize_blocks(params[n], "q8_0")) for n in names}
    model = Transformer(cfg, params={k: v for k, v in params.items() if k not in quantized},
                        quantized=quantized)
    want = expected_bytes(cfg, {n: q.nbytes for n, q in quantized.items()})
    assert weight_bytes_per_token(model) == want
    # Q8_0 is 34 bytes per 32 weights: the two matrices shrink to 34/128 of their float32 bytes
    saved = sum(params[n].nbytes - q.nbytes for n, q in quantized.items())
    assert saved == sum(params[n].nbytes * (1 - 34 / 128) for n in names)


@settings(max_examples=30, deadline=None)
@given(nbytes=st.integers(1, 10**10), bw=st.floats(1e6, 1e12))
def test_ceiling_is_bandwidth_over_bytes(nbytes, bw):
    assert decode_ceiling(nbytes, bw) == pytest.approx(bw / nbytes)


def test_ceiling_of_a_model_uses_its_bytes():
    model = Transformer(ModelConfig.preset("gpt2-tiny"), seed=0)
    assert decode_ceiling(model, 1e9) == pytest.approx(1e9 / weight_bytes_per_token(model))


def test_read_bandwidth_is_a_positive_rate():
    bw = read_bandwidth(threads=2, nbytes=8 << 20, repeats=2)
    assert np.isfinite(bw) and bw > 1e8   # any machine reads 8 MiB at well over 100 MB/s


@pytest.mark.parametrize("kwargs, match", [
    (dict(threads=0), "threads: expected an int >= 1, got 0"),
    (dict(threads=1.5), "threads: expected an int >= 1"),
    (dict(nbytes=100), "nbytes: expected an int >= 1 MiB"),
])
def test_read_bandwidth_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_bandwidth(**kwargs)


def test_bad_ceiling_arguments_are_named():
    with pytest.raises(ValueError, match="bandwidth: expected > 0"):
        decode_ceiling(100, 0.0)
    with pytest.raises(ValueError, match="model_or_bytes: expected > 0"):
        decode_ceiling(0, 1e9)
    with pytest.raises(TypeError, match="model: expected a Transformer, got str"):
        weight_bytes_per_token("gpt2")


def test_working_set_bandwidth_reads_the_decode_bytes(monkeypatch):
    """The probe reads a buffer of the model's bytes per token (at least 1 MiB, whole 64-byte lines)."""
    from minillm.inference import memory_wall
    seen = []
    monkeypatch.setattr(memory_wall, "read_bandwidth", lambda threads, nbytes, repeats: seen.append(
        (threads, nbytes, repeats)) or 1e9)
    model = Transformer(ModelConfig.preset("llama-small"), seed=0)
    assert working_set_bandwidth(model, 2, 3) == 1e9
    assert working_set_bandwidth(3 << 20 | 5, 1) == 1e9 and working_set_bandwidth(10, 1) == 1e9
    assert seen == [(2, weight_bytes_per_token(model) // 64 * 64, 3), (1, 3 << 20, 7), (1, 1 << 20, 7)]
    with pytest.raises(ValueError, match="model_or_bytes: expected > 0"):
        working_set_bandwidth(0)


def test_working_set_bandwidth_is_a_positive_rate():
    bw = working_set_bandwidth(2 << 20, threads=2, repeats=2)
    assert np.isfinite(bw) and bw > 1e8


def test_read_bandwidth_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats: expected an int >= 1, got 0"):
        read_bandwidth(1, 1 << 20, repeats=0)


def test_native_and_numpy_probes_both_measure_a_rate():
    """The native probe (one region, vector loads) and NumPy's fallback read the same buffer size;
    both give a finite positive rate (which is faster is the host's business, not a test's)."""
    from minillm.inference import memory_wall
    for probe in (memory_wall._numpy_read_bandwidth,) + (
            (memory_wall._native_read_bandwidth,) if memory_wall.lib is not None else ()):
        bw = probe(2, 4 << 20, 2)
        assert np.isfinite(bw) and bw > 0


@settings(max_examples=25, deadline=None)
@given(lines=st.integers(1, 3000), threads=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_native_probe_reads_every_byte_once(lines, threads, seed):
    """memory_read's checksum (the sum of the buffer's u64 words, wrapped) over sizes that split
    unevenly into threads and into its side-by-side runs: every line is read, none twice."""
    from minillm.inference import memory_wall
    if memory_wall.lib is None:
        pytest.skip("C kernels not built")
    raw = np.random.default_rng(seed).integers(0, 256, lines * 64 + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    buf = raw[start:start + lines * 64]
    total = memory_wall.lib.memory_read(memory_wall.ffi.from_buffer("uint8_t[]", buf), lines * 64, threads)
    want = int(buf.view(np.uint64).sum(dtype=np.uint64))
    assert total % (1 << 64) == want
