"""cffi wrappers around csrc/quant.c. C never trusts its caller: every argument's dtype, contiguity and
size is checked here first. `available()` is False when the extension was not built (or predates
csrc/quant.c); linear.py then runs the NumPy references."""
import numpy as np

try:
    from minillm._native import ffi, lib
    _HAVE = hasattr(lib, "quant_matmul")
except ImportError:
    ffi = lib = None
    _HAVE = False

FMT_ID = {"int8": 0, "int4": 1, "nf4": 2, "q8_0": 3, "q4_0": 4, "q4_K": 5, "q6_K": 6}


def available():
    return _HAVE


def _ptr(a, ctype, dtype, name, size):
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
        raise TypeError(f"{name}: expected a C-contiguous {np.dtype(dtype)} array")
    if a.nbytes != size:
        raise ValueError(f"{name}: expected {size} bytes, got {a.nbytes}")
    return ffi.cast(ctype, a.ctypes.data)


def _args(fmt, K, N, w, scale, zero, group_size, row_bytes, n_scales):
    if fmt not in FMT_ID:
        raise ValueError(f"fmt: expected one of {sorted(FMT_ID)}, got {fmt!r}")
    wp = _ptr(w.view(np.uint8) if w.dtype != np.uint8 else w, "uint8_t*", np.uint8, "w", N * row_bytes)
    sp = ffi.NULL if scale is None else _ptr(scale, "float*", np.float32, "scale", 4 * n_scales)
    zp = ffi.NULL if zero is None else _ptr(zero, "uint8_t*", np.uint8, "zero", n_scales)
    return wp, sp, zp, int(group_size or 0)


def matmul(fmt, x, w, scale, zero, group_size, N, row_bytes, n_scales):  # x (M, K) -> (M, N)
    """out = x @ W^T with W in format fmt (see csrc/quant.h for what w/scale/zero hold)."""
    M, K = x.shape
    out = np.empty((M, N), dtype=np.float32)
    xp = _ptr(x, "float*", np.float32, "x", 4 * M * K)
    wp, sp, zp, g = _args(fmt, K, N, w, scale, zero, group_size, row_bytes, n_scales)
    if lib.quant_matmul(FMT_ID[fmt], ffi.cast("float*", out.ctypes.data), xp, M, K, N, wp, sp, zp, g):
        raise ValueError(f"quant_matmul: invalid sizes for {fmt} (K={K}, group_size={group_size})")
    return out


def dequant_rows(fmt, n0, n1, K, w, scale, zero, group_size, N, row_bytes, n_scales):  # -> (n1-n0, K)
    if not 0 <= n0 <= n1 <= N:
        raise ValueError(f"rows: expected 0 <= n0 <= n1 <= {N}, got {n0}, {n1}")
    out = np.empty((n1 - n0, K), dtype=np.float32)
    wp, sp, zp, g = _args(fmt, K, N, w, scale, zero, group_size, row_bytes, n_scales)
    if lib.quant_dequant_rows(FMT_ID[fmt], ffi.cast("float*", out.ctypes.data), n0, n1, K, wp, sp, zp, g):
        raise ValueError(f"quant_dequant_rows: invalid sizes for {fmt} (K={K})")
    return out


def matmul_int8_vnni(x, q, scale):  # x (M, K) float32, q (N, K) int8, scale (N,) -> (M, N)
    M, K = x.shape
    N = q.shape[0]
    if K % 64:
        raise ValueError(f"x: the VNNI path needs K % 64 == 0, got K={K}")
    out = np.empty((M, N), dtype=np.float32)
    rc = lib.quant_matmul_int8_vnni(ffi.cast("float*", out.ctypes.data), _ptr(x, "float*", np.float32, "x", 4 * M * K),
                                    M, K, N, _ptr(q, "int8_t*", np.int8, "q", N * K),
                                    _ptr(scale, "float*", np.float32, "scale", 4 * N))
    if rc:
        raise MemoryError("quant_matmul_int8_vnni: allocation failed")
    return out


def matmul_int4_q8(x, packed, scale, zero, group_size):  # x (M, K) float32 -> (M, N), int8 activations
    M, K = x.shape
    N = packed.shape[0]
    if group_size % 64 or K % group_size:
        raise ValueError(f"group_size: the int8-activation path needs a multiple of 64 dividing K={K}, got {group_size}")
    ng = K // group_size
    out = np.empty((M, N), dtype=np.float32)
    rc = lib.quant_matmul_int4_q8(ffi.cast("float*", out.ctypes.data), _ptr(x, "float*", np.float32, "x", 4 * M * K),
                                  M, K, N, _ptr(packed, "uint8_t*", np.uint8, "packed", N * K // 2),
                                  _ptr(scale, "float*", np.float32, "scale", 4 * N * ng),
                                  _ptr(zero, "uint8_t*", np.uint8, "zero", N * ng), group_size)
    if rc:
        raise MemoryError("quant_matmul_int4_q8: allocation failed")
    return out
