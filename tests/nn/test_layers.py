"""Every nn layer's backward against central finite differences in float64 (hypothesis over shapes),
and against torch autograd where torch is installed."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import numerical_grad
from minillm import nn

SEED = st.integers(0, 2**32 - 1)


def check(analytic, numeric, floor=1e-6):
    """Relative error < 1e-6. `floor` bounds the denominator below: where the true gradient is
    ~0 (e.g. LayerNorm over 2 channels is nearly constant), only the absolute error is meaningful."""
    err = np.max(np.abs(analytic - numeric)) / max(np.max(np.abs(numeric)), floor)
    assert err < 1e-6, err


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 5), Cin=st.integers(1, 6), Cout=st.integers(1, 6), bias=st.booleans(), seed=SEED)
def test_linear(N, Cin, Cout, bias, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((N, Cin)), rng.standard_normal((N, Cout))
    w, b = rng.standard_normal((Cout, Cin)), (rng.standard_normal(Cout) if bias else None)
    dx, dw, db = nn.linear_backward(dy, nn.linear_forward(x, w, b)[1])
    check(dx, numerical_grad(lambda x_: np.sum(nn.linear_forward(x_, w, b)[0] * dy), x))
    check(dw, numerical_grad(lambda w_: np.sum(nn.linear_forward(x, w_, b)[0] * dy), w))
    if bias:
        check(db, numerical_grad(lambda b_: np.sum(nn.linear_forward(x, w, b_)[0] * dy), b))
    else:
        assert db is None


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 5), V=st.integers(1, 7), C=st.integers(1, 4), seed=SEED)
def test_embedding(B, T, V, C, seed):
    rng = np.random.default_rng(seed)
    ids, w = rng.integers(0, V, (B, T)), rng.standard_normal((V, C))
    dy = rng.standard_normal((B, T, C))
    dw = nn.embedding_backward(dy, nn.embedding_forward(ids, w)[1])
    check(dw, numerical_grad(lambda w_: np.sum(nn.embedding_forward(ids, w_)[0] * dy), w))


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 4), C=st.integers(2, 9), seed=SEED, scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_norms(N, C, seed, scale):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((N, C)) * scale, rng.standard_normal((N, C))
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    dx, dw, db = nn.layernorm_backward(dy, nn.layernorm_forward(x, w, b)[1])
    f = lambda x_, w_, b_: np.sum(nn.layernorm_forward(x_, w_, b_)[0] * dy)
    # the floor: central differences of f (|f| ~ N*C) with step h = 1e-6 * scale carry a roundoff of
    # ~1e-16 * |f| / h, up to ~1e-9 / scale, and that estimate is only an order of magnitude: the
    # absolute error allowed, 1e-6 * floor = 1e-8 / scale, keeps a factor 10 above it (a floor of
    # 1e-3 / scale would allow 1e-9 / scale, the size of the roundoff itself)
    check(dx, numerical_grad(lambda x_: f(x_, w, b), x, eps=1e-6 * scale), floor=1e-2 / scale)
    check(dw, numerical_grad(lambda w_: f(x, w_, b), w))
    check(db, numerical_grad(lambda b_: f(x, w, b_), b))
    dx, dw = nn.rmsnorm_backward(dy, nn.rmsnorm_forward(x, w)[1])
    g = lambda x_, w_: np.sum(nn.rmsnorm_forward(x_, w_)[0] * dy)
    check(dx, numerical_grad(lambda x_: g(x_, w), x, eps=1e-6 * scale), floor=1e-2 / scale)
    check(dw, numerical_grad(lambda w_: g(x, w_), w))


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=SEED)
def test_activations(shape, seed):
    rng = np.random.default_rng(seed)
    x, y, dy = (rng.standard_normal(shape) * 3 for _ in range(3))
    dx = nn.gelu_backward(dy, nn.gelu_forward(x)[1])
    # floor 1e-3: inputs are O(1), so where the derivative vanishes (large negative x) only the
    # absolute error is meaningful
    check(dx, numerical_grad(lambda x_: np.sum(nn.gelu_forward(x_)[0] * dy), x), floor=1e-3)
    da, db = nn.swiglu_backward(dy, nn.swiglu_forward(x, y)[1])
    check(da, numerical_grad(lambda a: np.sum(nn.swiglu_forward(a, y)[0] * dy), x), floor=1e-3)
    check(db, numerical_grad(lambda b: np.sum(nn.swiglu_forward(x, b)[0] * dy), y), floor=1e-3)


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), G=st.integers(1, 3), T=st.integers(1, 5),
       extra=st.integers(0, 3), D=st.integers(1, 5), seed=SEED)
def test_attention_gqa_with_offset(B, Hkv, G, T, extra, D, seed):
    rng = np.random.default_rng(seed)
    S, H = T + extra, Hkv * G
    q, dout = rng.standard_normal((B, H, T, D)), rng.standard_normal((B, H, T, D))
    k, v = rng.standard_normal((B, Hkv, S, D)), rng.standard_normal((B, Hkv, S, D))
    dq, dk, dv = nn.attention_backward(dout, nn.attention_forward(q, k, v)[1])
    f = lambda q_, k_, v_: np.sum(nn.attention_forward(q_, k_, v_)[0] * dout)
    check(dq, numerical_grad(lambda a: f(a, k, v), q))
    check(dk, numerical_grad(lambda a: f(q, a, v), k))
    check(dv, numerical_grad(lambda a: f(q, k, a), v))


@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 5), half=st.integers(1, 4),
       start=st.integers(0, 1000), seed=SEED)
def test_rope(B, H, T, half, start, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((B, H, T, 2 * half)), rng.standard_normal((B, H, T, 2 * half))
    inv_freq, _ = nn.rope_parameters(2 * half)
    cos, sin = nn.rope_tables(np.arange(start, start + T), inv_freq, dtype=np.float64)
    dx = nn.rope_backward(dy, nn.rope_forward(x, cos, sin)[1])
    check(dx, numerical_grad(lambda a: np.sum(nn.rope_forward(a, cos, sin)[0] * dy), x))


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 6), V=st.integers(1, 9), z=st.sampled_from([0.0, 1e-2]), seed=SEED,
       scale=st.sampled_from([1.0, 30.0]))
def test_cross_entropy(N, V, z, seed, scale):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, V)) * scale
    targets = rng.integers(-1, V, N)  # -1 rows are ignored
    loss, cache = nn.cross_entropy_forward(logits, targets, z)
    dlogits = nn.cross_entropy_backward(1.0, cache)
    num = numerical_grad(lambda l: nn.cross_entropy_forward(l, targets, z)[0], logits)
    check(dlogits, num, floor=1e-3)  # loss is O(scale): rounding/eps ~ 1e-9 absolute
    assert np.all(dlogits[targets < 0] == 0)


def test_cross_entropy_extreme_logits_are_finite():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    loss, cache = nn.cross_entropy_forward(logits, np.array([0, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(cache))


def test_cross_entropy_bad_targets():
    with pytest.raises(ValueError, match="targets"):
        nn.cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0, 3]))
    with pytest.raises(ValueError, match="targets"):
        nn.cross_entropy_forward(np.zeros((2, 3), np.float32), np.array([0]))


def test_layers_match_torch_autograd():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    B, H, Hkv, T, D = 2, 4, 2, 7, 8
    q, k, v, dout = (rng.standard_normal(s) for s in [(B, H, T, D), (B, Hkv, T, D), (B, Hkv, T, D), (B, H, T, D)])
    dq, dk, dv = nn.attention_backward(dout, nn.attention_forward(q, k, v)[1])
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = F.scaled_dot_product_attention(tq, tk.repeat_interleave(H // Hkv, 1), tv.repeat_interleave(H // Hkv, 1),
                                         is_causal=True)
    out.backward(torch.tensor(dout))
    for a, t in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-9, atol=1e-10)
    x, w, b, dy = rng.standard_normal((5, 6)), rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((5, 6))
    dx, dw, db = nn.layernorm_backward(dy, nn.layernorm_forward(x, w, b)[1])
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    F.layer_norm(tx, (6,), tw, tb, 1e-5).backward(torch.tensor(dy))
    for a, t in ((dx, tx), (dw, tw), (db, tb)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-9, atol=1e-10)
    dx = nn.gelu_backward(dy, nn.gelu_forward(x)[1])
    tx = torch.tensor(x, requires_grad=True)
    F.gelu(tx, approximate="tanh").backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(N=st.integers(1, 40), Cin=st.integers(1, 24), couts=st.lists(st.integers(1, 20), min_size=1, max_size=3),
       bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_backward_group_equals_one_backward_per_layer(N, Cin, couts, bias, seed):
    # q, k, v (or any layers reading the same x): one GEMM for all weight gradients, one for dx
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, Cin)).astype(np.float32)
    ws = [rng.standard_normal((c, Cin)).astype(np.float32) for c in couts]
    bs = [rng.standard_normal(c).astype(np.float32) if bias else None for c in couts]
    caches = [c for _, c in nn.linear_forward_group(x, ws, bs)]
    dy = rng.standard_normal((N, sum(couts))).astype(np.float32)
    dx, dws, dbs = nn.linear_backward_group(dy, caches)
    want_dx = 0
    for i, (lo, c) in enumerate(zip(np.cumsum([0] + couts), caches)):
        wdx, wdw, wdb = nn.linear_backward(np.ascontiguousarray(dy[:, lo:lo + couts[i]]), c)
        want_dx = want_dx + wdx
        np.testing.assert_allclose(dws[i], wdw, rtol=1e-5, atol=1e-5 * N)
        assert dws[i].flags.c_contiguous and dws[i].shape == ws[i].shape
        if bias:
            np.testing.assert_allclose(dbs[i], wdb, rtol=1e-5, atol=1e-5 * N)
        else:
            assert dbs[i] is None
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5 * sum(couts))


def test_linear_backward_group_rejects_mismatched_input():
    x = np.ones((3, 4), np.float32)
    caches = [c for _, c in nn.linear_forward_group(x, [np.ones((2, 4), np.float32)] * 2, [None, None])]
    with pytest.raises(ValueError, match="dy: expected 4 columns, got 5"):
        nn.linear_backward_group(np.ones((3, 5), np.float32), caches)
    other = nn.linear_forward(x.copy(), np.ones((2, 4), np.float32))[1]
    with pytest.raises(ValueError, match="caches: the layers of a group must share their input x"):
        nn.linear_backward_group(np.ones((3, 4), np.float32), [caches[0], other])


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 200), Cin=st.integers(1, 40), couts=st.lists(st.integers(1, 24), min_size=1, max_size=3),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_forward_group_stacked_equals_one_gemm_per_weight(N, Cin, couts, bias, seed):
    # stacked=True (one GEMM against the stacked weights from STACK_MIN_ROWS rows on, outputs as
    # column views) gives each layer's linear_forward, and caches the backward accepts
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, Cin)).astype(np.float32)
    ws = [rng.standard_normal((c, Cin)).astype(np.float32) for c in couts]
    bs = [rng.standard_normal(c).astype(np.float32) if bias else None for c in couts]
    got = nn.linear_forward_group(x, ws, bs, stacked=True)
    for (y, cache), w, b in zip(got, ws, bs):
        want, _ = nn.linear_forward(x, w, b)
        assert y.shape == want.shape
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * Cin)
        assert cache[0] is x and cache[1] is w and cache[2] == bias
    dy = rng.standard_normal((N, sum(couts))).astype(np.float32)
    dx, dws, _ = nn.linear_backward_group(dy, [c for _, c in got])
    assert dx.shape == x.shape and [d.shape for d in dws] == [w.shape for w in ws]
