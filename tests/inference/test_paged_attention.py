"""The C paged decode-attention kernel equals its NumPy reference and a plain contiguous attention
(minillm/inference/_native.py, kernels/reference.py:paged_attention_decode, csrc/paged_attention.c)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import kernels
from minillm.inference import _native
from minillm.inference._native import paged_attention_decode
from minillm.kernels.arith import ceil_div


def paged_attention_decode_reference(q, k_pages, v_pages, block_tables, lengths, scale):
    """kernels.reference.paged_attention_decode, after the same argument checks."""
    return paged_attention_decode(q, k_pages, v_pages, block_tables, lengths, scale, use_native=False)


native = pytest.mark.skipif(not _native._HAVE_C, reason="native extension without paged_attention")


def random_case(seed, B, Hkv, group, D, bs, max_len):
    """Pages with each sequence's blocks scattered at random; also returns the contiguous K/V."""
    rng = np.random.default_rng(seed)
    H = Hkv * group
    lengths = rng.integers(1, max_len + 1, size=B).astype(np.int32)
    MB = ceil_div(max_len, bs)
    NB = B * MB + 3
    perm = rng.permutation(NB)
    tables = perm[:B * MB].reshape(B, MB).astype(np.int32)
    k_pages = rng.standard_normal((NB, Hkv, bs, D), dtype=np.float32)
    v_pages = rng.standard_normal((NB, Hkv, bs, D), dtype=np.float32)
    q = rng.standard_normal((B, H, D), dtype=np.float32)
    k = k_pages[tables].transpose(0, 2, 1, 3, 4).reshape(B, Hkv, MB * bs, D)   # (B, Hkv, Smax, D)
    v = v_pages[tables].transpose(0, 2, 1, 3, 4).reshape(B, Hkv, MB * bs, D)
    return q, k_pages, v_pages, tables, lengths, np.ascontiguousarray(k), np.ascontiguousarray(v)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 5), Hkv=st.integers(1, 3), group=st.integers(1, 3),
       D=st.sampled_from([1, 3, 8, 64, 65]), bs=st.sampled_from([1, 2, 16, 33]), max_len=st.integers(1, 150))
def test_reference_equals_contiguous_decode_attention(seed, B, Hkv, group, D, bs, max_len):
    q, kp, vp, tables, lengths, k, v = random_case(seed, B, Hkv, group, D, bs, max_len)
    scale = 1.0 / np.sqrt(D)
    ref = paged_attention_decode_reference(q, kp, vp, tables, lengths, scale)
    flat = np.empty_like(q)
    kernels.reference.attention_decode(flat, q, k, v, lengths, scale)
    np.testing.assert_allclose(ref, flat, atol=2e-5, rtol=0)   # float32 sums over <= 150 keys


@native
@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), B=st.integers(1, 6), Hkv=st.integers(1, 3), group=st.integers(1, 4),
       D=st.sampled_from([1, 7, 16, 64, 128]), bs=st.sampled_from([1, 4, 16, 33]), max_len=st.integers(1, 300))
def test_native_equals_reference(seed, B, Hkv, group, D, bs, max_len):
    q, kp, vp, tables, lengths, _, _ = random_case(seed, B, Hkv, group, D, bs, max_len)
    ref = paged_attention_decode_reference(q, kp, vp, tables, lengths, 0.125)
    out = paged_attention_decode(q, kp, vp, tables, lengths, 0.125)
    # outputs are convex combinations of unit normals; float32 accumulation over <= 300 terms
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


@native
def test_native_large_batch_uses_threads_and_agrees():
    q, kp, vp, tables, lengths, _, _ = random_case(0, 64, 4, 3, 64, 16, 700)
    np.testing.assert_allclose(paged_attention_decode(q, kp, vp, tables, lengths, 0.125),
                               paged_attention_decode_reference(q, kp, vp, tables, lengths, 0.125), atol=1e-5)


@pytest.mark.parametrize("use_native", [True, False])
def test_bad_inputs_raise_before_any_read(use_native):
    q, kp, vp, tables, lengths, _, _ = random_case(1, 2, 2, 2, 8, 4, 10)
    call = lambda **kw: paged_attention_decode(  # noqa: E731
        **{"q": q, "k_pages": kp, "v_pages": vp, "block_tables": tables, "lengths": lengths,
           "scale": 0.5, "use_native": use_native, **kw})
    bad_table = tables.copy()
    bad_table[0, 0] = kp.shape[0]
    with pytest.raises(ValueError, match="block_tables"):
        call(block_tables=bad_table)
    bad_table = tables.copy()
    bad_table[1, -1] = -1                                 # a negative entry in the last used block
    with pytest.raises(ValueError, match="block_tables: row 1"):
        call(block_tables=bad_table, lengths=np.array([1, tables.shape[1] * 4], np.int32))
    unused = tables.copy()
    unused[0, 1:] = kp.shape[0] + 5                       # outside the pool, but past row 0's length
    call(block_tables=unused, lengths=np.array([3, 3], np.int32))
    with pytest.raises(ValueError, match="lengths"):
        call(lengths=np.array([0, 3], np.int32))
    with pytest.raises(ValueError, match="lengths"):
        call(lengths=np.array([tables.shape[1] * 4 + 1, 3], np.int32))
    with pytest.raises(TypeError, match="q"):
        call(q=q.astype(np.float64))
    with pytest.raises(ValueError, match="n_head"):
        call(q=q[:, :3])
    with pytest.raises(ValueError, match="k_pages"):
        call(v_pages=vp[:, :, :2])
