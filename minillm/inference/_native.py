"""Decode attention through a block table: the PagedAttention kernel (Kwon et al. 2023, Sec. 4.1,
eq. 4: the softmax over a sequence's keys computed block by block, A_ij = exp(q_i K_j^T / sqrt(D))
/ sum_t exp(q_i K_t^T / sqrt(D)), o_i = sum_j V_j A_ij^T).

paged_attention_decode_reference is the NumPy spec: gather each sequence's K/V from its pages into a
contiguous array and attend. csrc/paged_attention.c computes the same without the gather, with an
online softmax over the pages in place, one OpenMP task per (sequence, head). paged_attention_decode
validates every argument and calls C when the extension has the kernel, else the reference.
"""
import numpy as np

from ..kernels.arith import ceil_div

try:
    from minillm._native import ffi, lib
    _HAVE_C = hasattr(lib, "paged_attention_decode")
except ImportError:  # extension not built
    ffi = lib = None
    _HAVE_C = False


def paged_attention_decode_reference(q, k_pages, v_pages, block_tables, lengths, scale):
    """q (B, H, D); k_pages, v_pages (NB, Hkv, bs, D); block_tables (B, MB) int; lengths (B,) int
    -> out (B, H, D): sequence b's query against its first lengths[b] positions."""
    B, H, D = q.shape
    _, Hkv, bs, _ = k_pages.shape
    out = np.empty((B, H, D), dtype=np.float32)
    for b in range(B):
        n = int(lengths[b])
        blocks = block_tables[b, :ceil_div(n, bs)]
        k = k_pages[blocks].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]       # (Hkv, n, D)
        v = v_pages[blocks].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]
        k = np.repeat(k, H // Hkv, axis=0)                                          # (H, n, D)
        v = np.repeat(v, H // Hkv, axis=0)
        s = np.einsum("hd,hnd->hn", q[b].astype(np.float64), k) * scale            # (H, n)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        out[b] = np.einsum("hn,hnd->hd", p, v)
    return out


def _check(q, k_pages, v_pages, block_tables, lengths):
    for name, a, nd in (("q", q, 3), ("k_pages", k_pages, 4), ("v_pages", v_pages, 4)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != nd:
            raise TypeError(f"{name}: expected a float32 array with {nd} dims, got "
                            f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    B, H, D = q.shape
    NB, Hkv, bs, Dk = k_pages.shape
    if Dk != D or v_pages.shape != k_pages.shape:
        raise ValueError(f"k_pages, v_pages: expected shape (NB, Hkv, bs, {D}) each, got "
                         f"{k_pages.shape} and {v_pages.shape}")
    if Hkv < 1 or H % Hkv:
        raise ValueError(f"q: n_head {H} must be a multiple of n_kv_head {Hkv}")
    block_tables, lengths = np.asarray(block_tables), np.asarray(lengths)
    if block_tables.ndim != 2 or block_tables.shape[0] != B or block_tables.dtype.kind not in "iu":
        raise ValueError(f"block_tables: expected an int array ({B}, MB), got {block_tables.dtype} {block_tables.shape}")
    if lengths.shape != (B,) or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths: expected an int array ({B},), got {lengths.dtype} {lengths.shape}")
    MB = block_tables.shape[1]
    if B and (lengths.min() < 1 or lengths.max() > MB * bs):
        raise ValueError(f"lengths: expected values in [1, {MB * bs}] (block table width x block size), "
                         f"got [{lengths.min()}, {lengths.max()}]")
    for b in range(B):  # every block a sequence will read must exist
        used = block_tables[b, :ceil_div(int(lengths[b]), bs)]
        if used.size and (used.min() < 0 or used.max() >= NB):
            raise ValueError(f"block_tables: row {b} points outside [0, {NB}): {used.tolist()}")
    return block_tables, lengths


def paged_attention_decode(q, k_pages, v_pages, block_tables, lengths, scale, use_native=True):
    """Same arguments and result as paged_attention_decode_reference; C when available."""
    block_tables, lengths = _check(q, k_pages, v_pages, block_tables, lengths)
    if not (use_native and _HAVE_C):
        return paged_attention_decode_reference(q, k_pages, v_pages, block_tables, lengths, scale)
    q = np.ascontiguousarray(q)
    if not (k_pages.flags.c_contiguous and v_pages.flags.c_contiguous):
        raise ValueError("k_pages, v_pages: expected C-contiguous arrays (the kernel reads them in place)")
    tables = np.ascontiguousarray(block_tables, dtype=np.int32)    # range-checked above
    lens = np.ascontiguousarray(lengths, dtype=np.int32)
    B, H, D = q.shape
    NB, Hkv, bs, _ = k_pages.shape
    out = np.empty((B, H, D), dtype=np.float32)
    f32 = lambda a: ffi.cast("float*", a.ctypes.data)  # noqa: E731
    rc = lib.paged_attention_decode(f32(out), f32(q), f32(k_pages), f32(v_pages),
                                    ffi.cast("int32_t*", tables.ctypes.data),
                                    ffi.cast("int32_t*", lens.ctypes.data),
                                    B, H, Hkv, NB, bs, tables.shape[1], D, float(scale))
    if rc != 0:
        raise ValueError(f"paged_attention_decode: the kernel rejected its arguments (code {rc})")
    return out
