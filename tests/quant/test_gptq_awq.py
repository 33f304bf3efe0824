"""GPTQ and AWQ: the fast GPTQ equals the plain reference; on layers with correlated calibration
activations GPTQ's output error is below RTN's and AWQ's at or below it; AWQ folding is exact."""
import numpy as np
import pytest

from minillm.quant import awq, gptq
from minillm.quant.formats import pack_int4
from minillm.quant.rtn import dequantize_int4, dequantize_int8, quantize_int4, quantize_int8


def _layer(seed, N=48, K=256, n=600):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, K)) * 0.4 + np.eye(K)               # correlated input channels
    X = (rng.standard_normal((n, K)) @ A).astype(np.float32)
    X[:, rng.choice(K, 4, replace=False)] *= 8                      # a few salient channels
    W = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    return W, X


def _deq(bits, q, s, z, G):
    return dequantize_int8(q, s) if bits == 8 else dequantize_int4(pack_int4(q), s, z, G)   # INT4, INT3


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bits,G,act_order", [(4, 64, False), (4, 32, True), (3, 64, False), (3, 32, True),
                                              (8, 128, False), (8, 128, True)])
def test_gptq_fast_equals_reference(seed, bits, G, act_order):
    W, X = _layer(seed, N=24, K=128, n=300)
    H = gptq.hessian(X)
    q1, s1, z1 = gptq.gptq_reference(W, H, bits, G, act_order)
    q2, s2, z2 = gptq.gptq_fast(W, H, bits, G, act_order, block_size=64)
    np.testing.assert_array_equal(q1, q2)   # float64 either way: only exact .5 ties could differ
    np.testing.assert_allclose(s1, s2, rtol=1e-6)
    if bits != 8:
        np.testing.assert_array_equal(z1, z2)
        assert q1.max() <= 2 ** bits - 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits,G", [(4, 128), (4, 32), (3, 128), (8, 128)])
def test_gptq_and_awq_beat_rtn_on_correlated_inputs(seed, bits, G):
    W, X = _layer(seed)
    out_err = lambda Wq: float(np.linalg.norm(X @ (W - Wq).T))  # noqa: E731
    if bits != 8:
        fq = lambda w: dequantize_int4(*quantize_int4(w, G, bits), G)  # noqa: E731
    else:
        fq = lambda w: dequantize_int8(*quantize_int8(w))  # noqa: E731
    rtn = out_err(fq(W))
    q, s, z = gptq.gptq_fast(W, gptq.hessian(X), bits, G)
    assert out_err(_deq(bits, q, s, z, G)) < 0.9 * rtn
    sc, alpha, errors = awq.search_scales([W], X, fq)
    awq_err = out_err(fq(W * sc) / sc)
    assert awq_err <= rtn * (1 + 1e-6)
    assert errors[0] == pytest.approx(rtn ** 2 / (X.shape[0] * W.shape[0]), rel=1e-4)   # alpha = 0 is RTN


def test_awq_clip_never_hurts_its_own_objective():
    W, X = _layer(3)
    fq = lambda w: dequantize_int4(*quantize_int4(w, 32), 32)  # noqa: E731
    Wc = awq.search_clip(W, X, fq, 32)
    err = lambda Wq: float(np.linalg.norm(X[:512] @ (W - Wq).T))  # noqa: E731
    assert err(fq(Wc)) <= err(fq(W)) * 1.01
    assert np.all(np.abs(Wc) <= np.abs(W) + 1e-7)


def test_awq_clip_samples_tokens_across_the_calibration_set():
    """The clip search sees tokens from all of X, not only its first rows (the first sequences):
    here the first 512 rows are silent, so a search on them alone would keep every group unclipped."""
    W, X = _layer(4, n=2048)
    X[:512] = 0.0
    fq = lambda w: dequantize_int4(*quantize_int4(w, 32), 32)  # noqa: E731
    Wc = awq.search_clip(W, X, fq, 32)
    err = lambda Wq: float(np.linalg.norm(X[512:] @ (W - Wq).T))  # noqa: E731
    assert err(fq(Wc)) < 0.99 * err(fq(W))


def test_damping_grows_then_explains_failure():
    K = 32
    H = np.zeros((K, K))
    H[0, 0] = 1.0                                                   # rank-1 Hessian: dead inputs fixed by _prepare
    q, s, z = gptq.gptq_fast(np.ones((2, K), np.float32) * 0.1, H, 4, 32, block_size=32)
    assert q.shape == (2, K)
    bad = -np.eye(K)                                                # negative definite: no damping helps
    with pytest.raises(ValueError, match="not positive definite.*calibration"):
        gptq.inverse_cholesky(bad, damp=0.01, max_tries=3)
    U, lam = gptq.inverse_cholesky(np.diag(np.r_[np.ones(K - 1), -1e-3]), damp=1e-6)
    assert lam > 1e-6                                               # it had to raise the damping
