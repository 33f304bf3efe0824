"""Decode attention through a block table: the PagedAttention kernel (Kwon et al. 2023, Sec. 4.1,
eq. 4: the softmax over a sequence's keys computed block by block, A_ij = exp(q_i K_j^T / sqrt(D))
/ sum_t exp(q_i K_t^T / sqrt(D)), o_i = sum_j V_j A_ij^T).

The NumPy spec is kernels/reference.py:paged_attention_decode (gather each sequence's K/V from its
pages and attend); csrc/paged_attention.c computes the same without the gather, with an online
softmax over the pages in place, one OpenMP task per (sequence, head). This wrapper validates every
argument, allocates the output and calls C when the extension has the kernel, else the reference.
"""
import numpy as np

from ..kernels import native, reference

_HAVE_C = native.lib is not None and hasattr(native.lib, "paged_attention_decode")


def paged_attention_decode(q, k_pages, v_pages, block_tables, lengths, scale, use_native=True):
    """q (B, H, D); k_pages, v_pages (NB, Hkv, bs, D) float32; block_tables (B, MB) int; lengths (B,)
    int -> out (B, H, D) float32: sequence b's query against its first lengths[b] positions.
    use_native=False runs the NumPy reference (after the same checks)."""
    block_tables, lengths = native.check_paged_attention(q, k_pages, v_pages, block_tables, lengths)
    q = np.ascontiguousarray(q)
    out = np.empty(q.shape, dtype=np.float32)                                    # (B, H, D)
    if not (use_native and _HAVE_C):
        reference.paged_attention_decode(out, q, k_pages, v_pages, block_tables, lengths, scale)
        return out
    if not (k_pages.flags.c_contiguous and v_pages.flags.c_contiguous):
        raise ValueError("k_pages, v_pages: expected C-contiguous arrays (the kernel reads them in place)")
    native.paged_attention_decode(out, q, k_pages, v_pages, block_tables, lengths, scale)
    return out
