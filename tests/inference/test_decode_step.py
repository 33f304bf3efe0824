"""kernels.decode_step (csrc/decode.c): one cached decode step through every block in one C call.
It is checked against kernels.reference.decode_step (the per-operation references composed) and
against the model's block-by-block path, which inference.decode takes when kernels.decode_step is None."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer, kernels
from minillm.inference import generate
from minillm.inference.kv_cache import KVCache
from minillm.kernels import native
from minillm.model import NAMES
from minillm.inference.decode import step_tables, decode_weight, forward_cached

pytestmark = pytest.mark.skipif(kernels.decode_step is None, reason="C kernels not built")


class Counter:
    """kernels.decode_step, counting the calls (proves the fast path ran)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _count_loop_steps(monkeypatch):
    """The positions DecodeLoop.step and DecodeLoop.run run steps at, from now on (proves generate's
    loop ran)."""
    calls, real_step, real_run = [], native.DecodeLoop.step, native.DecodeLoop.run

    def step(self, token, pos):
        calls.append(pos)
        return real_step(self, token, pos)

    def run(self, token, pos, n, choose=None):
        try:
            return real_run(self, token, pos, n, choose)
        finally:
            calls.extend(range(pos, pos + self.steps))
    monkeypatch.setattr(native.DecodeLoop, "step", step)
    monkeypatch.setattr(native.DecodeLoop, "run", run)
    return calls


def _decode_both(model, prompt, new_tokens, capacity):
    """Logits and caches after prefill + len(new_tokens) steps, with and without decode_step."""
    fast = Counter(kernels.decode_step)
    results = []
    for fn in (fast, None):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kernels, "decode_step", fn)
            kv = KVCache.allocate(model.config, 1, capacity)
            forward_cached(model, prompt[None], kv)
            logits = [forward_cached(model, np.array([[t]]), kv)[0, -1] for t in new_tokens]
        results.append((np.array(logits), kv))
    assert fast.calls == len(new_tokens) + (len(prompt) == 1)      # a 1-token prompt takes it too
    return results


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_head=st.sampled_from([1, 2, 4]),
       kv_div=st.sampled_from([1, 2, 4]), head_dim=st.sampled_from([2, 6, 8, 16]),
       ffn_dim=st.integers(1, 70), n_layer=st.integers(1, 3), tie=st.booleans(),
       scaling=st.sampled_from([None, {"rope_type": "linear", "factor": 2.0},
                                {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}]),
       prompt_len=st.integers(1, 12), steps=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_decode_step_equals_block_by_block_path(arch, n_head, kv_div, head_dim, ffn_dim, n_layer, tie,
                                                scaling, prompt_len, steps, seed):
    """GPT-2 (LayerNorm, biases, fused qkv, GELU, learned positions) and Llama (RMSNorm, GQA, SwiGLU,
    RoPE with and without scaling) of odd sizes; the cache is filled to its last slot."""
    kv_heads = max(1, n_head // kv_div) if arch == "llama" else n_head
    extra = {"ffn_dim": ffn_dim, "n_kv_head": kv_heads, "rope_scaling": scaling} if arch == "llama" else {}
    cfg = ModelConfig(arch=arch, vocab_size=37, n_layer=n_layer, n_head=n_head, d_model=n_head * head_dim,
                      max_seq_len=32, tie_embeddings=tie, **extra)
    model = Transformer(cfg, seed=seed)
    rng = np.random.default_rng(seed)
    for name, p in model.params.items():             # biases and norm weights away from 0 and 1
        if p.ndim == 1:
            p += rng.standard_normal(p.shape).astype(np.float32) * 0.1
    prompt = rng.integers(0, 37, prompt_len)
    (fast, kv_fast), (ref, kv_ref) = _decode_both(model, prompt, rng.integers(0, 37, steps),
                                                  prompt_len + steps)
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kv_fast.k, kv_ref.k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kv_fast.v, kv_ref.v, rtol=1e-5, atol=1e-6)
    assert kv_fast.pos == kv_ref.pos == prompt_len + steps


def test_generate_takes_decode_step_and_keeps_greedy_tokens(tiny_model, monkeypatch):
    prompt = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    calls = _count_loop_steps(monkeypatch)
    got = generate(tiny_model, prompt, 12)
    assert len(calls) == 11                            # the first new token comes from the prefill
    monkeypatch.setattr(kernels, "decode_step", None)
    np.testing.assert_array_equal(got, generate(tiny_model, prompt, 12))
    np.testing.assert_array_equal(got, generate(tiny_model, prompt, 12, use_cache=False))


@pytest.mark.parametrize("change", ["qk_norm", "alibi", "float64 cache", "batch 2"])
def test_models_and_caches_it_does_not_fit_take_the_python_path(change, monkeypatch):
    cfg = ModelConfig.preset("llama-tiny", qk_norm=change == "qk_norm",
                             position="alibi" if change == "alibi" else None)
    model = Transformer(cfg, seed=2)
    fast = Counter(kernels.decode_step)
    monkeypatch.setattr(kernels, "decode_step", fast)
    B = 2 if change == "batch 2" else 1
    kv = KVCache.allocate(cfg, B, 16, dtype=np.float64 if change == "float64 cache" else np.float32)
    forward_cached(model, np.ones((B, 4), dtype=np.int64), kv)
    out = forward_cached(model, np.ones((B, 1), dtype=np.int64), kv)
    assert fast.calls == 0 and out.shape == (B, 1, cfg.vocab_size) and np.isfinite(out).all()


def test_full_cache_raises_before_writing(llama_tiny):
    kv = KVCache.allocate(llama_tiny.config, 1, 4)
    forward_cached(llama_tiny, np.arange(4)[None], kv)
    k = kv.k.copy()
    with pytest.raises(ValueError, match="capacity"):
        forward_cached(llama_tiny, np.array([[1]]), kv)
    assert kv.pos == 4 and np.array_equal(kv.k, k)


def _layers(model):
    return [{role: model.params.get(name) for role, name in n.items()} for n in model.layer_names]


@pytest.mark.parametrize("bad, match", [
    (lambda a: a.update(x=np.zeros(63, np.float32)), "layers\\[0\\]\\['ln1.w'\\]"),
    (lambda a: a.update(x=np.zeros(64, np.float64)), "x: expected float32"),
    (lambda a: a.update(pos=16), "pos: expected an int in \\[0, 16\\)"),
    (lambda a: a.update(pos=-1), "pos"),
    (lambda a: a.update(n_head=3), "n_head=3"),
    (lambda a: a["layers"][1].update({"down.w": a["layers"][1]["down.w"][:, :-1]}), "layers\\[1\\]\\['down.w'\\]"),
    (lambda a: a["layers"][0].update({"o.w": None}), "layers\\[0\\]\\['o.w'\\]: required"),
    (lambda a: a["layers"][0].update({"ln1.b": np.zeros(64, np.float32)}), "not used by this model"),
    (lambda a: a.update(k=a["k"][:1]), "k_cache"),
    (lambda a: a.update(v=np.zeros((2, 1, 2, 15, 16), np.float32)), "v_cache"),
    (lambda a: a.update(cos=np.zeros(7, np.float32)), "rope_cos"),
    (lambda a: a.update(head=(np.ones(63, np.float32), None, np.zeros((256, 64), np.float32))), "ln_f.w"),
    (lambda a: a.update(head=(np.ones(64, np.float32), np.zeros(64, np.float32), np.zeros((256, 64), np.float32))),
     "RMSNorm has no bias"),
    (lambda a: a.update(head=(np.ones(64, np.float32), None, np.zeros((256, 63), np.float32))), "W_head"),
])
def test_wrapper_rejects_bad_arguments(llama_tiny, bad, match):
    """The C code trusts its pointer table: every array is checked in Python first."""
    cfg = llama_tiny.config
    a = {"x": np.zeros(cfg.d_model, np.float32), "layers": _layers(llama_tiny),
         "k": np.zeros((2, 1, 2, 16, 16), np.float32), "v": np.zeros((2, 1, 2, 16, 16), np.float32),
         "pos": 0, "n_head": 4, "cos": np.ones(8, np.float32), "sin": np.zeros(8, np.float32), "head": None}
    bad(a)
    with pytest.raises((ValueError, TypeError), match=match):
        native.decode_step(a["x"], a["layers"], a["k"], a["v"], a["pos"], a["n_head"], 1e-6, False,
                           a["cos"], a["sin"], a["head"])


def _quantized(arch, fmt, bits, group):
    from minillm.quant import quantize
    cfg = ModelConfig(arch=arch, vocab_size=50, n_layer=2, n_head=4, d_model=256, max_seq_len=64,
                      **({"n_kv_head": 2, "ffn_dim": 512} if arch == "llama" else {}))
    return quantize(Transformer(cfg, seed=3), method="rtn", bits=bits, group_size=group, format=fmt)


@pytest.mark.parametrize("fmt, bits, group", [("int8", 8, 128), ("int4", 4, 32), ("int4", 4, 64), ("nf4", 4, 64),
                                              ("q8_0", 8, 32), ("q4_0", 4, 32), ("q4_K", 4, 32), ("q6_K", 4, 32)])
@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_quantized_models_decode_step_equals_block_by_block_path(fmt, bits, group, arch):
    """Quantized layers run their own fused kernels inside decode_step (csrc/quant.c's rows), with
    the same arithmetic as their matmul."""
    model = _quantized(arch, fmt, bits, group)
    rng = np.random.default_rng(0)
    (got, kv_got), (want, kv_want) = _decode_both(model, rng.integers(0, 50, 5), rng.integers(0, 50, 3), 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kv_got.k, kv_want.k, rtol=1e-5, atol=1e-6)


def _one_token_counting_steps(model, act_int8):
    """Set every quantized layer's act_int8, feed 5 tokens, then 1 more with kernels.decode_step
    counted -> (logits of that token, decode_step calls)."""
    for q in model.quantized.values():
        q.act_int8 = act_int8
    kv = KVCache.allocate(model.config, 1, 8)
    forward_cached(model, np.arange(5)[None], kv)
    counter = Counter(kernels.decode_step)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "decode_step", counter)
        out = forward_cached(model, np.array([[1]]), kv)
    return out, counter.calls


@pytest.mark.parametrize("fmt, act_int8", [("llm_int8", False)])
def test_quantized_layers_that_compute_otherwise_keep_the_python_path(fmt, act_int8):
    """LLM.int8's mixed decomposition is not rows decode_step runs (the int8-activation rows of
    every ggml block type are: test_int8_activation_layers_run_inside_the_step)."""
    model = _quantized("llama", fmt, 8, 128)
    out, calls = _one_token_counting_steps(model, act_int8)
    assert calls == 0 and np.isfinite(out).all()


@pytest.mark.parametrize("fmt", ["q4_K", "q6_K", "q4_0"])
def test_int8_activation_layers_run_inside_the_step(fmt):
    """GGMLLinear(act_int8=True): decode_step runs csrc/qgemm.c's rows (x quantized once per group of
    weights) and its logits equal the Python path's, which runs the same kernel layer by layer."""
    model = _quantized("llama", fmt, 4, 32)
    got, calls = _one_token_counting_steps(model, True)
    assert calls == 1
    kv2 = KVCache.allocate(model.config, 1, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "decode_step", None)
        forward_cached(model, np.arange(5)[None], kv2)
        want = forward_cached(model, np.array([[1]]), kv2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", ["q6_K", "q8_0", "llm_int8"])
def test_quantized_head_runs_in_the_step_or_in_python(head):
    """GGUF files keep the output matrix quantized (Q6_K beside 4-bit blocks): a fused format runs
    inside decode_step, LLM.int8 runs as its own matmul after it; logits equal the Python path's."""
    from minillm.quant.ggml_quants import quantize_blocks
    from minillm.quant.linear import GGMLLinear
    from minillm.quant.llm_int8 import quantize_llm_int8
    model = _quantized("llama", "q4_0", 4, 32)
    name = "lm_head.weight"
    w = model.params[name]
    model.quantized[name] = (quantize_llm_int8(w, np.random.default_rng(0).standard_normal((8, w.shape[1]))
                                               .astype(np.float32)) if head == "llm_int8"
                             else GGMLLinear(head, quantize_blocks(w, head)))
    rng = np.random.default_rng(1)
    (got, _), (want, _) = _decode_both(model, rng.integers(0, 50, 5), rng.integers(0, 50, 3), 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=12, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_kv_head=st.sampled_from([1, 2, 4]), pos=st.integers(0, 9),
       head=st.booleans(), seed=st.integers(0, 2**16))
def test_decode_step_equals_its_numpy_reference(arch, n_kv_head, pos, head, seed):
    """kernels.native.decode_step against kernels.reference.decode_step (the per-operation references
    composed), from the same caches: the new x, the cache slot it writes, and the logits."""
    kv_heads = 4 if arch == "gpt2" else n_kv_head
    model = Transformer(ModelConfig(arch=arch, n_layer=2, n_head=4, n_kv_head=kv_heads, d_model=32,
                                    vocab_size=50, max_seq_len=16), seed=seed)
    cfg, rng = model.config, np.random.default_rng(seed)
    for p in model.params.values():  # non-trivial norms and biases too
        p += 0.1 * rng.standard_normal(p.shape, dtype=np.float32)
    shape = (cfg.n_layer, 1, cfg.n_kv_head, 12, cfg.head_dim)
    k0, v0 = rng.standard_normal((2, *shape), dtype=np.float32)
    x0 = rng.standard_normal(cfg.d_model, dtype=np.float32)
    cos = sin = None
    if cfg.position_scheme == "rope":
        cos, sin = (np.ascontiguousarray(a[0]) for a in model.rope_tables(np.array([pos])))
    n, p = NAMES[cfg.arch], model.params
    head_args = (p[n["ln_f.w"]], p.get(n.get("ln_f.b", "")), p[model.head_weight]) if head else None
    out = {}
    for name, step in (("native", native.decode_step), ("reference", kernels.reference.decode_step)):
        x, k, v = x0.copy(), k0.copy(), v0.copy()
        logits = step(x, _layers(model), k, v, pos, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm", cos, sin,
                      head_args)
        out[name] = (x, k, v, logits)
    (x, k, v, logits), (x_ref, k_ref, v_ref, logits_ref) = out["native"], out["reference"]
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-4)  # float32, summation order differs
    np.testing.assert_allclose(k, k_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-5)
    assert (logits is None) == (not head)
    if head:
        np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt, bits, group", [("int8", 8, 128), ("int4", 4, 32), ("q4_K", 4, 32)])
def test_quantized_decode_step_equals_its_numpy_reference(fmt, bits, group):
    """With quantized weights the reference multiplies by each QuantizedWeight's dequantize()."""
    model = _quantized("llama", fmt, bits, group)
    cfg, rng = model.config, np.random.default_rng(1)
    layers = [{role: decode_weight(model, name) if name in model.quantized else model.params.get(name)
               for role, name in n.items()} for n in model.layer_names]
    assert any(not isinstance(w, np.ndarray) for w in layers[0].values() if w is not None)
    shape = (cfg.n_layer, 1, cfg.n_kv_head, 8, cfg.head_dim)
    k0, v0 = rng.standard_normal((2, *shape), dtype=np.float32)
    x0 = rng.standard_normal(cfg.d_model, dtype=np.float32)
    cos, sin = (np.ascontiguousarray(a[0]) for a in model.rope_tables(np.array([3])))
    x, x_ref = x0.copy(), x0.copy()
    native.decode_step(x, layers, k0.copy(), v0.copy(), 3, cfg.n_head, cfg.norm_eps, False, cos, sin)
    kernels.reference.decode_step(x_ref, layers, k0.copy(), v0.copy(), 3, cfg.n_head, cfg.norm_eps, False, cos, sin)
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-4)  # float32, summation order differs


def test_step_weights_follow_replaced_and_modified_parameters():
    """The decode path keeps one kernels.StepWeights per model (decode.step_weights): a parameter
    changed in place is read through the same tables, a parameter replaced by a new array (or a
    quantized layer switched to float activations) builds new ones; every step equals the
    block-by-block path's."""
    from minillm.inference.decode import step_weights
    model = Transformer(ModelConfig(arch="llama", vocab_size=37, n_layer=2, n_head=2, d_model=16, max_seq_len=16),
                        seed=4)
    name = model.layer_names[1]["ln2.w"]
    cfg = model.config

    def both():
        (got, _), (want, _) = _decode_both(model, np.array([1, 2, 3]), [4], 8)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        return got

    first = both()
    built = step_weights(model, cfg.n_kv_head, cfg.head_dim)
    model.params[name] *= 3.0                                  # in place: same tables
    assert not np.allclose(both(), first)
    assert step_weights(model, cfg.n_kv_head, cfg.head_dim) is built
    model.params[name] = model.params[name] + 1.0              # a new array: new tables
    both()
    rebuilt = step_weights(model, cfg.n_kv_head, cfg.head_dim)
    assert rebuilt is not built and rebuilt.keep[0][1]["ln2.w"] is model.params[name]


def test_decode_tables_follow_replaced_parameters():
    """native.decode_step given layer dicts keeps the checked tables of the last sets it ran
    (native._TABLES): the same arrays reuse an entry, a replaced array makes a new one."""
    model = Transformer(ModelConfig(arch="llama", vocab_size=37, n_layer=2, n_head=2, d_model=16, max_seq_len=16),
                        seed=4)
    cfg = model.config
    layers, head = step_tables(model)
    kc, vc = np.zeros((2, cfg.n_layer, 1, cfg.n_kv_head, 8, cfg.head_dim), np.float32)
    cos, sin = (np.ascontiguousarray(a[0]) for a in model.rope_tables(np.array([0])))

    def step(layers):
        x = np.ones(cfg.d_model, np.float32)
        return native.decode_step(x, layers, kc, vc, 0, cfg.n_head, cfg.norm_eps, False, cos, sin, head)

    native._TABLES.clear()
    first = step(layers)
    np.testing.assert_array_equal(step(layers), first)
    assert len(native._TABLES) == 1
    layers[1]["ln2.w"] = layers[1]["ln2.w"] * 3.0
    assert not np.allclose(step(layers), first) and len(native._TABLES) == 2


@settings(max_examples=20, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_head=st.sampled_from([1, 2, 4]),
       head_dim=st.sampled_from([2, 6, 8]), n_layer=st.integers(1, 2), tie=st.booleans(),
       scaling=st.sampled_from([None, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}]),
       prompt_len=st.integers(1, 6), new=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_generate_decode_loop_equals_the_per_step_path(arch, n_head, head_dim, n_layer, tie, scaling, prompt_len,
                                                       new, seed):
    """generate's DecodeLoop (arguments converted once per generation) gives decode_native's logits
    to the bit, token after token, up to the cache's last slot and the learned positions' last row."""
    extra = {"n_kv_head": max(1, n_head // 2), "rope_scaling": scaling} if arch == "llama" else {}
    cfg = ModelConfig(arch=arch, vocab_size=41, n_layer=n_layer, n_head=n_head, d_model=n_head * head_dim,
                      max_seq_len=prompt_len + new, tie_embeddings=tie, **extra)
    model = Transformer(cfg, seed=seed)
    prompt = np.random.default_rng(seed).integers(0, cfg.vocab_size, prompt_len)
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_loop_steps(mp)
        got, got_logits = generate(model, prompt, new, return_logits=True)
    assert calls == list(range(prompt_len, prompt_len + new - 1))      # one step per slot, in order
    per_step = Counter(kernels.decode_step)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "DecodeLoop", None)
        mp.setattr(kernels, "decode_step", per_step)
        want, want_logits = generate(model, prompt, new, return_logits=True)
    assert per_step.calls == new - 1 + (prompt_len == 1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_logits, want_logits)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_K"])
def test_generate_decode_loop_equals_the_per_step_path_on_int8_layers(fmt, monkeypatch):
    model = _quantized("llama", fmt, 4, 32)
    for q in model.quantized.values():
        q.act_int8 = True                             # csrc/qgemm.c's rows inside the step
    calls = _count_loop_steps(monkeypatch)
    prompt = np.arange(5)
    got, got_logits = generate(model, prompt, 6, return_logits=True)
    monkeypatch.setattr(kernels, "DecodeLoop", None)
    want, want_logits = generate(model, prompt, 6, return_logits=True)
    assert len(calls) == 5
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_logits, want_logits)


def test_native_decoder_only_where_every_step_takes_the_c_step(llama_tiny, monkeypatch):
    from minillm.inference.decode import native_decoder
    kv = KVCache.allocate(llama_tiny.config, 1, 8)
    assert native_decoder(llama_tiny, kv) is not None
    assert native_decoder(llama_tiny, KVCache.allocate(llama_tiny.config, 2, 8)) is None      # batch 2
    assert native_decoder(llama_tiny, KVCache.allocate(llama_tiny.config, 1, 8, dtype=np.float64)) is None
    alibi = Transformer(ModelConfig.preset("llama-tiny", position="alibi"), seed=0)
    assert native_decoder(alibi, KVCache.allocate(alibi.config, 1, 8)) is None
    monkeypatch.setattr(kernels, "decode_step", None)                  # the C step switched off: both
    assert native_decoder(llama_tiny, kv) is None


def test_decode_loop_rejects_bad_tokens_positions_and_tables(llama_tiny):
    from minillm.inference.decode import step_weights
    cfg = llama_tiny.config
    kv = KVCache.allocate(cfg, 1, 4)
    w = step_weights(llama_tiny, kv.k.shape[2], kv.k.shape[4])
    embed = llama_tiny.params[NAMES["llama"]["wte"]]
    cos, sin = llama_tiny.rope_tables(np.arange(4))
    loop = native.DecodeLoop(w, kv.k, kv.v, cfg.n_head, cfg.norm_eps, False, embed, None, cos, sin)
    assert loop.step(1, 0).shape == (cfg.vocab_size,)
    with pytest.raises(ValueError, match="token: expected an id in"):
        loop.step(cfg.vocab_size, 1)
    with pytest.raises(ValueError, match="token: expected an id in"):
        loop.step(1.0, 1)
    with pytest.raises(ValueError, match=r"pos: expected an int in \[0, 4\)"):
        loop.step(1, 4)
    with pytest.raises(ValueError, match="rope_cos: expected"):
        native.DecodeLoop(w, kv.k, kv.v, cfg.n_head, cfg.norm_eps, False, embed, None, cos[:3], sin[:3])
    with pytest.raises(ValueError, match="rope_cos, rope_sin: expected both"):
        native.DecodeLoop(w, kv.k, kv.v, cfg.n_head, cfg.norm_eps, False, embed, None, cos, None)
    with pytest.raises(ValueError, match="embed"):
        native.DecodeLoop(w, kv.k, kv.v, cfg.n_head, cfg.norm_eps, False, embed[:, :-1], None, cos, sin)
    with pytest.raises(ValueError, match="weights: expected a StepWeights"):
        native.DecodeLoop(None, kv.k, kv.v, cfg.n_head, cfg.norm_eps, False, embed, None, cos, sin)


def test_decode_loop_stops_at_the_last_learned_position(monkeypatch):
    """GPT-2's learned positions end at max_seq_len: a step past them raises, as decode_native does."""
    cfg = ModelConfig(arch="gpt2", vocab_size=11, n_layer=1, n_head=2, d_model=8, max_seq_len=4)
    model = Transformer(cfg, seed=0)
    kv = KVCache.allocate(cfg, 1, 6)
    from minillm.inference.decode import native_decoder
    forward_cached(model, np.arange(4)[None], kv)
    step = native_decoder(model, kv)
    with pytest.raises(ValueError, match=r"pos: expected an int in \[0, 4\) \(the cache's capacity and the learned"):
        step(1)
