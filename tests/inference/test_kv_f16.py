"""A float16 KV cache (kv_dtype="float16", llama.cpp's default cache type): the C step rounds each
new key and value to float16 (to nearest even, as NumPy's astype) and widens them back to float32
when attention reads them (csrc/attention.c). Checked against the NumPy reference on float16
pages, against the step on a float32 cache, paged against contiguous and run against step to the
bit, through generate, the engine and the CLI, and on bad input."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer, kernels
from minillm.cli import main as cli_main
from minillm.inference import Engine, generate
from minillm.inference import decode as decode_mod
from minillm.inference.decode import forward_cached, native_decoder, step_tables
from minillm.inference.engine import paged_forward
from minillm.inference.kv_cache import KVCache, kv_dtype_of
from minillm.inference.paged_kv_cache import PagedKVCache
from minillm.kernels import native

from .test_paged_step import _engine_plan, _rows, _run

pytestmark = pytest.mark.skipif(kernels.paged_step is None, reason="C kernels not built")


def _model(arch, n_kv_head=2, seed=0, max_seq_len=64):
    extra = {"n_kv_head": n_kv_head, "ffn_dim": 40} if arch == "llama" else {}
    model = Transformer(ModelConfig(arch=arch, n_layer=2, n_head=4, d_model=32, vocab_size=50,
                                    max_seq_len=max_seq_len, **extra), seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += 0.1 * rng.standard_normal(p.shape, dtype=np.float32)
    return model


def _pages(model, rng, lengths, chunk, block_size):
    """test_paged_step's rows over float16 pages (a prefill chunk of `chunk` for sequence 0)."""
    return _rows(model, rng, len(lengths), lengths, chunk, block_size, spare=2, dtype=np.float16)


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_kv_head=st.sampled_from([1, 2, 4]),
       block_size=st.sampled_from([1, 4, 8, 16, 64]), chunk=st.integers(1, 5),
       lengths=st.lists(st.one_of(st.integers(0, 40), st.integers(250, 600)), min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_float16_pages_equal_the_numpy_reference(arch, n_kv_head, block_size, chunk, lengths, seed):
    """Decode rows and prefill chunks over float16 pages, short rows and rows cut into pieces (past
    256 positions): the outputs and logits as the reference's, which stores with NumPy's rounding
    and attends in float32; every slot the step did not write is untouched, and the new ones hold
    the reference's keys and values to within float16 rounding of float32 noise (one half ulp). The
    two compute each new key in float32 in different orders, so one may round it to the float16
    next to the other's: the outputs after it agree to 1e-3, not float32's 1e-4."""
    model = _model(arch, n_kv_head if arch == "llama" else 4, seed, max_seq_len=1024)
    rng = np.random.default_rng(seed)
    lengths = [max(1, n) if s else n for s, n in enumerate(lengths)]
    case = _pages(model, rng, lengths, chunk, block_size)
    x, k, v, logits = _run(native.paged_step, model, case)
    x_ref, k_ref, v_ref, logits_ref = _run(kernels.reference.paged_step, model, case)
    assert k.dtype == v.dtype == np.float16
    np.testing.assert_allclose(x, x_ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-3, atol=1e-3)
    for got, want, before in ((k, k_ref, case[1]), (v, v_ref, case[2])):
        written = want != before
        assert np.array_equal(got[~written], before[~written])
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_first_layer_stores_float16_of_the_float32_step(arch):
    """Layer 0 sees the same input with either cache, so its new key and value in the float16 cache
    are exactly the float32 cache's, rounded as NumPy rounds (to nearest even)."""
    model = _model(arch, 2 if arch == "llama" else 4, 3)
    prompt = np.random.default_rng(3).integers(0, 50, 9)
    caches = {}
    for dt in ("float32", "float16"):
        kv = KVCache.allocate(model.config, 1, 20, dt)
        forward_cached(model, prompt[None], kv)         # prefill: the C step's rows
        forward_cached(model, np.array([[4]]), kv)      # one decode step
        caches[dt] = kv
    for name in ("k", "v"):
        wide, half = getattr(caches["float32"], name), getattr(caches["float16"], name)
        assert half.dtype == np.float16
        assert np.array_equal(wide[0, :, :, :9].astype(np.float16), half[0, :, :, :9])
        np.testing.assert_allclose(half[:, :, :, :10].astype(np.float32), wide[:, :, :, :10], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_paged_float16_equals_contiguous_to_the_bit(arch):
    """A sequence in shuffled blocks of 8 positions gives exactly what one contiguous float16 run
    gives: the widened passes (csrc/attention.c) cut where the float32 kernels start new groups."""
    model = _model(arch, 2 if arch == "llama" else 4, 5, max_seq_len=1024)
    cfg, rng = model.config, np.random.default_rng(5)
    for n in (21, 300):                                     # one piece; pieces shared by the threads
        x, k, v, tables, row_table, row_pos, cos, sin = _pages(model, rng, [n], 1, 8)
        layers, head = step_tables(model)
        L, _, Hkv, bs, D = k.shape
        kc = k[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
        vc = v[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
        xc = x[0].copy()
        want = native.decode_step(xc, layers, kc, vc, n, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm",
                                  None if cos is None else cos[0], None if sin is None else sin[0], head)
        got = native.paged_step(x, layers, k, v, tables, row_table, row_pos, cfg.n_head, cfg.norm_eps,
                                cfg.norm == "layernorm", cos, sin, head)
        assert np.array_equal(got[0], want) and np.array_equal(x[0], xc)
        assert np.array_equal(k[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(kc.shape), kc)


def test_heads_wider_than_the_widening_buffer():
    """Heads of more than 1024 dims (8192 / DK) widen DK positions at a time into a heap buffer:
    equal to the reference, and paged equal to contiguous to the bit."""
    model = Transformer(ModelConfig(arch="llama", n_layer=1, n_head=1, n_kv_head=1, d_model=1040, ffn_dim=16,
                                    vocab_size=20, max_seq_len=64), seed=2)
    rng = np.random.default_rng(2)
    case = _pages(model, rng, [13], 1, 8)      # blocks of a multiple of DK positions (attention.c)
    x, k, v, logits = _run(native.paged_step, model, case)
    x_ref, _, _, logits_ref = _run(kernels.reference.paged_step, model, case)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-3, atol=1e-3)   # float16 keys: see the first test
    _, k0, v0, tables, row_table, row_pos, cos, sin = case
    L, _, Hkv, bs, D = k0.shape
    kc = k0[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
    vc = v0[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
    layers, head = step_tables(model)
    cfg = model.config
    want = native.decode_step(case[0][0].copy(), layers, kc, vc, 13, cfg.n_head, cfg.norm_eps, False, cos[0], sin[0],
                              head)
    assert np.array_equal(logits[0], want)


@settings(max_examples=8, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_run_equals_step_on_a_float16_cache(arch, n, seed):
    """DecodeLoop.run (decode_run) and n calls of step give the same tokens, logits and cache."""
    model = _model(arch, 2 if arch == "llama" else 4, seed)
    prompt = np.random.default_rng(seed).integers(0, 50, 5)
    results = []
    for by_run in (True, False):
        kv = KVCache.allocate(model.config, 1, 5 + n + 1, "float16")
        forward_cached(model, prompt[None], kv)
        dec, seen = native_decoder(model, kv), []
        assert dec is not None
        if by_run:
            toks = dec.run(3, n, lambda z, g: seen.append(np.array(z)) or g).tolist()
        else:
            toks, t = [], 3
            for _ in range(n):
                z = dec(t)
                seen.append(z)
                t = int(np.argmax(z))
                toks.append(t)
        results.append((toks, seen, kv.k.copy(), kv.v.copy()))
    (t1, z1, k1, v1), (t2, z2, k2, v2) = results
    assert t1 == t2 and all(np.array_equal(a, b) for a, b in zip(z1, z2))
    assert np.array_equal(k1, k2) and np.array_equal(v1, v2)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_with_a_float16_cache_in_c_equals_the_python_path(arch, monkeypatch):
    """generate(kv_dtype="float16") through the C loop, and the block-by-block forward (the C steps
    switched off) fed the same tokens, give the same logits at every step (to 1e-3: either may round
    a key to the float16 next to the other's, see above); both stay near the float32 cache's first
    logits (keys and values rounded to 11 bits)."""
    model = _model(arch, 2 if arch == "llama" else 4, 7)
    prompt = np.random.default_rng(7).integers(0, 50, 6)
    tokens_c, z_c = generate(model, prompt, 8, return_logits=True, kv_dtype="float16")
    _, z_wide = generate(model, prompt, 8, return_logits=True)
    monkeypatch.setattr(decode_mod.kernels, "paged_step", None)
    monkeypatch.setattr(decode_mod.kernels, "decode_step", None)
    kv = KVCache.allocate(model.config, 1, 6 + 8, "float16")
    z_py = [forward_cached(model, prompt[None], kv)[0, -1]]
    for t in tokens_c[:-1]:
        z_py.append(forward_cached(model, np.array([[t]]), kv)[0, -1])
    np.testing.assert_allclose(z_c, np.stack(z_py), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(z_c[0], z_wide[0], rtol=1e-2, atol=1e-2)


def test_engine_with_a_float16_pool_c_step_equals_block_by_block(monkeypatch):
    """The engine's C step and its block-by-block forward (which gathers a float16 pool's pages and
    widens them) on the same mixed step: two decode rows and a prefill chunk."""
    model = _model("llama", 2, 4)
    results = []
    for use in (True, False):
        cache, plan = _engine_plan(model, np.random.default_rng(4), np.float16)
        assert cache.k.dtype == np.float16
        calls = []
        monkeypatch.setattr(kernels, "paged_step",
                            (lambda *a, **kw: calls.append(1) or native.paged_step(*a, **kw)) if use else None)
        results.append(paged_forward(model, cache, plan))
        assert len(calls) == use
    np.testing.assert_allclose(results[0], results[1], rtol=1e-3, atol=1e-3)   # float16 keys: see the first test


def test_engine_generates_with_a_float16_pool():
    model = _model("llama", 2, 1)
    prompt = np.random.default_rng(1).integers(0, 50, 7).tolist()
    engine = Engine(model, block_size=4, num_blocks=16, kv_dtype="float16")
    assert engine.cache.k.dtype == np.float16 and engine.cache.k.nbytes * 2 == PagedKVCache(
        model.config, 16, 4).k.nbytes
    rid = engine.add_request(prompt, max_new_tokens=6)
    out = engine.run()[rid]
    assert np.array_equal(out, generate(model, prompt, 6, kv_dtype="float16"))


def test_bad_kv_dtypes_are_named():
    model = _model("llama", 2, 0)
    for bad in ("int8", np.float64, "bfloat16", 3):
        with pytest.raises(ValueError, match="kv_dtype: expected 'float32' or 'float16'"):
            generate(model, [1, 2], 2, kv_dtype=bad)
        with pytest.raises(ValueError, match="kv_dtype"):
            Engine(model, num_blocks=4, kv_dtype=bad)
    assert kv_dtype_of("F16") == np.float16 and kv_dtype_of(None) == np.float32
    case = _pages(model, np.random.default_rng(0), [3], 1, 4)
    x, k, v, tables, row_table, row_pos, cos, sin = case
    layers, head = step_tables(model)
    cfg = model.config
    with pytest.raises(ValueError, match="v_pages: expected float16 like k_pages, got float32"):
        native.paged_step(x, layers, k, v.astype(np.float32), tables, row_table, row_pos, cfg.n_head,
                          cfg.norm_eps, False, cos, sin, head)
    with pytest.raises(ValueError, match="k_pages: expected a C-contiguous array"):
        native.paged_step(x, layers, np.asfortranarray(k), v, tables, row_table, row_pos, cfg.n_head,
                          cfg.norm_eps, False, cos, sin, head)
    with pytest.raises(TypeError, match="k_pages: expected float32, got float64"):
        native.paged_step(x, layers, k.astype(np.float64), v, tables, row_table, row_pos, cfg.n_head,
                          cfg.norm_eps, False, cos, sin, head)


def test_cli_refuses_a_bad_kv_dtype(capsys):
    for cmd in (["generate", "--prompt", "a"], ["chat"], ["serve", "--model", "."]):
        assert cli_main(cmd + ["--kv-dtype", "int8"]) != 0
        assert "argument --kv-dtype: invalid choice: 'int8'" in capsys.readouterr().err
