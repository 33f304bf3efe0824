"""kernels.paged_step (csrc/decode.c): M tokens of several sequences through every block in one C
call over a paged KV cache -- the serving engine's step. Checked against kernels.reference.paged_step
(the per-operation references composed), against decode_step on a contiguous cache (to the bit),
against the engine's block-by-block forward, and on bad input."""
import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer, kernels
from minillm.inference import decode as decode_mod
from minillm.inference import engine as engine_mod
from minillm.inference.decode import step_tables
from minillm.inference.engine import Engine, paged_forward
from minillm.inference.paged_kv_cache import PagedKVCache
from minillm.kernels import native

pytestmark = pytest.mark.skipif(kernels.paged_step is None, reason="C kernels not built")


def _model(arch, n_kv_head=2, seed=0, quant=None):
    extra = {"n_kv_head": n_kv_head, "ffn_dim": 72} if arch == "llama" else {}
    model = Transformer(ModelConfig(arch=arch, n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=64,
                                    **extra), seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():  # non-trivial norms and biases too
        p += 0.1 * rng.standard_normal(p.shape, dtype=np.float32)
    if quant is not None:
        from minillm.quant import quantize
        fmt, bits, group = quant
        model = quantize(model, method="rtn", bits=bits, group_size=group, format=fmt)
    return model


def _rows(model, rng, n_seqs, lengths, chunk, block_size, spare=3, dtype=np.float32):
    """A paged cache holding random K/V (of dtype) for n_seqs sequences of the given cached lengths
    (blocks in a shuffled order), and one row per new token: a decode token for each sequence, or
    `chunk` tokens for sequence 0 (a prefill chunk). -> (x, k, v, tables, row_table, row_pos, cos, sin)."""
    cfg = model.config
    need = [-(-(n + (chunk if s == 0 else 1)) // block_size) for s, n in enumerate(lengths)]
    nb = sum(need) + spare
    ids = rng.permutation(nb).astype(np.int32)
    tables = np.zeros((n_seqs, max(need)), dtype=np.int32)
    used = 0
    for s in range(n_seqs):
        tables[s, :need[s]] = ids[used:used + need[s]]
        used += need[s]
    shape = (cfg.n_layer, nb, cfg.n_kv_head, block_size, cfg.head_dim)
    k, v = rng.standard_normal((2, *shape), dtype=np.float32).astype(dtype)
    row_table = np.array([0] * chunk + list(range(1, n_seqs)), dtype=np.int32)
    row_pos = np.array([lengths[0] + i for i in range(chunk)] + lengths[1:], dtype=np.int32)
    x = rng.standard_normal((len(row_pos), cfg.d_model), dtype=np.float32)
    cos = sin = None
    if cfg.position_scheme == "rope":
        cos, sin = (np.ascontiguousarray(a) for a in model.rope_tables(row_pos))
    return x, k, v, tables, row_table, row_pos, cos, sin


def _run(step, model, case, head_rows=None, with_head=True):
    x, k, v, tables, row_table, row_pos, cos, sin = (a.copy() if isinstance(a, np.ndarray) else a for a in case)
    layers, head = step_tables(model)
    cfg = model.config
    logits = step(x, layers, k, v, tables, row_table, row_pos, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm",
                  cos, sin, head if with_head else None, head_rows)
    return x, k, v, logits


@settings(max_examples=30, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_kv_head=st.sampled_from([1, 2, 4]),
       n_seqs=st.integers(1, 4), block_size=st.sampled_from([1, 3, 4, 8, 16]), chunk=st.integers(1, 6),
       lengths=st.lists(st.integers(0, 20), min_size=4, max_size=4), seed=st.integers(0, 2**16))
def test_paged_step_equals_its_numpy_reference(arch, n_kv_head, n_seqs, block_size, chunk, lengths, seed):
    """GPT-2 and Llama (GQA) rows of several sequences, one of them a prefill chunk whose rows attend
    to each other, over shuffled blocks of any size: the outputs, every page, and the logits of
    the rows asked for."""
    model = _model(arch, n_kv_head if arch == "llama" else 4, seed)
    rng = np.random.default_rng(seed)
    lengths = [max(1, n) if s else n for s, n in enumerate(lengths[:n_seqs])]  # decode rows follow a token
    case = _rows(model, rng, n_seqs, lengths, chunk, block_size)
    head_rows = rng.permutation(len(case[0]))[:max(1, len(case[0]) // 2)].astype(np.int32)
    x, k, v, logits = _run(native.paged_step, model, case, head_rows)
    x_ref, k_ref, v_ref, logits_ref = _run(kernels.reference.paged_step, model, case, head_rows)
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-4)   # float32, summation order differs
    np.testing.assert_allclose(k, k_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("quant", [("q4_1", 4, 32), ("q8_0", 8, 32), ("q4_K", 4, 32), ("int4", 4, 32), ("int8", 8, 128)])
def test_quantized_paged_step_equals_its_numpy_reference(quant):
    """Quantized weights: int8-activation ggml rows (csrc/qgemm.c, M rows at once) and quant.c's
    one-row kernels (taken row by row); the reference multiplies by each weight's dequantize()."""
    model = _model("llama", 2, 1, quant)
    for q in model.quantized.values():
        if hasattr(q, "act_int8") and quant[0].startswith("q"):
            q.act_int8 = True
    case = _rows(model, np.random.default_rng(1), 3, [5, 9, 2], 4, 16)
    x, k, _, logits = _run(native.paged_step, model, case)
    x_ref, k_ref, _, logits_ref = _run(kernels.reference.paged_step, model, case)
    tol = 5e-2 if quant[0].startswith("q") else 1e-4    # int8 activations: x rounded per 32 inputs
    np.testing.assert_allclose(k, k_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(x, x_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(logits, logits_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_one_row_equals_decode_step_on_a_contiguous_cache_to_the_bit(arch):
    """A sequence in shuffled blocks of 8 positions gives exactly what decode_step gives with the
    same K/V in one contiguous run: the same kernels in the same order of float operations."""
    model = _model(arch, 2 if arch == "llama" else 4, 5)
    cfg, rng = model.config, np.random.default_rng(5)
    x, k, v, tables, row_table, row_pos, cos, sin = _rows(model, rng, 1, [21], 1, 8)
    layers, head = step_tables(model)
    L, _, Hkv, bs, D = k.shape
    kc = k[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
    vc = v[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(L, 1, Hkv, -1, D).copy()
    xc = x[0].copy()
    want = native.decode_step(xc, layers, kc, vc, 21, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm",
                              None if cos is None else cos[0], None if sin is None else sin[0], head)
    got = native.paged_step(x, layers, k, v, tables, row_table, row_pos, cfg.n_head, cfg.norm_eps,
                            cfg.norm == "layernorm", cos, sin, head)
    assert np.array_equal(got[0], want) and np.array_equal(x[0], xc)
    assert np.array_equal(k[:, tables[0]].transpose(0, 2, 1, 3, 4).reshape(kc.shape), kc)


@settings(max_examples=12, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), quant=st.sampled_from([None, ("q4_0", 4, 32), ("q8_0", 8, 32)]),
       lengths=st.lists(st.integers(1, 20), min_size=4, max_size=4), seed=st.integers(0, 2**16))
def test_rows_do_not_depend_on_the_rows_beside_them(arch, quant, lengths, seed):
    """A token's result is the same alone or in a batch of other sequences' tokens (each output is
    one dot product whatever M is; int8 activations: each row quantized on its own): a served
    request's greedy text does not depend on the load. Alone (M = 1) the step runs its one-row
    mode (csrc/decode.c: each thread's own copy of the row-wise work, a kv head's store and
    attention in one task), so this also holds that mode to the batched phases, biases and
    LayerNorm (GPT-2) included, to the bit: outputs, logits and the keys and values written."""
    model = _model(arch, 2 if arch == "llama" else 4, seed % 50, quant)
    for q in getattr(model, "quantized", {}).values():
        if hasattr(q, "act_int8"):
            q.act_int8 = True
    case = _rows(model, np.random.default_rng(seed), 4, lengths, 1, 4)
    x, k, v, logits = _run(native.paged_step, model, case)
    for m in range(len(case[0])):
        xs, ks, vs, tables, row_table, row_pos, cos, sin = case
        one = (xs[m:m + 1], ks, vs, tables, row_table[m:m + 1], row_pos[m:m + 1],
               None if cos is None else cos[m:m + 1], None if sin is None else sin[m:m + 1])
        x1, k1, v1, logits1 = _run(native.paged_step, model, one)
        assert np.array_equal(x1[0], x[m]) and np.array_equal(logits1[0], logits[m])
        seq, pos = tables[row_table[m]], row_pos[m]
        block, slot = seq[pos // 4], pos % 4
        assert np.array_equal(k1[:, block, :, slot], k[:, block, :, slot])
        assert np.array_equal(v1[:, block, :, slot], v[:, block, :, slot])


def test_bad_rows_are_named_and_nothing_is_written():
    model = _model("llama", 2, 2)
    case = _rows(model, np.random.default_rng(2), 2, [4, 6], 1, 4)
    x, k, v, tables, row_table, row_pos, cos, sin = case
    layers, head = step_tables(model)
    cfg = model.config

    def call(**kw):
        args = dict(x=x.copy(), layers=layers, k_pages=k.copy(), v_pages=v.copy(), tables=tables,
                    row_table=row_table, row_pos=row_pos, n_head=cfg.n_head, eps=cfg.norm_eps, layernorm=False,
                    rope_cos=cos, rope_sin=sin, head=head)
        args.update(kw)
        return native.paged_step(**args)

    with pytest.raises(ValueError, match="row_pos: expected entries in"):
        call(row_pos=np.array([4, 10**6], dtype=np.int64))
    with pytest.raises(ValueError, match="row_table: expected entries in"):
        call(row_table=np.array([0, 2], dtype=np.int32))
    with pytest.raises(ValueError, match="tables: expected entries in"):
        call(tables=tables + k.shape[1])
    with pytest.raises(ValueError, match="head_rows: expected entries in"):
        call(head_rows=np.array([2], dtype=np.int32))
    with pytest.raises(ValueError, match="row_pos: expected shape"):
        call(row_pos=row_pos[:1])
    with pytest.raises(TypeError, match="row_table: expected an integer array"):
        call(row_table=row_table.astype(np.float32))
    with pytest.raises(ValueError, match="rope_cos: expected shape"):
        call(rope_cos=cos[:1])


def test_the_c_step_checks_every_block_id_it_would_follow():
    """C never trusts its caller: a block id past the pool in the part of a table a row reaches is
    refused (-2) before anything is written; the same id past the row's reach is never read."""
    from minillm._native import ffi, lib
    model = _model("gpt2", 4, 3)
    x, k, v, tables, row_table, row_pos, _, _ = _rows(model, np.random.default_rng(3), 1, [5], 1, 4)
    layers, _ = step_tables(model)
    cfg = model.config
    keep = []
    vecs, linears = native._decode_tables(layers, lambda l: (ffi.from_buffer("float[]", k[l]),
                                                             ffi.from_buffer("float[]", v[l])),
                                          cfg.d_model, cfg.d_model, cfg.d_model, cfg.ffn_dim, True, keep)
    L, NB, Hkv, bs, D = k.shape
    k0, x0 = k.copy(), x.copy()
    for bad, status in ((np.array([[0, NB]], dtype=np.int32), -2), (np.array([[0, 1, NB]], dtype=np.int32), 0)):
        t = np.ascontiguousarray(bad)
        rc = lib.paged_step(ffi.from_buffer("float[]", x), 1, vecs, linears, L, cfg.d_model, cfg.n_head, Hkv, D,
                            cfg.ffn_dim, NB, bs, ffi.from_buffer("int32_t[]", t), 1, t.shape[1],
                            ffi.from_buffer("int32_t[]", row_table), ffi.from_buffer("int32_t[]", row_pos), 1, 0,
                            cfg.norm_eps, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL)
        assert rc == status
        if status:
            assert np.array_equal(k, k0) and np.array_equal(x, x0)


def _engine_plan(model, rng, dtype=np.float32):
    """A cache with two sequences mid-decode and one new prompt, and the plan of one mixed step."""
    cache = PagedKVCache(model.config, 40, 4, dtype=dtype)
    plan = []
    for sid, (n_prompt, chunk) in enumerate(((9, 9), (5, 5), (13, 6))):
        cache.add_sequence(sid, rng.integers(0, 50, n_prompt).tolist())
        plan.append((sid, 0, chunk, cache.prepare(sid, chunk)))
    paged_forward(model, cache, plan, use_native=False)
    for sid, _, n, _ in plan:
        cache.commit(sid, n)
    cache.append_token(0, 7)
    cache.append_token(1, 8)
    return cache, [(0, 9, 1, cache.prepare(0, 1)), (1, 5, 1, cache.prepare(1, 1)), (2, 6, 7, cache.prepare(2, 7))]


@pytest.mark.parametrize("quant", [None, ("q4_0", 4, 32)])
def test_engine_step_takes_the_c_step_and_equals_the_block_by_block_forward(quant, monkeypatch):
    model = _model("llama", 2, 4, quant)
    results = []
    for use in (True, False):
        cache, plan = _engine_plan(model, np.random.default_rng(4))
        calls = []
        monkeypatch.setattr(kernels, "paged_step",
                            (lambda *a, **kw: calls.append(1) or native.paged_step(*a, **kw)) if use else None)
        results.append(paged_forward(model, cache, plan))
        assert len(calls) == use
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-4)


def test_engine_runs_long_prefill_chunks_block_by_block_beside_the_c_step(monkeypatch):
    """A prefill chunk past NATIVE_MAX_ROWS tokens runs block by block (test above) while the decode
    tokens of the same step take the C step; the greedy outputs equal the block-by-block engine's."""
    model = _model("llama", 2, 6)
    rows, blocks = [], []
    monkeypatch.setattr(kernels, "paged_step", lambda *a, **kw: rows.append(len(a[0])) or native.paged_step(*a, **kw))
    forward = engine_mod._paged_forward_blocks
    monkeypatch.setattr(engine_mod, "_paged_forward_blocks",
                        lambda m, c, plan, *a: blocks.append([n for _, _, n, _ in plan]) or forward(m, c, plan, *a))
    rng = np.random.default_rng(6)
    short, long = rng.integers(0, 50, 5).tolist(), rng.integers(0, 50, decode_mod.NATIVE_MAX_ROWS + 3).tolist()
    outs = []
    for use in (True, False):
        eng = Engine(model, max_num_batched_tokens=128, use_native=use)
        a = eng.add_request(short, 4)
        eng.step()                                   # a's prompt: 5 rows
        b = eng.add_request(long, 3)
        outs.append(eng.run())
        if use:
            assert rows == [5, 1, 2, 2] and blocks == [[35]]     # b's prompt went beside a's decode token
            assert eng.stats["steps"] == 4
    assert all(list(outs[0][r]) == list(outs[1][r]) for r in (a, b))


@pytest.mark.parametrize("quant", [None, ("q4_0", 4, 32)])
def test_forward_cached_runs_several_tokens_through_the_c_step(quant, monkeypatch):
    """A prompt or a speculative verification (T > 1 tokens of one sequence, contiguous cache) goes
    through paged_step with the cache read as one block: the logits of every token and the cache
    equal the block-by-block path's, and the next decode step continues from them."""
    from minillm.inference.decode import forward_cached
    from minillm.inference.kv_cache import KVCache
    model = _model("llama", 2, 8, quant)
    for q in model.quantized.values():
        q.act_int8 = True
    tokens = np.random.default_rng(8).integers(0, 50, 12)
    out = []
    for use in (True, False):
        calls = []
        monkeypatch.setattr(kernels, "paged_step",
                            (lambda *a, **kw: calls.append(len(a[0])) or native.paged_step(*a, **kw)) if use else None)
        kv = KVCache.allocate(model.config, 1, 20)
        a = forward_cached(model, tokens[None, :5], kv)
        b = forward_cached(model, tokens[None, 5:9], kv)
        assert calls == ([5, 4] if use else [])
        out.append((a, b, kv.k[:, :, :, :9].copy()))
    for got, want in zip(*out):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_long_prompts_keep_the_block_by_block_forward_and_its_float_activations():
    """Past NATIVE_MAX_ROWS tokens of one sequence, the block-by-block forward runs: its quantized
    layers switch to float activations at the same length (GGMLLinear's INT8_MAX_M), so a token's
    arithmetic does not depend on the route."""
    from minillm.inference.decode import rows_fit
    from minillm.quant.linear import INT8_MAX_M
    assert decode_mod.NATIVE_MAX_ROWS == INT8_MAX_M
    assert rows_fit(INT8_MAX_M) and not rows_fit(INT8_MAX_M + 1)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_step_weights_equal_the_layer_tables(arch):
    """paged_step given a StepWeights (the tables built once, as the decode loop passes them) gives
    the layer dicts' results to the bit, over two different caches in turn (its cache pointers
    follow the arrays); built for other sizes, or with a second head, it is refused by name."""
    model = _model(arch, 2 if arch == "llama" else 4)
    cfg = model.config
    layers, head = step_tables(model)
    weights = kernels.StepWeights(layers, head, cfg.d_model, cfg.n_head * cfg.head_dim,
                                  cfg.n_kv_head * cfg.head_dim, cfg.norm == "layernorm")
    for seed in (1, 2, 1):
        case = _rows(model, np.random.default_rng(seed), 3, [4, 7, 2], 3, 4)
        x, k, v, want = _run(native.paged_step, model, case)
        x2, k2, v2, tables, row_table, row_pos, cos, sin = (a.copy() if isinstance(a, np.ndarray) else a for a in case)
        got = native.paged_step(x2, weights, k2, v2, tables, row_table, row_pos, cfg.n_head, cfg.norm_eps,
                                cfg.norm == "layernorm", cos, sin)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(k2, k)
    args = (x2, weights, k2, v2, tables, row_table, row_pos, cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm",
            cos, sin)
    with pytest.raises(ValueError, match="head: a StepWeights carries its own head"):
        native.paged_step(*args, head)
    with pytest.raises(ValueError, match="layers: StepWeights built for"):   # another n_head than its own
        native.paged_step(*args[:7], 2 * cfg.n_head, *args[8:])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_step_weights_decode_equals_decode_step(arch):
    """decode_step given a StepWeights (what the decode loop runs: the cache's arguments converted
    once and kept) equals decode_step over the layer dicts to the bit, step after step and across
    two caches used in turn; a bad position, x or second head is refused by name."""
    model = _model(arch, 2 if arch == "llama" else 4)
    cfg = model.config
    layers, head = step_tables(model)
    weights = kernels.StepWeights(layers, head, cfg.d_model, cfg.n_head * cfg.head_dim,
                                  cfg.n_kv_head * cfg.head_dim, cfg.norm == "layernorm")
    rng = np.random.default_rng(3)
    shape = (cfg.n_layer, 1, cfg.n_kv_head, 12, cfg.head_dim)
    caches = [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(2)]
    want = [(c[0].copy(), c[1].copy()) for c in caches]
    for pos in range(6):
        for (k, v), (kw, vw) in zip(caches, want):
            x = rng.standard_normal(cfg.d_model, dtype=np.float32)
            rope = [None, None]
            if cfg.position_scheme == "rope":
                rope = [np.ascontiguousarray(a[0]) for a in model.rope_tables(np.array([pos]))]
            args = (cfg.n_head, cfg.norm_eps, cfg.norm == "layernorm", *rope)
            x2 = x.copy()
            got = native.decode_step(x, weights, k, v, pos, *args)
            ref = native.decode_step(x2, layers, kw, vw, pos, *args, head)
            np.testing.assert_array_equal(got, ref)
            np.testing.assert_array_equal(x, x2)
            np.testing.assert_array_equal(k, kw)
    k, v = caches[0]
    x = np.zeros(cfg.d_model, np.float32)
    with pytest.raises(ValueError, match=r"pos: expected an int in \[0, 12\)"):
        native.decode_step(x, weights, k, v, 12, *args)
    with pytest.raises(ValueError, match="x: expected shape"):
        native.decode_step(np.zeros(cfg.d_model + 1, np.float32), weights, k, v, 0, *args)
    with pytest.raises(ValueError, match="head: a StepWeights carries its own head"):
        native.decode_step(x, weights, k, v, 0, *args, head)
    with pytest.raises(ValueError, match="StepWeights built for"):
        native.decode_step(x, weights, k, v, 0, 2 * cfg.n_head, *args[1:])
    native.decode_step(x, weights, k, v, 0, *args)      # the kept plan does not keep the cache alive
    gone = weakref.ref(k)
    del k, v, caches
    gc.collect()
    assert gone() is None


def _long_model(arch, n_kv_head, seed):
    extra = {"n_kv_head": n_kv_head, "ffn_dim": 40} if arch == "llama" else {}
    model = Transformer(ModelConfig(arch=arch, n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=1024,
                                    **extra), seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p += 0.1 * rng.standard_normal(p.shape, dtype=np.float32)
    return model


@settings(max_examples=12, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), n_kv_head=st.sampled_from([1, 2, 4]), n_seqs=st.integers(1, 3),
       block_size=st.sampled_from([3, 16, 64]), chunk=st.integers(1, 3),
       lengths=st.lists(st.integers(200, 700), min_size=3, max_size=3), seed=st.integers(0, 2**16))
def test_long_rows_in_pieces_equal_the_numpy_reference(arch, n_kv_head, n_seqs, block_size, chunk, lengths, seed):
    """Rows attending over more than 256 positions are cut into pieces that the threads share, each
    merged by the thread that finishes a row's last one (csrc/decode.c ATT_PIECE): equal to the
    reference's single softmax within float32 rounding, over shuffled blocks of sizes that do and do
    not divide the pieces, with prefill chunks whose rows straddle a piece boundary."""
    model = _long_model(arch, n_kv_head if arch == "llama" else 4, seed)
    rng = np.random.default_rng(seed)
    case = _rows(model, rng, n_seqs, lengths[:n_seqs], chunk, block_size)
    x, k, v, logits = _run(native.paged_step, model, case)
    x_ref, k_ref, v_ref, logits_ref = _run(kernels.reference.paged_step, model, case)
    np.testing.assert_allclose(x, x_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(k, k_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-4, atol=1e-4)


def test_long_rows_do_not_depend_on_the_rows_beside_them():
    """The pieces of a long row are cut by its position alone: the row gives the same bits alone
    or beside other sequences' rows (short and long)."""
    model = _long_model("llama", 2, 5)
    case = _rows(model, np.random.default_rng(5), 3, [600, 40, 300], 1, 16)
    x, k, v, logits = _run(native.paged_step, model, case)
    for m in range(len(case[0])):
        xs, ks, vs, tables, row_table, row_pos, cos, sin = case
        one = (xs[m:m + 1], ks, vs, tables, row_table[m:m + 1], row_pos[m:m + 1], cos[m:m + 1], sin[m:m + 1])
        x1, _, _, logits1 = _run(native.paged_step, model, one)
        assert np.array_equal(x1[0], x[m]) and np.array_equal(logits1[0], logits[m])
