"""Native C kernels (minillm/kernels/native.py) against the NumPy references (reference.py).

Inputs are float32; every tolerance says where the difference comes from (summation order,
fast_expf's ~1.5 ulp, fused multiply-adds). Shapes come from hypothesis and include 1, odd sizes,
and a few fixed large cases; bad inputs must raise a clear TypeError/ValueError.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.kernels import native, reference

pytestmark = pytest.mark.skipif(native.lib is None, reason="native kernels not built")

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def run_both(name, outs, ins):
    """Calls native.<name> and reference.<name> on fresh zeroed copies of the output arrays."""
    got = [np.zeros_like(o) for o in outs]
    want = [np.zeros_like(o) for o in outs]
    getattr(native, name)(*got, *ins)
    getattr(reference, name)(*want, *ins)
    return got, want


# ----------------------------------------------------------------------------------- matmul
def check_matmul(M, K, N, seed):
    rng = np.random.default_rng(seed)
    x, w = randn(rng, M, K), randn(rng, N, K)
    (got,), (want,) = run_both("matmul", [np.empty((M, N), np.float32)], [x, w])
    # each output sums K products of O(1) terms in a different order: error grows ~ K * eps
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * K)


@SETTINGS
@given(M=st.integers(1, 80), K=st.integers(1, 300), N=st.integers(1, 80), seed=seeds)
def test_matmul_matches_reference(M, K, N, seed):
    check_matmul(M, K, N, seed)


@pytest.mark.parametrize("M,K,N", [(1, 768, 3000), (3, 1537, 511), (64, 384, 129),
                                   (65, 300, 33), (257, 1031, 129), (300, 384, 1152)])
def test_matmul_large_and_edge_shapes(M, K, N):
    # past the GEMV/blocked switch, several KC blocks of K, ragged MR/NR edges
    check_matmul(M, K, N, seed=M * 7 + N)


@SETTINGS
@given(M=st.integers(1, 6), K=st.integers(0, 130), Ns=st.lists(st.integers(0, 41), min_size=1, max_size=4),
       seed=seeds)
def test_matmul_group_matches_reference(M, K, Ns, seed):
    # one parallel region over the row blocks of several weights: every block must land in its
    # own output, including empty weights and ragged last blocks
    rng = np.random.default_rng(seed)
    x, ws = randn(rng, M, K), [randn(rng, N, K) for N in Ns]
    got = [np.full((M, N), np.nan, np.float32) for N in Ns]
    want = [np.empty((M, N), np.float32) for N in Ns]
    native.matmul_group(got, x, ws)
    reference.matmul_group(want, x, ws)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * max(K, 1))


def test_matmul_group_rejects_mismatched_lists_and_shapes():
    x = np.zeros((1, 8), np.float32)
    with pytest.raises(ValueError, match="same length"):
        native.matmul_group([np.zeros((1, 4), np.float32)], x, [])
    with pytest.raises(ValueError, match=r"ws\[1\].*\(\?, 8\)"):
        native.matmul_group([np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32)], x,
                            [np.zeros((4, 8), np.float32), np.zeros((4, 7), np.float32)])
    with pytest.raises(ValueError, match=r"outs\[0\].*\(1, 4\)"):
        native.matmul_group([np.zeros((2, 4), np.float32)], x, [np.zeros((4, 8), np.float32)])


def test_matmul_empty_k_gives_zeros():
    out = np.full((3, 4), 7.0, np.float32)
    native.matmul(out, np.zeros((3, 0), np.float32), np.zeros((4, 0), np.float32))
    assert not out.any()


# ----------------------------------------------------------------------------------- attention
def attention_inputs(rng, B, H, Hkv, T, S, D):
    return randn(rng, B, H, T, D), randn(rng, B, Hkv, S, D), randn(rng, B, Hkv, S, D)


attn_shapes = dict(B=st.integers(1, 2), Hkv=st.integers(1, 3), G=st.integers(1, 3),
                   T=st.integers(1, 70), extra=st.integers(0, 70),
                   D=st.sampled_from([1, 3, 8, 16, 33, 64]), seed=seeds)


def check_attention(B, H, Hkv, T, S, D, seed):
    rng = np.random.default_rng(seed)
    q, k, v = attention_inputs(rng, B, H, Hkv, T, S, D)
    scale = 1.0 / np.sqrt(D)
    (out, lse), (out_r, lse_r) = run_both(
        "attention_forward", [np.empty((B, H, T, D), np.float32), np.empty((B, H, T), np.float32)],
        [q, k, v, scale])
    # out is a convex combination of O(1) values; online-softmax rescaling and fast_expf add a
    # few ulp per key: 1e-6 per key is a safe bound
    np.testing.assert_allclose(out, out_r, rtol=1e-4, atol=1e-5 + 1e-6 * S)
    # lse ~ log S + max score: relative float32 rounding of the running max and the sum
    np.testing.assert_allclose(lse, lse_r, rtol=1e-5, atol=1e-5)

    dout = randn(rng, B, H, T, D)
    grads = [np.empty_like(q), np.empty_like(k), np.empty_like(v)]
    got, want = run_both("attention_backward", grads, [dout, q, k, v, out_r, lse_r, scale])
    # dq sums up to S terms; dk, dv sum over G heads x T rows; each term O(1)
    for name, g, r, n in zip(("dq", "dk", "dv"), got, want, (S, H // Hkv * T, H // Hkv * T)):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5 + 2e-6 * n, err_msg=name)


@SETTINGS
@given(**attn_shapes)
def test_attention_matches_reference(B, Hkv, G, T, extra, D, seed):
    check_attention(B, Hkv * G, Hkv, T, T + extra, D, seed)


@pytest.mark.parametrize("B,H,Hkv,T,S,D", [(1, 4, 2, 300, 300, 64), (2, 6, 6, 7, 300, 64),
                                            (1, 3, 1, 129, 200, 80)])
def test_attention_large_shapes(B, H, Hkv, T, S, D):
    # several BR query tiles and BC key blocks, prefill onto a long cache, GQA 3:1
    check_attention(B, H, Hkv, T, S, D, seed=T + S)


@SETTINGS
@given(B=st.integers(1, 3), Hkv=st.integers(1, 3), G=st.integers(1, 3), Smax=st.integers(1, 90),
       D=st.sampled_from([1, 5, 16, 64]), seed=seeds)
def test_attention_decode_matches_reference(B, Hkv, G, Smax, D, seed):
    rng = np.random.default_rng(seed)
    H = Hkv * G
    q, kc, vc = randn(rng, B, H, D), randn(rng, B, Hkv, Smax, D), randn(rng, B, Hkv, Smax, D)
    lengths = rng.integers(1, Smax + 1, size=B)                  # int64 on purpose
    (out,), (want,) = run_both("attention_decode", [np.empty((B, H, D), np.float32)],
                               [q, kc, vc, lengths, 0.3])
    # softmax-weighted average of <= Smax O(1) values, as for the forward kernel
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 + 1e-6 * Smax)


def test_attention_decode_equals_last_row_of_forward():
    # decode with lengths = S is the last query row of a causal forward over S keys
    rng = np.random.default_rng(0)
    B, H, Hkv, S, D = 2, 4, 2, 37, 16
    q, k, v = attention_inputs(rng, B, H, Hkv, 1, S, D)
    out, lse = np.empty((B, H, 1, D), np.float32), np.empty((B, H, 1), np.float32)
    native.attention_forward(out, lse, q, k, v, 0.25)
    dec = np.empty((B, H, D), np.float32)
    native.attention_decode(dec, np.ascontiguousarray(q[:, :, 0]), k, v, np.full(B, S), 0.25)
    np.testing.assert_allclose(dec, out[:, :, 0], rtol=1e-5, atol=1e-6)  # same sums, other order


# ----------------------------------------------------------------------------------- norms
norm_shapes = dict(N=st.integers(1, 40), C=st.sampled_from([1, 2, 7, 64, 129, 768]), seed=seeds)


@SETTINGS
@given(**norm_shapes)
def test_layernorm_matches_reference(N, C, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, N, C) * 3 + 1
    w, b, dy = randn(rng, C), randn(rng, C), randn(rng, N, C)
    outs = [np.empty((N, C), np.float32), np.empty(N, np.float32), np.empty(N, np.float32)]
    (y, mean, rstd), (y_r, mean_r, rstd_r) = run_both("layernorm_forward", outs, [x, w, b, 1e-5])
    # row reductions over C in another order: relative ~ C * eps on mean/var, O(1) outputs
    tol = dict(rtol=1e-5, atol=1e-6 * np.sqrt(C) + 1e-6)
    for g, r in ((y, y_r), (mean, mean_r), (rstd, rstd_r)):
        np.testing.assert_allclose(g, r, **tol)
    grads = [np.empty((N, C), np.float32), np.empty(C, np.float32), np.empty(C, np.float32)]
    (dx, dw, db), (dx_r, dw_r, db_r) = run_both("layernorm_backward", grads,
                                                [dy, x, w, mean_r, rstd_r])
    # two row sums; the terms are O(rstd) (and a fused multiply-add keeps dy*w's rounding error,
    # which rstd = 1/sqrt(eps) amplifies when a row is constant, e.g. C = 1)
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=1e-5 * np.sqrt(C) * rstd_r.max())
    # dw, db sum N rows (per-thread partial sums, then added)
    np.testing.assert_allclose(dw, dw_r, rtol=1e-5, atol=1e-6 * N + 1e-6)
    np.testing.assert_allclose(db, db_r, rtol=1e-5, atol=1e-6 * N + 1e-6)


@SETTINGS
@given(**norm_shapes)
def test_rmsnorm_matches_reference(N, C, seed):
    rng = np.random.default_rng(seed)
    x, w, dy = randn(rng, N, C), randn(rng, C), randn(rng, N, C)
    outs = [np.empty((N, C), np.float32), np.empty(N, np.float32)]
    (y, rstd), (y_r, rstd_r) = run_both("rmsnorm_forward", outs, [x, w, 1e-6])
    np.testing.assert_allclose(y, y_r, rtol=1e-5, atol=1e-6)   # one row sum of squares
    np.testing.assert_allclose(rstd, rstd_r, rtol=1e-5)
    grads = [np.empty((N, C), np.float32), np.empty(C, np.float32)]
    (dx, dw), (dx_r, dw_r) = run_both("rmsnorm_backward", grads, [dy, x, w, rstd_r])
    # one row sum; terms are O(rstd), large when a row is near zero
    np.testing.assert_allclose(dx, dx_r, rtol=1e-4, atol=1e-5 * np.sqrt(C) * rstd_r.max())
    np.testing.assert_allclose(dw, dw_r, rtol=1e-5, atol=1e-6 * N + 1e-6)    # sum over N rows


def test_norms_large_rows_use_threads():
    # 2048 x 384 passes the OpenMP threshold: per-thread dw partials must add up
    rng = np.random.default_rng(1)
    N, C = 2048, 384
    x, w, b, dy = randn(rng, N, C), randn(rng, C), randn(rng, C), randn(rng, N, C)
    mean, rstd = np.empty(N, np.float32), np.empty(N, np.float32)
    reference.layernorm_forward(np.empty((N, C), np.float32), mean, rstd, x, w, b, 1e-5)
    grads = [np.empty((N, C), np.float32), np.empty(C, np.float32), np.empty(C, np.float32)]
    (dx, dw, db), (dx_r, dw_r, db_r) = run_both("layernorm_backward", grads, [dy, x, w, mean, rstd])
    np.testing.assert_allclose(dw, dw_r, rtol=1e-4, atol=1e-6 * N)   # sums of 2048 O(1) terms
    np.testing.assert_allclose(db, db_r, rtol=1e-4, atol=1e-6 * N)


# ----------------------------------------------------------------------------------- activations
elementwise_shapes = st.sampled_from([(1,), (7,), (3, 5), (2, 3, 129), (70000,)])


def run_vs_float64(name, outs, ins):
    """native.<name> in float32 against reference.<name> evaluated in float64 on the same inputs:
    the elementwise references lose accuracy to cancellation in float32 (1 + tanh(u) for x << 0),
    so the float64 result is the fair yardstick."""
    got = [np.zeros_like(o) for o in outs]
    want = [np.zeros(o.shape, np.float64) for o in outs]
    getattr(native, name)(*got, *ins)
    getattr(reference, name)(*want, *[a.astype(np.float64) for a in ins])
    return got, want


@SETTINGS
@given(shape=elementwise_shapes, seed=seeds)
def test_gelu_matches_reference(shape, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, *shape) * 4                       # reaches the saturated tails of tanh
    dy = randn(rng, *shape)
    (y,), (y_r,) = run_vs_float64("gelu_forward", [np.empty(shape, np.float32)], [x])
    # a few float32 roundings plus fast_expf's ~1.5 ulp, relative; atol for values near 0
    np.testing.assert_allclose(y, y_r, rtol=1e-5, atol=1e-7)
    (dx,), (dx_r,) = run_vs_float64("gelu_backward", [np.empty(shape, np.float32)], [dy, x])
    # gelu' crosses 0 near x = -0.75, where its two O(1) terms cancel: absolute error ~eps |dy|
    np.testing.assert_allclose(dx, dx_r, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(shape=elementwise_shapes, seed=seeds)
def test_swiglu_matches_reference(shape, seed):
    rng = np.random.default_rng(seed)
    a, b, dy = randn(rng, *shape) * 6, randn(rng, *shape), randn(rng, *shape)
    (y,), (y_r,) = run_vs_float64("swiglu_forward", [np.empty(shape, np.float32)], [a, b])
    # sigmoid from fast_expf: a few ulp relative; atol for products that round to ~0
    np.testing.assert_allclose(y, y_r, rtol=1e-5, atol=1e-7)
    grads = [np.empty(shape, np.float32), np.empty(shape, np.float32)]
    (da, db), (da_r, db_r) = run_vs_float64("swiglu_backward", grads, [dy, a, b])
    # 1 + a (1 - s) crosses 0 near a = -1.28 (cancellation, as for gelu'): ~eps |dy b| absolute
    np.testing.assert_allclose(da, da_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, db_r, rtol=1e-5, atol=1e-7)


def test_swiglu_extreme_gates_do_not_overflow():
    a = np.array([-1e4, -100.0, -0.0, 0.0, 100.0, 1e4], np.float32)
    b = np.ones_like(a)
    y = np.empty_like(a)
    native.swiglu_forward(y, a, b)
    np.testing.assert_allclose(y, [0, 0, 0, 0, 100, 1e4], atol=1e-30)  # silu(-big) = -0 exactly-ish


# ----------------------------------------------------------------------------------- rope
@SETTINGS
@given(B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 40),
       D=st.sampled_from([2, 6, 64, 130]), seed=seeds)
def test_rope_matches_reference(B, H, T, D, seed):
    rng = np.random.default_rng(seed)
    x = randn(rng, B, H, T, D)
    theta = rng.uniform(0, 100, (T, D // 2))
    cos, sin = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
    (out,), (want,) = run_both("rope", [np.empty_like(x)], [x, cos, sin])
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)   # two products, maybe fused
    inplace = x.copy()
    native.rope(inplace, inplace, cos, sin)                         # out may alias x
    np.testing.assert_allclose(inplace, want, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------- loss
@SETTINGS
@given(N=st.integers(1, 20), V=st.sampled_from([1, 2, 17, 1000, 8192]),
       z_loss=st.sampled_from([0.0, 1e-4, 0.1]), grad_scale=st.sampled_from([1.0, 1 / 37]),
       seed=seeds)
def test_cross_entropy_matches_reference(N, V, z_loss, grad_scale, seed):
    rng = np.random.default_rng(seed)
    logits = randn(rng, N, V) * 5
    targets = rng.integers(-1, V, size=N)                          # -1 = ignored row
    outs = [np.empty(N, np.float32), np.empty((N, V), np.float32)]
    (loss, dl), (loss_r, dl_r) = run_both("cross_entropy", outs,
                                          [logits, targets, z_loss, grad_scale])
    # lse sums V exponentials (relative ~ V * eps); the loss is lse - logit, O(10)
    np.testing.assert_allclose(loss, loss_r, rtol=1e-5, atol=1e-5)
    # probabilities, ~2 ulp exp; the target's p - 1 with p near 1 is exact only to ulp(1) = 1.2e-7
    np.testing.assert_allclose(dl, dl_r, rtol=1e-4, atol=2.5e-7)
    assert not dl[targets < 0].any() and not loss[targets < 0].any()


@settings(max_examples=20, deadline=None)
@given(N=st.integers(1, 20), V=st.sampled_from([1, 2, 17, 1000]), z_loss=st.sampled_from([0.0, 0.1]),
       seed=seeds)
def test_cross_entropy_in_place_equals_separate_output(N, V, z_loss, seed):
    # dlogits may be logits itself (nn.loss.cross_entropy_forward(inplace=True)): the same numbers
    # as into a separate array, in the C kernel and the reference
    rng = np.random.default_rng(seed)
    logits = randn(rng, N, V) * 5
    targets = rng.integers(-1, V, size=N)
    for impl in (native.cross_entropy, reference.cross_entropy):
        loss, dl = np.empty(N, np.float32), np.empty((N, V), np.float32)
        impl(loss, dl, logits, targets, z_loss, 0.5)
        loss2, buf = np.empty(N, np.float32), logits.copy()
        impl(loss2, buf, buf, targets, z_loss, 0.5)
        np.testing.assert_array_equal(loss2, loss)
        np.testing.assert_array_equal(buf, dl)


def test_cross_entropy_masked_logits():
    # -inf logits (masked vocabulary entries) get probability 0, not NaN
    logits = np.array([[0.0, -np.inf, 1.0, -np.inf]], np.float32)
    loss, dl = np.empty(1, np.float32), np.empty((1, 4), np.float32)
    native.cross_entropy(loss, dl, logits, np.array([2]), 0.0, 1.0)
    np.testing.assert_allclose(loss, [np.log1p(np.e ** -1)], rtol=1e-6)
    p0 = 1 / (1 + np.e)                                            # softmax over [0, 1]
    np.testing.assert_allclose(dl, [[p0, 0, (1 - p0) - 1, 0]], atol=1e-7)


# ----------------------------------------------------------------------------------- bad input
def f32(*shape):
    return np.zeros(shape, np.float32)


BAD_CALLS = [
    # (call, exception, words the message must contain)
    (lambda: native.matmul(f32(2, 3), f32(2, 4), f32(3, 5)), ValueError, ["w", "(?, 4)", "(3, 5)"]),
    (lambda: native.matmul(f32(2, 4), f32(2, 5), f32(3, 5)), ValueError, ["out", "(2, 3)"]),
    (lambda: native.matmul(f32(2, 3), np.zeros((2, 5)), f32(3, 5)), TypeError, ["x", "float64"]),
    (lambda: native.matmul(f32(2, 3), f32(5, 2).T, f32(3, 5)), ValueError, ["x", "contiguous"]),
    (lambda: native.matmul(f32(2, 3), [[1.0]], f32(3, 5)), TypeError, ["x", "ndarray"]),
    (lambda: native.attention_forward(f32(1, 3, 4, 8), f32(1, 3, 4), f32(1, 3, 4, 8),
                                      f32(1, 2, 4, 8), f32(1, 2, 4, 8), 1.0),
     ValueError, ["H % Hkv", "H=3", "Hkv=2"]),
    (lambda: native.attention_forward(f32(1, 2, 5, 8), f32(1, 2, 5), f32(1, 2, 5, 8),
                                      f32(1, 2, 4, 8), f32(1, 2, 4, 8), 1.0),
     ValueError, ["S >= T", "S=4", "T=5"]),
    (lambda: native.attention_forward(f32(1, 2, 4, 8), f32(1, 2, 4), f32(1, 2, 4, 8),
                                      f32(1, 2, 4, 8), f32(1, 2, 5, 8), 1.0), ValueError, ["v"]),
    (lambda: native.attention_forward(f32(1, 2, 4, 8), f32(1, 2, 3), f32(1, 2, 4, 8),
                                      f32(1, 2, 4, 8), f32(1, 2, 4, 8), 1.0), ValueError, ["lse"]),
    (lambda: native.attention_backward(f32(1, 2, 4, 8), f32(1, 1, 4, 8), f32(1, 2, 4, 8),
                                       f32(1, 2, 4, 8), f32(1, 2, 4, 8), f32(1, 2, 4, 8),
                                       f32(1, 2, 4, 8), f32(1, 2, 4, 8), f32(1, 2, 4), 1.0),
     ValueError, ["dk", "(1, 2, 4, 8)"]),
    (lambda: native.attention_decode(f32(2, 2, 8), f32(2, 2, 8), f32(2, 1, 6, 8), f32(2, 1, 6, 8),
                                     np.array([3, 7]), 1.0),
     ValueError, ["lengths", "[1, 6]", "7"]),
    (lambda: native.attention_decode(f32(2, 2, 8), f32(2, 2, 8), f32(2, 1, 6, 8), f32(2, 1, 6, 8),
                                     np.array([0, 2]), 1.0), ValueError, ["lengths", "min 0"]),
    (lambda: native.attention_decode(f32(2, 2, 8), f32(2, 2, 8), f32(2, 1, 6, 8), f32(2, 1, 6, 8),
                                     np.array([1.0, 2.0]), 1.0), TypeError, ["lengths", "integer"]),
    (lambda: native.attention_decode(f32(2, 2, 8), f32(2, 2, 8), f32(2, 1, 6, 8), f32(2, 1, 6, 8),
                                     np.array([1]), 1.0), ValueError, ["lengths", "(2,)"]),
    (lambda: native.layernorm_forward(f32(2, 3), f32(2), f32(2), f32(2, 3), f32(4), f32(3), 1e-5),
     ValueError, ["w", "(3,)", "(4,)"]),
    (lambda: native.rmsnorm_backward(f32(2, 3), f32(3), f32(2, 3), f32(2, 3), f32(3), f32(3)),
     ValueError, ["rstd", "(2,)"]),
    (lambda: native.gelu_forward(f32(3, 4), f32(4, 3)), ValueError, ["y", "(4, 3)", "(3, 4)"]),
    (lambda: native.swiglu_backward(f32(5), f32(5), f32(5), f32(5), np.zeros(5, np.float16)),
     TypeError, ["b", "float16"]),
    (lambda: native.rope(f32(1, 1, 2, 5), f32(1, 1, 2, 5), f32(2, 2), f32(2, 2)),
     ValueError, ["D", "even", "D=5"]),
    (lambda: native.rope(f32(1, 1, 2, 4), f32(1, 1, 2, 4), f32(3, 2), f32(2, 2)),
     ValueError, ["cos", "(2, 2)", "(3, 2)"]),
    (lambda: native.cross_entropy(f32(2), f32(2, 3), f32(2, 3), np.array([0, 3]), 0.0, 1.0),
     ValueError, ["targets", "V=3", "max 3"]),
    (lambda: native.cross_entropy(f32(2), f32(2, 3), f32(2, 3), np.array([0.0, 1.0]), 0.0, 1.0),
     TypeError, ["targets", "integer"]),
    (lambda: native.cross_entropy(f32(2), f32(2, 3), f32(2, 3), np.array([0, 1]), "0", 1.0),
     TypeError, ["z_loss"]),
]


@pytest.mark.parametrize("call,exc,words", BAD_CALLS)
def test_bad_input_raises_clear_error(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_dispatch_falls_back_to_reference_for_float64():
    import minillm.kernels as K
    x, w = np.ones((2, 3)), np.ones((4, 3))
    out = np.empty((2, 4))
    K.matmul(out, x, w)                                # float64: the reference runs
    np.testing.assert_array_equal(out, 3.0)


@pytest.mark.parametrize("M", [1, 2, 3, 4, 64])
def test_dispatched_matmul_is_correct_on_both_sides_of_the_rule(M):
    import minillm.kernels as K
    rng = np.random.default_rng(M)
    x, w = randn(rng, M, 300), randn(rng, 70, 300)
    out = np.empty((M, 70), np.float32)
    K.matmul(out, x, w)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-5, atol=1e-6 * 300)  # K-term sums, as above


# ----------------------------------------------------------------------------------- sum of squares
@SETTINGS
@given(n=st.integers(0, 200_000), seed=seeds)
def test_sum_squares_matches_reference(n, seed):
    # gradient clipping's global norm: both accumulate in double; only the summation order differs
    x = randn(np.random.default_rng(seed), n) * np.float32(3.0)
    got, want = native.sum_squares(x), reference.sum_squares(x)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-30)


def test_sum_squares_rejects_bad_input():
    with pytest.raises(TypeError, match="x: expected float32"):
        native.sum_squares(np.ones(4))
    with pytest.raises(ValueError, match="x: expected a C-contiguous array"):
        native.sum_squares(np.ones((4, 4), np.float32)[:, 1])
