"""cffi wrappers around csrc/quant.c. C never trusts its caller: every argument's dtype, contiguity and
size is checked here first. `available()` is False when the extension was not built (or predates
csrc/quant.c); linear.py then runs the NumPy references.

A decode step calls each quantized weight's matmul about 7 times per layer, so the per-call cost of
this wrapper is part of decode speed: `Kernel` validates a weight's arrays and takes their cffi
pointers once, when the layer is built; each call then only checks x, allocates the output and
takes two pointers (kernels.native's pointer helpers, ffi.from_buffer underneath)."""
import numpy as np

from ..kernels.native import QuantizedWeight, f32, ffi, lib, pointer  # lib None: extension not built
from ..io.ggml_types import GGML_TYPES
from .formats import GGML_BLOCKS, NF4_BLOCK

_HAVE = lib is not None and hasattr(lib, "quant_matmul")
_HAVE_BLOCKS = lib is not None and hasattr(lib, "ggml_matmul")

FMT_ID = {"int8": 0, "int4": 1, "nf4": 2, "q8_0": 3, "q4_0": 4, "q4_K": 5, "q6_K": 6}
# ggml block types whose quant.c kernels beat ggml_blocks.c's general ones (SIMD code per format);
# GGMLLinear runs ggml_blocks.c's for every other type (and its AVX-512 rows for Q8_0/Q4_0/Q4_1)
QUANT_C_BLOCKS = ("q4_K", "q6_K")
# the block types csrc/qgemm.c multiplies with int8-quantized activations (GGML_ACT_INT8)
INT8_ROWS = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K")


def available():
    return _HAVE


def blocks_available():
    """Whether csrc/ggml_blocks.c is built (the fused kernels of every ggml block type)."""
    return _HAVE_BLOCKS


def _buf(a, dtype, name, size):
    """pointer(a, dtype) after checking that a holds exactly `size` bytes."""
    ptr = pointer(a, dtype, name)
    if a.nbytes != size:
        raise ValueError(f"{name}: expected {size} bytes, got {a.nbytes}")
    return ptr


def _layout(fmt, N, K, G):
    """(row_bytes, n_scales, has_zero) that csrc/quant.c's get_layout reads for a weight (N, K) in fmt:
    the C code derives its strides from fmt, K and G alone, so the caller's arrays must match them
    exactly (a row_bytes or n_scales that agrees only with the arrays would let it read past them)."""
    if fmt == "int8":
        return K, N, False                          # one scale per row
    if fmt == "int4":
        return K // 2, N * (K // G), True           # a scale and a zero point per group of G
    if fmt == "nf4":
        return K // 2, N * (K // NF4_BLOCK), False  # one absmax per block
    dtype, bs = GGML_BLOCKS[fmt]
    return K // bs * dtype.itemsize, 0, False       # the scales live inside the blocks


def _x_buf(x, K):  # x (M, K) float32, C-contiguous -> pointer
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != K \
            or not x.flags.c_contiguous:
        raise TypeError(f"x: expected a C-contiguous float32 array of shape (M, {K}), got "
                        f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    return f32(x, "x")


def _blocks(fmt, blocks):
    """blocks (N, K / block) of fmt's block dtype, C-contiguous, else a TypeError: the kernels take
    K from the shape, so a uint8 array (N, row bytes) read as (N, K / block) blocks would run past
    its end."""
    dtype = GGML_BLOCKS[fmt][0]
    if not isinstance(blocks, np.ndarray) or blocks.dtype != dtype or blocks.ndim != 2:
        raise TypeError(f"blocks: expected a 2-D array of the {fmt} block dtype, got "
                        f"{type(blocks).__name__} {getattr(blocks, 'dtype', '')} {getattr(blocks, 'shape', '')}")
    if not blocks.flags.c_contiguous:
        raise TypeError(f"blocks: expected a C-contiguous array, got strides {blocks.strides}")
    return blocks


class Kernel:
    """One quantized weight W (N, K) as csrc/quant.c sees it: format id, sizes and pointers to
    w (N rows of row_bytes), scale and zero (n_scales each, or None), all validated here once."""

    def __init__(self, fmt, N, K, w, scale, zero, group_size, row_bytes, n_scales):
        if fmt not in FMT_ID:
            raise ValueError(f"fmt: expected one of {sorted(FMT_ID)}, got {fmt!r}")
        self.fmt, self.fid, self.N, self.K, self.group_size = fmt, FMT_ID[fmt], int(N), int(K), int(group_size or 0)
        G = self.group_size
        fits = (True if fmt == "int8" else G > 0 and G % 32 == 0 and self.K % G == 0 if fmt == "int4"
                else self.K % (NF4_BLOCK if fmt == "nf4" else GGML_BLOCKS[fmt][1]) == 0)
        if not fits:   # what csrc/quant.c's get_layout accepts
            raise ValueError(f"K={self.K} does not fit {fmt} (group_size={G}): rows must be whole blocks")
        want_rb, want_ns, has_zero = _layout(fmt, self.N, self.K, G)
        if (int(row_bytes), int(n_scales or 0)) != (want_rb, want_ns) or self.N < 0:
            raise ValueError(f"row_bytes, n_scales: {fmt} with N={self.N}, K={self.K} needs {want_rb}, {want_ns}, "
                             f"got {row_bytes}, {n_scales}")
        if (scale is None) != (want_ns == 0) or (zero is None) == has_zero:
            raise ValueError(f"scale, zero: {fmt} needs {'a scale array' if want_ns else 'no scale'} and "
                             f"{'a zero array' if has_zero else 'no zero'}, got "
                             f"{type(scale).__name__}, {type(zero).__name__}")
        w8 = w.view(np.uint8) if isinstance(w, np.ndarray) and w.dtype != np.uint8 and w.flags.c_contiguous else w
        self.w = _buf(w8, np.uint8, "w", self.N * want_rb)
        self.scale = ffi.NULL if scale is None else _buf(scale, np.float32, "scale", 4 * want_ns)
        self.zero = ffi.NULL if zero is None else _buf(zero, np.uint8, "zero", want_ns)
        # what decode_step (kernels.native) reads: the same pointers, and W for its NumPy reference
        self.decode_weight = QuantizedWeight(self.N, self.K, self.fid, self.group_size, self.w, self.scale,
                                             self.zero, lambda: self.dequant_rows(0, self.N))

    def matmul(self, x):  # (M, K) float32 C-contiguous -> (M, N) = x @ W^T
        out = np.empty((x.shape[0], self.N), dtype=np.float32)
        if lib.quant_matmul(self.fid, f32(out, "out", None, True), _x_buf(x, self.K), x.shape[0], self.K,
                            self.N, self.w, self.scale, self.zero, self.group_size):
            raise ValueError(f"quant_matmul: invalid sizes for {self.fmt} (K={self.K}, group_size={self.group_size})")
        return out

    def dequant_rows(self, n0, n1):  # -> (n1 - n0, K) float32: rows n0..n1-1 of W
        if not 0 <= n0 <= n1 <= self.N:
            raise ValueError(f"rows: expected 0 <= n0 <= n1 <= {self.N}, got {n0}, {n1}")
        out = np.empty((n1 - n0, self.K), dtype=np.float32)
        if lib.quant_dequant_rows(self.fid, f32(out, "out", None, True), n0, n1, self.K, self.w, self.scale,
                                  self.zero, self.group_size):
            raise ValueError(f"quant_dequant_rows: invalid sizes for {self.fmt} (K={self.K})")
        return out


def matmul(fmt, x, w, scale, zero, group_size, N, row_bytes, n_scales):  # x (M, K) -> (M, N)
    """out = x @ W^T with W in format fmt (see csrc/quant.h for what w/scale/zero hold). One-off
    calls; layers keep a Kernel instead."""
    return Kernel(fmt, N, x.shape[1], w, scale, zero, group_size, row_bytes, n_scales).matmul(x)


def dequant_rows(fmt, n0, n1, K, w, scale, zero, group_size, N, row_bytes, n_scales):  # -> (n1-n0, K)
    return Kernel(fmt, N, K, w, scale, zero, group_size, row_bytes, n_scales).dequant_rows(n0, n1)


def matmul_int8_vnni(x, q, scale):  # x (M, K) float32, q (N, K) int8, scale (N,) -> (M, N)
    M, K = x.shape
    N = q.shape[0]
    if K % 64:
        raise ValueError(f"x: the VNNI path needs K % 64 == 0, got K={K}")
    out = np.empty((M, N), dtype=np.float32)
    rc = lib.quant_matmul_int8_vnni(f32(out, "out", None, True), _x_buf(x, K), M, K, N,
                                    _buf(q, np.int8, "q", N * K), _buf(scale, np.float32, "scale", 4 * N))
    if rc:
        raise MemoryError("quant_matmul_int8_vnni: allocation failed")
    return out


class Int4Q8Kernel:
    """INT4 weights x int8-quantized activations (quant_matmul_int4_q8), pointers taken once."""

    def __init__(self, packed, scale, zero, group_size):  # (N, K/2) u8, (N, K/G) f32, (N, K/G) u8
        N, K = packed.shape[0], 2 * packed.shape[1]
        if group_size % 64 or K % group_size:
            raise ValueError(f"group_size: the int8-activation path needs a multiple of 64 dividing K={K}, "
                             f"got {group_size}")
        ng = K // group_size
        self.N, self.K, self.group_size = N, K, int(group_size)
        self.packed = _buf(packed, np.uint8, "packed", N * K // 2)
        self.scale = _buf(scale, np.float32, "scale", 4 * N * ng)
        self.zero = _buf(zero, np.uint8, "zero", N * ng)

    def matmul(self, x):  # (M, K) float32 C-contiguous -> (M, N)
        out = np.empty((x.shape[0], self.N), dtype=np.float32)
        if lib.quant_matmul_int4_q8(f32(out, "out", None, True), _x_buf(x, self.K), x.shape[0], self.K, self.N,
                                    self.packed, self.scale, self.zero, self.group_size):
            raise MemoryError("quant_matmul_int4_q8: allocation failed")
        return out


def matmul_int4_q8(x, packed, scale, zero, group_size):  # x (M, K) float32 -> (M, N), int8 activations
    return Int4Q8Kernel(packed, scale, zero, group_size).matmul(x)


class GGMLBlockKernel(Kernel):
    """A weight stored as ggml blocks of any type in formats.GGML_BLOCKS, as csrc/ggml_blocks.c
    sees it: ggml's type id, sizes and a pointer to the blocks, validated once. A Kernel to the
    decode step (kernels.decode_step), whose fmt for it is GGML_DECODE_FMT + type."""

    def __init__(self, fmt, blocks, act_int8=False):  # blocks (N, K / block) of GGML_BLOCKS[fmt]'s dtype
        if fmt not in GGML_BLOCKS:
            raise ValueError(f"fmt: expected one of {sorted(GGML_BLOCKS)}, got {fmt!r}")
        if act_int8 and fmt not in INT8_ROWS:
            raise ValueError(f"fmt: int8 activations cover {INT8_ROWS}, got {fmt!r}")
        dtype, bs = GGML_BLOCKS[fmt]
        blocks = _blocks(fmt, blocks)
        self.fmt, self.type = fmt, GGML_TYPES[fmt].id
        self.N, self.K, self.group_size = blocks.shape[0], blocks.shape[1] * bs, 0
        weights, nbytes = ffi.new("int64_t*"), ffi.new("int64_t*")
        if lib.ggml_block_size(self.type, weights, nbytes) or (weights[0], nbytes[0]) != (bs, dtype.itemsize):
            raise ValueError(f"{fmt}: csrc/ggml_blocks.c's block ({weights[0]} weights, {nbytes[0]} bytes) "
                             f"differs from formats.py's ({bs}, {dtype.itemsize})")
        # int8 activations where the row-tile kernels run (csrc/qtiles.h: AVX-512 VNNI or AVX2): the products
        # come from a copy of the weight repacked as row tiles, made at the first int8 product (the
        # blocks stay, for the float32-activation path and dequantization; blocks changed in place
        # after that are not seen by the int8 products: quantized layers are rebuilt, not edited)
        self.tiled = bool(act_int8) and bool(lib.qtiles_usable(self.type))
        self.type |= lib.GGML_ACT_INT8 if act_int8 else 0      # the kernels read the flag from the type
        self.fid = lib.GGML_DECODE_FMT + self.type
        self.w = _buf(blocks.view(np.uint8), np.uint8, "blocks", blocks.size * dtype.itemsize)
        self.scale = self.zero = ffi.NULL
        self._tiles = None                                     # (array, pointer) once made
        self._decode_weight = None

    def _tile_layout(self):  # -> pointer to the weight as tiles, repacked once
        if self._tiles is None:
            base = self.type & ~lib.GGML_ACT_INT8
            t = np.empty(lib.qtiles_bytes(base, self.N, self.K), np.uint8)
            p = pointer(t, np.uint8, "tiles", True)
            if lib.qtiles_pack(base, self.w, self.N, self.K, p):
                raise ValueError(f"qtiles_pack: no tile layout for {self.fmt} (K={self.K})")
            self._tiles = (t, p)
        return self._tiles[1]

    @property
    def decode_weight(self):  # the QuantizedWeight decode_step reads: the tiles where they are used
        if self._decode_weight is None:
            fid, w = self.fid, self.w
            if self.tiled:
                fid, w = self.fid | lib.GGML_TILES, self._tile_layout()
            self._decode_weight = QuantizedWeight(self.N, self.K, fid, 0, w, self.scale, self.zero,
                                                  lambda: self.dequant_rows(0, self.N))
        return self._decode_weight

    def matmul(self, x):  # (M, K) float32 C-contiguous -> (M, N) = x @ W^T
        out = np.empty((x.shape[0], self.N), dtype=np.float32)
        if self.type & lib.GGML_ACT_INT8:
            w, t = self.w, self.type & ~lib.GGML_ACT_INT8
            if self.tiled:
                w, t = self._tile_layout(), t | lib.GGML_TILES
            rc = lib.qgemm(t, f32(out, "out", None, True), _x_buf(x, self.K), x.shape[0], self.K, self.N, w)
            if rc == -2:
                raise MemoryError("qgemm: out of memory for the quantized x")
            if rc:
                raise ValueError(f"qgemm: invalid sizes for {self.fmt} (K={self.K})")
            return out
        if lib.ggml_matmul(self.type, f32(out, "out", None, True), _x_buf(x, self.K), x.shape[0], self.K,
                           self.N, self.w):
            raise ValueError(f"ggml_matmul: invalid sizes for {self.fmt} (K={self.K})")
        return out

    def dequant_rows(self, n0, n1):  # -> (n1 - n0, K) float32: rows n0..n1-1 of W
        if not 0 <= n0 <= n1 <= self.N:
            raise ValueError(f"rows: expected 0 <= n0 <= n1 <= {self.N}, got {n0}, {n1}")
        out = np.empty((n1 - n0, self.K), dtype=np.float32)
        if lib.ggml_dequant_rows(self.type & ~lib.GGML_ACT_INT8, f32(out, "out", None, True), n0, n1, self.K, self.w):
            raise ValueError(f"ggml_dequant_rows: invalid sizes for {self.fmt} (K={self.K})")
        return out


def quantize_x(x):  # x (M, K) float32 -> codes (M, K) int8, d (M, K/32), s (M, K/16) float32
    """csrc/qgemm.c's quantization of activations (for tests: equal to linear.quantize_x_int8)."""
    M, K = x.shape
    if K % 32:
        raise ValueError(f"x: expected K a multiple of 32, got {K}")
    q, d, s = (np.empty((M, K), np.int8), np.empty((M, K // 32), np.float32), np.empty((M, K // 16), np.float32))
    lib.qgemm_quantize_x(_x_buf(x, K), M, K, pointer(q, np.int8, "q", True), f32(d, "d", None, True),
                         f32(s, "s", None, True))
    return q, d, s
