"""Windowed perplexity / KL / top-1 (minillm.inference.perplexity) against torch's cross-entropy and
KL on the same logits, and `minillm eval` on SmolLM2 against the same windowed computation on
llama.cpp's logits (llama-cpp-python, logits_all=True) for the same file and text."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.cli import main as cli_main
from minillm.inference.perplexity import (bootstrap_dppl, model_logits, reference_logprobs, score_windows,
                                          scored_half, text_windows)

from llama_cpp_ref import llama_cpp_or_skip
from smollm2_ref import smollm2_path





def _random_logits(V, seed):
    """A deterministic logits_fn: logits depend on the window's tokens and the seed only."""
    def fn(window):
        rng = np.random.default_rng([seed, *map(int, window)])
        return (3 * rng.standard_normal((len(window), V))).astype(np.float32)        # (n_ctx, V)
    return fn


@settings(max_examples=40, deadline=None)
@given(N=st.integers(0, 300), n_ctx=st.integers(4, 40), bos=st.one_of(st.none(), st.integers(0, 9)))
def test_text_windows_cut_like_llama_perplexity(N, n_ctx, bos):
    ids = np.arange(N) % 1000 + 10
    if N < n_ctx:
        with pytest.raises(ValueError, match="fewer than one window"):
            text_windows(ids, n_ctx, bos)
        return
    w = text_windows(ids, n_ctx, bos)
    assert w.shape == (N // n_ctx, n_ctx) and w.dtype == np.int64
    flat = ids[:w.size].reshape(w.shape)
    np.testing.assert_array_equal(w[:, 1:], flat[:, 1:])
    np.testing.assert_array_equal(w[:, 0], flat[:, 0] if bos is None else bos)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 4), n_ctx=st.integers(4, 24), V=st.integers(2, 50), seed=st.integers(0, 2**31))
def test_scores_equal_torch_cross_entropy_and_kl(n, n_ctx, V, seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    windows = rng.integers(0, V, size=(n, n_ctx))
    f, g = _random_logits(V, seed), _random_logits(V, seed + 1)
    s = score_windows(f, windows, g)
    first = n_ctx // 2
    assert s.nll.shape == (n, n_ctx - 1 - first) and s.tokens == n * (n_ctx - 1 - first)
    for i, w in enumerate(windows):
        q = torch.tensor(f(w)[first:-1], dtype=torch.float64)
        p = torch.tensor(g(w)[first:-1], dtype=torch.float64)
        x = torch.tensor(w[first + 1:])
        np.testing.assert_allclose(s.nll[i], F.cross_entropy(q, x, reduction="none").numpy(), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(s.ref_nll[i], F.cross_entropy(p, x, reduction="none").numpy(), rtol=1e-9,
                                   atol=1e-9)
        kl = F.kl_div(F.log_softmax(q, -1), F.log_softmax(p, -1), log_target=True, reduction="none").sum(-1)
        np.testing.assert_allclose(s.kl[i], kl.numpy(), rtol=1e-7, atol=1e-9)
        np.testing.assert_array_equal(s.top1[i], (p.argmax(-1) == q.argmax(-1)).numpy())
    cached = score_windows(f, windows, ref_logp=reference_logprobs(g, windows))
    np.testing.assert_allclose(cached.kl, s.kl, rtol=1e-4, atol=1e-6)     # float32 log-probs kept
    np.testing.assert_array_equal(cached.nll, s.nll)
    summary = s.summary()
    assert summary["ppl"] == pytest.approx(np.exp(s.nll.mean()))
    assert summary["ppl_ref"] == pytest.approx(np.exp(s.ref_nll.mean()))


def test_model_against_itself_has_zero_kl_and_full_agreement():
    fn = _random_logits(30, 7)
    s = score_windows(fn, np.random.default_rng(0).integers(0, 30, size=(3, 16)), fn)
    np.testing.assert_allclose(s.kl, 0.0, atol=1e-12)
    assert s.top1.all() and s.ppl == s.ppl_ref and s.summary()["dppl_pct"] == 0.0


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="n_ctx: expected an int >= 4"):
        text_windows(np.arange(10), 3)
    with pytest.raises(ValueError, match="logits: expected 8 rows"):
        scored_half(np.zeros((7, 5)), np.zeros(8, dtype=np.int64))
    with pytest.raises(ValueError, match="windows: expected a non-empty"):
        score_windows(_random_logits(5, 0), np.zeros((0, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="nll_b: expected the shape"):
        bootstrap_dppl(np.zeros((3, 4)), np.zeros((3, 5)))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 30), shift=st.floats(-0.2, 0.2), seed=st.integers(0, 2**31))
def test_bootstrap_interval_brackets_the_estimate(n, shift, seed):
    rng = np.random.default_rng(seed)
    b = rng.exponential(2.0, size=(n, 8))
    a = b + shift + 0.05 * rng.standard_normal((n, 8))
    est, lo, hi = bootstrap_dppl(a, b, n_boot=300, seed=seed)
    assert lo <= est + 1e-9 and est <= hi + 1e-9
    assert est == pytest.approx(100 * (np.exp((a - b).mean()) - 1))
    assert bootstrap_dppl(b, b, n_boot=50) == (0.0, 0.0, 0.0)


# ------------------------------------------------------------------ on SmolLM2
CTX, CHUNKS = 128, 2


@pytest.fixture(scope="module")
def eval_text(tmp_path_factory):
    from pydoc_data.topics import topics
    path = tmp_path_factory.mktemp("eval") / "text.txt"
    path.write_text(topics["if"] + topics["while"] + topics["for"] + topics["try"], encoding="utf-8")
    return str(path)


def test_eval_json_keys_and_errors(eval_text, capsys):
    path = smollm2_path()
    assert cli_main(["eval", "--model", path, "--ref", path, "--text", eval_text, "--ctx", "64", "--chunks", "1",
                     "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"ppl", "tokens", "kl", "top1", "ppl_ref", "dppl_pct"}
    assert out["tokens"] == 64 - 1 - 32 and out["ppl"] == out["ppl_ref"] and out["top1"] == 1.0
    assert abs(out["kl"]) < 1e-9
    assert cli_main(["eval", "--model", path, "--text", eval_text, "--ctx", "100000"]) == 2
    assert "minillm eval: error: --ctx: expected 4 .. 8192" in capsys.readouterr().err
    assert cli_main(["eval", "--model", path, "--text", eval_text + ".missing"]) == 2
    assert "minillm eval: error: --text: cannot read" in capsys.readouterr().err


def test_perplexity_equals_llama_cpp_windowed_on_its_logits(eval_text, capsys):
    """Same file, same text, same windows: minillm's perplexity within 1% of the one computed from
    llama.cpp's logits (llama.cpp multiplies Q4_1 weights by activations rounded to Q8_1, minillm by
    float32 activations: the two models' distributions differ by a KL of ~0.004 nats/token)."""
    llama_cpp = llama_cpp_or_skip()
    path = smollm2_path()
    assert cli_main(["eval", "--model", path, "--text", eval_text, "--ctx", str(CTX), "--chunks", str(CHUNKS),
                     "--json", "--no-progress"]) == 0
    ours = json.loads(capsys.readouterr().out)
    llm = llama_cpp.Llama(path, n_ctx=CTX, n_batch=CTX, logits_all=True, n_threads=2, verbose=False)
    text = open(eval_text, encoding="utf-8").read()
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)   # SmolLM2 adds no BOS

    def logits(window):
        llm.reset()
        llm.eval([int(t) for t in window])
        return np.array(llm.scores[:len(window)], dtype=np.float32)              # (n_ctx, V)
    theirs = score_windows(logits, text_windows(ids, CTX)[:CHUNKS])
    assert ours["tokens"] == theirs.tokens == CHUNKS * (CTX - 1 - CTX // 2)
    assert ours["ppl"] == pytest.approx(theirs.ppl, rel=0.01)


def test_model_logits_evaluates_each_window_from_scratch():
    from minillm import ModelConfig, Transformer
    model = Transformer(ModelConfig.preset("llama-tiny"), seed=0)
    w = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(2, 12))
    fn = model_logits(model)
    np.testing.assert_array_equal(fn(w[1]), model.forward(w[1:2])[0])
    np.testing.assert_array_equal(fn(w[0]), model.forward(w[:1])[0])
