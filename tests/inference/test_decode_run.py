"""DecodeLoop.run (csrc/decode.c decode_run): up to n decode steps in one C call, the threads kept in one
parallel region from token to token. Each step must be DecodeLoop.step's to the bit: the same logits,
the same cache writes, the same tokens; generate takes it for every new token after the first."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import ModelConfig, Transformer, kernels
from minillm.inference import generate
from minillm.inference.decode import forward_cached, native_decoder, step_weights
from minillm.inference.kv_cache import KVCache
from minillm.model import NAMES

pytestmark = pytest.mark.skipif(kernels.DecodeLoop is None, reason="C kernels not built")


def _model(arch, n_head=2, head_dim=8, n_layer=2, vocab=37, max_seq_len=40, seed=0, fmt=None):
    extra = {"n_kv_head": max(1, n_head // 2), "ffn_dim": 24} if arch == "llama" else {}
    cfg = ModelConfig(arch=arch, vocab_size=vocab, n_layer=n_layer, n_head=n_head, d_model=n_head * head_dim,
                      max_seq_len=max_seq_len, **extra)
    model = Transformer(cfg, seed=seed)
    if fmt is not None:
        from minillm.quant import quantize
        model = quantize(model, method="rtn", bits=8 if fmt == "q8_0" else 4, group_size=32, format=fmt)
        for q in model.quantized.values():
            q.act_int8 = True                         # csrc/qgemm.c's int8 rows inside the step
    return model


def _prefilled(model, prompt, capacity):
    kv = KVCache.allocate(model.config, 1, capacity)
    forward_cached(model, np.asarray(prompt)[None], kv)
    return kv


def _loop(model, kv):
    cfg = model.config
    embed = model.params[NAMES[cfg.arch]["wte"]]
    pos_embed = model.params[NAMES[cfg.arch]["wpe"]] if cfg.position_scheme == "learned" else None
    rope = (None, None)
    if cfg.position_scheme == "rope":
        rope = (np.ascontiguousarray(t, dtype=np.float32) for t in model.rope_tables(np.arange(kv.k.shape[3])))
    return kernels.DecodeLoop(step_weights(model, kv.k.shape[2], kv.k.shape[4]), kv.k, kv.v, cfg.n_head,
                              cfg.norm_eps, cfg.norm == "layernorm", embed, pos_embed, *rope)


def _by_steps(model, prompt, token, n, capacity):
    """n greedy steps through DecodeLoop.step: (tokens, logits of each step, the cache)."""
    kv = _prefilled(model, prompt, capacity)
    loop, tokens, logits = _loop(model, kv), [], []
    for i in range(n):
        z = loop.step(token, kv.pos)
        kv.pos += 1
        token = int(np.argmax(z))
        tokens.append(token)
        logits.append(z)
    return tokens, logits, kv


@settings(max_examples=20, deadline=None)
@given(arch=st.sampled_from(["gpt2", "llama"]), fmt=st.sampled_from([None, "q8_0", "q4_0"]),
       n_head=st.sampled_from([1, 2, 4]), prompt_len=st.integers(1, 6), n=st.integers(1, 8),
       spare=st.integers(0, 3), with_choose=st.booleans(), seed=st.integers(0, 2**16))
def test_run_equals_its_steps(arch, fmt, n_head, prompt_len, n, spare, with_choose, seed):
    """Greedy in C (choose None) or through choose, up to the cache's last slot: the tokens, each step's
    logits and every cache write equal DecodeLoop.step's, step after step."""
    model = _model(arch, n_head=n_head, head_dim=16 if fmt else 8, seed=seed, fmt=fmt)
    prompt = np.random.default_rng(seed).integers(0, model.config.vocab_size, prompt_len)
    capacity = prompt_len + n + spare
    want_tokens, want_logits, kv_want = _by_steps(model, prompt, int(prompt[-1]), n, capacity)
    kv = _prefilled(model, prompt, capacity)
    seen = []

    def choose(z, greedy):
        seen.append(z.copy())
        assert greedy == np.argmax(z)
        return int(np.argmax(z))
    tokens, steps = _loop(model, kv).run(int(prompt[-1]), kv.pos, n, choose if with_choose else None)
    assert steps == n and tokens.dtype == np.int64
    assert tokens.tolist() == want_tokens
    if with_choose:
        np.testing.assert_array_equal(np.array(seen), np.array(want_logits))
    np.testing.assert_array_equal(kv.k, kv_want.k)
    np.testing.assert_array_equal(kv.v, kv_want.v)


def test_run_past_one_attention_piece_equals_its_steps():
    """Positions across 256 (csrc/decode.c ATT_PIECE): a row's attention is cut into pieces there."""
    model = _model("llama", n_layer=1, max_seq_len=300)
    prompt = np.random.default_rng(0).integers(0, 37, 250)
    want_tokens, want_logits, kv_want = _by_steps(model, prompt, 5, 12, 270)
    kv = _prefilled(model, prompt, 270)
    tokens, steps = _loop(model, kv).run(5, kv.pos, 12)
    assert tokens.tolist() == want_tokens and steps == 12
    np.testing.assert_array_equal(kv.k, kv_want.k)


def test_choose_ends_the_run_and_its_errors_come_back():
    model = _model("llama")
    kv = _prefilled(model, [1, 2, 3], 20)
    loop, calls = _loop(model, kv), []

    def stop_at_third(z, greedy):
        calls.append(1)
        return None if len(calls) == 3 else 7
    tokens, steps = loop.run(4, kv.pos, 10, stop_at_third)
    assert steps == 3 and tokens.tolist() == [7, 7] and loop.steps == 3

    def boom(z, greedy):
        raise KeyError("from choose")
    with pytest.raises(KeyError, match="from choose"):
        loop.run(4, kv.pos, 10, boom)
    assert loop.steps == 1                                 # the one step it ran is in the cache
    for bad in (37, -2, 1.5, "a"):
        with pytest.raises(ValueError, match=r"choose: expected an id in \[0, 37\) or None"):
            loop.run(4, kv.pos, 5, lambda z, g: bad)


def test_native_decoder_run_advances_the_cache_also_when_choose_raises():
    model = _model("gpt2")
    kv = _prefilled(model, [1, 2], 12)
    dec = native_decoder(model, kv)
    assert dec.run(3, 4).tolist() == _by_steps(model, [1, 2], 3, 4, 12)[0] and kv.pos == 6

    def boom(z, greedy):
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        dec.run(3, 4, boom)
    assert kv.pos == 7


def test_run_rejects_bad_arguments_and_nan_logits():
    model = _model("llama")
    kv = _prefilled(model, [1, 2, 3], 8)
    loop = _loop(model, kv)
    with pytest.raises(ValueError, match=r"token: expected an id in \[0, 37\)"):
        loop.run(37, 3, 2)
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        loop.run(1, 3, 0)
    with pytest.raises(ValueError, match=r"pos: expected pos \+ n within the cache's capacity \(8\)"):
        loop.run(1, 3, 6)
    with pytest.raises(ValueError, match="choose: expected a callable"):
        loop.run(1, 3, 2, choose=3)
    assert loop.steps == 0 and not kv.k[:, :, :, 3:].any()     # nothing run, nothing written
    model.params[NAMES["llama"]["ln_f.w"]][:] = np.nan
    with pytest.raises(ValueError, match="logits: contain NaN"):
        _loop(model, kv).run(1, 3, 2)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_runs_every_step_after_the_first_in_one_call(arch, monkeypatch):
    """Greedy without stream, stop or logits: argmax in C; with a stream, sampling, stop ids or
    return_logits: choose. Both give the tokens of the per-step path (DecodeLoop off)."""
    model = _model(arch, max_seq_len=64)
    prompt = np.arange(1, 6)
    runs, real = [], kernels.DecodeLoop.run

    def run(self, token, pos, n, choose=None):
        runs.append((n, choose is None))
        return real(self, token, pos, n, choose)
    monkeypatch.setattr(kernels.DecodeLoop, "run", run)
    greedy = generate(model, prompt, 20)
    streamed = []
    with_stream = generate(model, prompt, 20, stream=streamed.append)
    sampled = generate(model, prompt, 20, temperature=0.8, top_k=5, seed=3)
    g = greedy.tolist()
    stop = next(t for i, t in enumerate(g) if i >= 1 and t not in g[:i])    # first made by a C step
    stopped = generate(model, prompt, 20, stop=stop)
    assert runs == [(19, True), (19, False), (19, False), (19, False)]
    monkeypatch.setattr(kernels, "DecodeLoop", None)
    np.testing.assert_array_equal(greedy, generate(model, prompt, 20))
    np.testing.assert_array_equal(with_stream, greedy)
    assert streamed == greedy.tolist()
    np.testing.assert_array_equal(sampled, generate(model, prompt, 20, temperature=0.8, top_k=5, seed=3))
    np.testing.assert_array_equal(stopped, generate(model, prompt, 20, stop=stop))
    assert stopped[-1] == stop and len(stopped) == greedy.tolist().index(stop) + 1


def test_c_decode_run_checks_its_ranges_itself():
    """The C entry point does not rely on DecodeLoop's checks: a token, position or count out of range
    (learned positions past n_pos, past the cache) is -2 before any step runs."""
    from minillm.kernels.native import ffi, lib
    model = _model("gpt2")
    kv = _prefilled(model, [1, 2], 8)
    loop = _loop(model, kv)
    plan, done = loop.plan, ffi.new("int64_t*")
    logits, tokens = np.zeros(37, np.float32), np.zeros(8, np.int32)
    pe = loop.pos_embed

    def call(token, pos, n, n_pos):
        return lib.decode_run(ffi.from_buffer("float[]", loop.embed), 37, ffi.from_buffer("float[]", pe), n_pos,
                              *plan.run_args, ffi.NULL, ffi.NULL, *plan.weights.head,
                              token, pos, n, ffi.NULL, ffi.NULL, ffi.from_buffer("float[]", logits),
                              ffi.from_buffer("int32_t[]", tokens), done)
    before = kv.k.copy()
    assert call(37, 2, 1, 40) == -2 and call(-1, 2, 1, 40) == -2
    assert call(1, 2, 7, 40) == -2 and call(1, -1, 1, 40) == -2 and call(1, 2, 0, 40) == -2
    assert call(1, 2, 2, 3) == -2                          # learned positions end at row 3
    assert done[0] == 0 and not logits.any()
    np.testing.assert_array_equal(kv.k, before)
    assert call(1, 2, 2, 4) == 0 and done[0] == 2


@pytest.mark.parametrize("vocab", [37, 70])
@pytest.mark.parametrize("where", ["vector", "tail"])
def test_greedy_in_c_takes_the_first_of_equal_maxima_and_sees_one_nan(vocab, where):
    """The C argmax (vector lanes, then the tail past the last whole vector) chooses as np.argmax: the
    first of equal largest logits; one NaN logit anywhere is an error, not a token."""
    model = _model("llama", vocab=vocab)
    head = model.params[NAMES["llama"]["lm_head"]]
    first, second = (3, 20) if where == "vector" else (vocab - 4, vocab - 2)     # vocab 37, 70: tails of 5, 6
    v = head[first].copy()
    head[:] = -v                                           # every logit -h.v, but rows first, second: +h.v
    head[first] = head[second] = v
    want, want_logits, _ = _by_steps(model, [1, 2, 3], 4, 3, 8)
    assert all((z == z.max()).sum() >= 2 for z in want_logits)            # every step's top is a tie
    kv = _prefilled(model, [1, 2, 3], 8)
    tokens, _ = _loop(model, kv).run(4, kv.pos, 3)
    assert tokens.tolist() == want and set(want) <= {0, first}
    kv, seen = _prefilled(model, [1, 2, 3], 8), []
    _loop(model, kv).run(4, kv.pos, 3, lambda z, greedy: seen.append(greedy) or greedy)
    assert seen == want                                    # the greedy id choose is given
    head[second] = np.nan
    kv = _prefilled(model, [1, 2, 3], 8)
    with pytest.raises(ValueError, match="logits: contain NaN"):
        _loop(model, kv).run(4, kv.pos, 3)
    kv = _prefilled(model, [1, 2, 3], 8)
    assert _loop(model, kv).run(4, kv.pos, 3, lambda z, greedy: seen.append(greedy))[1] == 1
    assert seen[-1] == -1


def test_generate_streaming_greedy_raises_on_nan_from_the_c_argmax(monkeypatch):
    """The first new token comes from the prefill's logits (clean); its embedding is NaN, so the first
    C step's logits are, and generate's stream path gets greedy -1 from the C argmax."""
    model = _model("llama")
    prompt = np.array([1, 2, 3])
    first = int(generate(model, prompt, 1)[0])
    assert first not in prompt
    model.params[NAMES["llama"]["wte"]][first] = np.nan
    seen, real = [], kernels.DecodeLoop.run

    def run(self, token, pos, n, choose=None):
        return real(self, token, pos, n, lambda z, greedy: seen.append(greedy) or choose(z, greedy))
    monkeypatch.setattr(kernels.DecodeLoop, "run", run)
    streamed = []
    with pytest.raises(ValueError, match="logits: contain NaN"):
        generate(model, prompt, 4, stream=streamed.append)
    assert streamed == [first] and seen == [-1]


def test_a_greedy_id_past_the_embedding_rows_is_an_error():
    """A head wider than the embedding table (V > n_vocab): an argmax past its rows cannot be fed back."""
    model = _model("llama")
    head = model.params[NAMES["llama"]["lm_head"]]
    v = head[0].copy()
    head[:] = 0.0
    head[30], head[31] = v, -v                           # the largest logit is at 30 or 31
    kv = _prefilled(model, [1, 2, 3], 8)
    cfg = model.config
    cos, sin = (np.ascontiguousarray(t, dtype=np.float32) for t in model.rope_tables(np.arange(8)))
    loop = kernels.DecodeLoop(step_weights(model, kv.k.shape[2], kv.k.shape[4]), kv.k, kv.v, cfg.n_head,
                              cfg.norm_eps, False, model.params[NAMES["llama"]["wte"]][:20], None, cos, sin)
    with pytest.raises(ValueError, match="argmax is past the embedding's 20 rows"):
        loop.run(4, kv.pos, 3)
    assert loop.steps == 1
