"""Sequence packing in the model (forward_train(..., positions, segments)): documents packed into one
row neither see each other nor notice their neighbours -- logits and gradients equal those of the
documents run one at a time -- and the gradient is finite-difference exact in float64."""
import numpy as np
import pytest

from gradcheck import numerical_grad_at
from minillm import ModelConfig, Transformer
from minillm.nn.attention import segment_bounds


def _pack(docs):  # list of (T_i,) -> tokens (1, T), positions (T,), segments (T,)
    tokens = np.concatenate(docs)[None, :]
    positions = np.concatenate([np.arange(len(d)) for d in docs])
    segments = np.concatenate([np.full(len(d), i) for i, d in enumerate(docs)])
    return tokens, positions, segments


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_packed_row_equals_documents_run_separately(arch):
    m = Transformer(ModelConfig.preset(f"{arch}-tiny"), seed=3)
    # float64, so only the block-diagonal mask can make a difference, not summation order
    m.params = {k: v.astype(np.float64) for k, v in m.params.items()}
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 256, n) for n in (5, 1, 9, 3)]
    tokens, positions, segments = _pack(docs)
    logits, _, caches = m.forward_train(tokens, positions=positions, segments=segments)
    dlogits = rng.standard_normal(logits.shape)
    grads = m.backward(caches, dlogits)
    total = {k: np.zeros_like(v) for k, v in m.params.items()}
    start = 0
    for d in docs:
        lg, _, c = m.forward_train(d[None, :])
        np.testing.assert_allclose(logits[0, start:start + len(d)], lg[0], rtol=1e-12, atol=1e-14)
        for k, g in m.backward(c, dlogits[:, start:start + len(d)]).items():
            total[k] += g
        start += len(d)
    for k in total:
        np.testing.assert_allclose(grads[k], total[k], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_one_segment_is_bit_identical_to_plain_causal_attention(arch):
    m = Transformer(ModelConfig.preset(f"{arch}-tiny"), seed=1)
    x = np.random.default_rng(1).integers(0, 256, (2, 12))
    dl = np.random.default_rng(2).standard_normal((2, 12, 256)).astype(np.float32)
    l1, _, c1 = m.forward_train(x)
    l2, _, c2 = m.forward_train(x, segments=np.zeros(12, dtype=np.int64))
    assert np.array_equal(l1, l2)
    g1, g2 = m.backward(c1, dl), m.backward(c2, dl)
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)
    # and activation checkpointing recomputes the segmented attention identically
    seg = np.repeat([0, 1, 2], 4)
    _, _, c3 = m.forward_train(x, segments=seg)
    _, _, c4 = m.forward_train(x, segments=seg, checkpoint=True)
    g3, g4 = m.backward(c3, dl), m.backward(c4, dl)
    assert all(np.array_equal(g3[k], g4[k]) for k in g3)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_segmented_gradients_match_finite_differences(arch):
    kw = dict(arch=arch, vocab_size=11, n_layer=1, n_head=2, d_model=8, max_seq_len=16)
    if arch == "llama":
        kw.update(n_kv_head=1, ffn_dim=12)
    m = Transformer(ModelConfig(**kw), seed=4)
    rng = np.random.default_rng(4)
    m.params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float64) for k, v in m.params.items()}
    tokens, positions, segments = _pack([rng.integers(0, 11, n) for n in (3, 4, 2)])
    w = rng.standard_normal((1, tokens.shape[1], 11))
    _, _, caches = m.forward_train(tokens, positions=positions, segments=segments)
    grads = m.backward(caches, w)
    f = lambda: np.sum(m.forward_train(tokens, positions=positions, segments=segments)[0] * w)  # noqa: E731
    for name, p in m.params.items():
        if p.ndim != 2:
            continue
        idx = (1, 2)
        num = numerical_grad_at(f, p, idx)
        assert abs(grads[name][idx] - num) <= 1e-6 * max(abs(num), 1e-3), (name, grads[name][idx], num)


def test_segment_bounds():
    assert segment_bounds(np.array([0, 0, 1, 1, 1, 0]), 6) == [(0, 2), (2, 5), (5, 6)]
    assert segment_bounds(np.zeros(3, dtype=np.int32), 3) == [(0, 3)]
    with pytest.raises(ValueError, match="segments"):
        segment_bounds(np.zeros(4, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="segments"):
        segment_bounds(np.zeros(3), 3)
