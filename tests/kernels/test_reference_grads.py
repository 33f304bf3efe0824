"""Float64 finite-difference checks of every backward in minillm/kernels/reference.py.

Each test builds a scalar loss L = sum(forward(x) * dy) for a random upstream gradient dy, so
dL/dx is exactly what the backward kernel returns for that dy, and compares it with
numerical_grad (central differences, eps = 1e-6: truncation ~eps^2, rounding ~1e-16/eps = 1e-10).
Tolerances rtol=1e-6, atol=1e-8 sit well above both. The native kernels are checked against these
references in test_native.py, so together they pin the native gradients too.
"""
import numpy as np
from hypothesis import given, settings, strategies as st

from gradcheck import numerical_grad
from minillm.kernels import reference as ref

SETTINGS = settings(max_examples=10, deadline=None)
seeds = st.integers(0, 2**32 - 1)
TOL = dict(rtol=1e-6, atol=1e-8)


def test_numerical_grad_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 3.0]])
    g = numerical_grad(lambda a: np.sum(a ** 3), x)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    assert g.shape == x.shape and x[0, 0] == 0.5              # the caller's x is untouched


# ----------------------------------------------------------------------------------- attention
@SETTINGS
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), G=st.integers(1, 2), T=st.integers(1, 4),
       extra=st.integers(0, 3), D=st.integers(1, 4), seed=seeds)
def test_attention_backward_matches_finite_differences(B, Hkv, G, T, extra, D, seed):
    rng = np.random.default_rng(seed)
    H, S = Hkv * G, T + extra
    q, dout = rng.standard_normal((2, B, H, T, D))
    k, v = rng.standard_normal((2, B, Hkv, S, D))
    scale = 0.7

    def forward(q_, k_, v_):
        out, lse = np.empty((B, H, T, D)), np.empty((B, H, T))
        ref.attention_forward(out, lse, q_, k_, v_, scale)
        return out, lse

    out, lse = forward(q, k, v)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    ref.attention_backward(dq, dk, dv, dout, q, k, v, out, lse, scale)
    np.testing.assert_allclose(dq, numerical_grad(lambda a: np.sum(forward(a, k, v)[0] * dout), q),
                               **TOL)
    np.testing.assert_allclose(dk, numerical_grad(lambda a: np.sum(forward(q, a, v)[0] * dout), k),
                               **TOL)
    np.testing.assert_allclose(dv, numerical_grad(lambda a: np.sum(forward(q, k, a)[0] * dout), v),
                               **TOL)


# ----------------------------------------------------------------------------------- norms
@SETTINGS
@given(N=st.integers(1, 3), C=st.integers(2, 6), seed=seeds)
def test_layernorm_backward_matches_finite_differences(N, C, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((2, N, C))
    w, b = rng.standard_normal((2, C))

    def loss(x_, w_, b_):
        y, mean, rstd = np.empty((N, C)), np.empty(N), np.empty(N)
        ref.layernorm_forward(y, mean, rstd, x_, w_, b_, 1e-5)
        return np.sum(y * dy)

    mean, rstd = np.empty(N), np.empty(N)
    ref.layernorm_forward(np.empty((N, C)), mean, rstd, x, w, b, 1e-5)
    dx, dw, db = np.empty((N, C)), np.empty(C), np.empty(C)
    ref.layernorm_backward(dx, dw, db, dy, x, w, mean, rstd)
    np.testing.assert_allclose(dx, numerical_grad(lambda a: loss(a, w, b), x), **TOL)
    np.testing.assert_allclose(dw, numerical_grad(lambda a: loss(x, a, b), w), **TOL)
    np.testing.assert_allclose(db, numerical_grad(lambda a: loss(x, w, a), b), **TOL)


@SETTINGS
@given(N=st.integers(1, 3), C=st.integers(1, 6), seed=seeds)
def test_rmsnorm_backward_matches_finite_differences(N, C, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((2, N, C))
    w = rng.standard_normal(C)

    def loss(x_, w_):
        y, rstd = np.empty((N, C)), np.empty(N)
        ref.rmsnorm_forward(y, rstd, x_, w_, 1e-6)
        return np.sum(y * dy)

    rstd = np.empty(N)
    ref.rmsnorm_forward(np.empty((N, C)), rstd, x, w, 1e-6)
    dx, dw = np.empty((N, C)), np.empty(C)
    ref.rmsnorm_backward(dx, dw, dy, x, w, rstd)
    np.testing.assert_allclose(dx, numerical_grad(lambda a: loss(a, w), x), **TOL)
    np.testing.assert_allclose(dw, numerical_grad(lambda a: loss(x, a), w), **TOL)


# ----------------------------------------------------------------------------------- activations
@SETTINGS
@given(n=st.integers(1, 12), seed=seeds)
def test_gelu_backward_matches_finite_differences(n, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal((2, n)) * 3

    def loss(x_):
        y = np.empty(n)
        ref.gelu_forward(y, x_)
        return np.sum(y * dy)

    dx = np.empty(n)
    ref.gelu_backward(dx, dy, x)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), **TOL)


@SETTINGS
@given(n=st.integers(1, 12), seed=seeds)
def test_swiglu_backward_matches_finite_differences(n, seed):
    rng = np.random.default_rng(seed)
    a, b, dy = rng.standard_normal((3, n)) * 3

    def loss(a_, b_):
        y = np.empty(n)
        ref.swiglu_forward(y, a_, b_)
        return np.sum(y * dy)

    da, db = np.empty(n), np.empty(n)
    ref.swiglu_backward(da, db, dy, a, b)
    np.testing.assert_allclose(da, numerical_grad(lambda t: loss(t, b), a), **TOL)
    np.testing.assert_allclose(db, numerical_grad(lambda t: loss(a, t), b), **TOL)


# ----------------------------------------------------------------------------------- rope
@SETTINGS
@given(B=st.integers(1, 2), H=st.integers(1, 2), T=st.integers(1, 4), half=st.integers(1, 3),
       seed=seeds)
def test_rope_backward_is_rope_with_negated_sin(B, H, T, half, seed):
    rng = np.random.default_rng(seed)
    D = 2 * half
    x, dout = rng.standard_normal((2, B, H, T, D))
    theta = rng.uniform(0, 10, (T, half))
    cos, sin = np.cos(theta), np.sin(theta)

    def loss(x_):
        out = np.empty_like(x_)
        ref.rope(out, x_, cos, sin)
        return np.sum(out * dout)

    dx = np.empty_like(x)
    ref.rope(dx, dout, cos, -sin)                 # a rotation's transpose is its inverse
    np.testing.assert_allclose(dx, numerical_grad(loss, x), **TOL)


# ----------------------------------------------------------------------------------- loss
@SETTINGS
@given(N=st.integers(1, 4), V=st.integers(1, 7), z_loss=st.sampled_from([0.0, 0.1]),
       grad_scale=st.sampled_from([1.0, 0.25]), seed=seeds)
def test_cross_entropy_gradient_matches_finite_differences(N, V, z_loss, grad_scale, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((N, V)) * 2
    targets = rng.integers(-1, V, size=N)         # includes ignored rows

    def total_loss(x_):
        loss, dl = np.empty(N), np.empty((N, V))
        ref.cross_entropy(loss, dl, x_, targets, z_loss, grad_scale)
        return grad_scale * np.sum(loss)          # dlogits is grad_scale * d(sum of losses)

    loss, dl = np.empty(N), np.empty((N, V))
    ref.cross_entropy(loss, dl, logits, targets, z_loss, grad_scale)
    np.testing.assert_allclose(dl, numerical_grad(total_loss, logits), **TOL)
