"""Quantized linear layers: what the model's `quantized=` hook holds (minillm.model.Transformer._linear).
Each object stores one weight W (N, K) = (out, in) in a quantized format and exposes
  .shape (N, K), .matmul(x (M, K)) -> (M, N) = x @ W^T, .dequantize() -> (N, K) float32,
  .matmul_reference(x) (the NumPy spec: dequantize, then matmul), .nbytes, .bits_per_weight,
  .arrays() / from_arrays() for checkpoints.
matmul runs the fused C kernels of csrc/quant.c (weights decoded block by block, never expanded);
for prefill-sized M it decodes tiles of TILE_N rows into a scratch buffer and uses the dense GEMM,
which is compute-bound there anyway. Without the extension it runs matmul_reference.
Each layer binds its arrays to a _native.Kernel once, at construction (validated sizes, cached cffi
pointers), so a decode-time call costs a few microseconds of Python: check x, allocate the output.
The quantizers that build these objects are in rtn.py, gptq.py, awq.py, nf4.py, llm_int8.py and
ggml_quants.py.
"""
import numpy as np

from .. import kernels
from ..kernels.arith import ceil_div
from . import _native
from .formats import GGML_BLOCKS, NF4_BLOCK, NF4_CODE, NF4_DQ_BLOCK, unpack_int4
from .ggml_blocks import INT_CODE_TYPES, integer_codes
from .ggml_quants import dequantize_blocks
from .rtn import dequantize_int4, dequantize_int8

GEMV_MAX_M = 4     # up to this many rows the fused kernel re-reads each weight row from L1 per x row
TILE_N = 256       # rows of W decoded per tile on the prefill path
# up to this many rows of x the fused kernel decodes each block of W once: its generic path dots a
# decoded block with up to 8 rows of x per pass (MB in csrc/quant.c). Past that it would decode W
# again for every pass, and decoding a tile of W to float32 for the BLAS GEMM (TILE_N) wins.
FUSED_MAX_M = 2 * GEMV_MAX_M
# up to this many rows of x GGMLLinear(act_int8=True) runs csrc/qgemm.c (each block of W unpacked once
# per 8 rows of x, integer dots); past it, prefill, the dequantized tiles and the float GEMM
INT8_MAX_M = 32


def quantize_x_int8(x, block):  # (M, K) float32 -> codes (M, K/block, block) float32, d (M, K/block) float32
    """Symmetric int8 quantization of activations, one scale per block of `block` inputs of a row:
    d = absmax / 127, q = round(x / d) in [-127, 127] (q = 0 for an all-zero block), so x ~= d * q.
    The codes stay float32 (exact small integers) for the reference matmuls; csrc/quant.c's
    quantize_x_int8 is the same rounding, so the int8 kernels match these references exactly."""
    M, K = x.shape
    xb = x.reshape(M, K // block, block)                                         # (M, K/block, block)
    d = (np.abs(xb).max(axis=2) / np.float32(127)).astype(np.float32)            # (M, K/block)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
    return np.rint(xb * inv[:, :, None]), d


def _tile_gemm(out, x, w):  # (M, N) <- (M, K), (N, K)
    """The prefill GEMM of a decoded tile: csrc/matmul.c's OpenMP kernel, the thread pool every other
    inference kernel runs in. OpenBLAS's own pool (kernels.matmul's choice at M >= 4, a little faster
    on an idle machine) spun against it on a busy one: SmolLM2's 512-token prefill took 17-24 s of wall
    and 8.5-9 s of CPU through OpenBLAS, 8-10 s and 4 s through the C kernel (2 threads, same run)."""
    if kernels.backend() == "native":
        kernels.native.matmul(out, x, w)
    else:
        kernels.matmul(out, x, w)


def _as_input(x, K):
    if type(x) is np.ndarray and x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == K and x.flags.c_contiguous:
        return x                                                # the decode fast path: nothing to convert
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != K:
        raise ValueError(f"x: expected shape (M, {K}), got {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected a float array, got {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


class QuantizedLinear:
    """Shared matmul dispatch; subclasses define fmt, shape, dequantize, _kernel_args and arrays,
    and call _bind() at the end of __init__."""
    fmt = None
    fused_max_m = FUSED_MAX_M   # matmul's limit on rows of x for the fused kernel (see GGMLLinear's)
    act_int8 = False  # int8 activations: set per layer by the formats that have that path
    _kernel = None  # _native.Kernel, or None without the extension

    def _kernel_args(self):  # -> (w, scale, zero, group_size, row_bytes, n_scales) for csrc/quant.c
        raise NotImplementedError

    def _bind(self):
        """Validate the arrays for csrc/quant.c and cache their pointers, once per layer."""
        if _native.available():
            self._kernel = _native.Kernel(self.fmt, *self.shape, *self._kernel_args())

    def matmul_reference(self, x):  # (M, K) -> (M, N)
        x = _as_input(x, self.shape[1])
        return (x @ self.dequantize().T).astype(np.float32)

    def gemv_kernel(self):
        """The csrc/quant.c kernel (_native.Kernel) that matmul runs for one row of x, or None when it
        runs something else; the one-call decode step (kernels.decode_step) takes its rows."""
        return self._kernel

    def matmul(self, x):  # (M, K) -> (M, N)
        x = _as_input(x, self.shape[1])
        kernel = self._kernel
        if kernel is None:
            return self.matmul_reference(x)
        M, N = x.shape[0], self.shape[0]
        if M <= self.fused_max_m:                    # decode and small batches: the fused kernel
            return kernel.matmul(x)
        out = np.empty((M, N), dtype=np.float32)
        for n0 in range(0, N, TILE_N):  # prefill: decode a tile, then the dense blocked GEMM
            n1 = min(N, n0 + TILE_N)
            wt = kernel.dequant_rows(n0, n1)                                           # (n1-n0, K)
            tile = out if n1 - n0 == N else np.empty((M, n1 - n0), dtype=np.float32)
            _tile_gemm(tile, x, wt)
            if tile is not out:
                out[:, n0:n1] = tile
        return out

    @property
    def nbytes(self):
        return int(sum(a.nbytes for a in self.arrays().values()))

    @property
    def bits_per_weight(self):
        return 8.0 * self.nbytes / (self.shape[0] * self.shape[1])

    def meta(self):
        return {"fmt": self.fmt, "shape": list(self.shape)}


class Int8Linear(QuantizedLinear):
    """INT8 per-output-channel symmetric: W = scale[n] * q[n, k] (rtn.quantize_int8)."""
    fmt = "int8"

    def __init__(self, q, scale):  # (N, K) int8, (N,) float32
        if q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"q: expected a 2-D int8 array, got {q.dtype} {q.shape}")
        if scale.shape != (q.shape[0],):
            raise ValueError(f"scale: expected shape ({q.shape[0]},), got {scale.shape}")
        self.q, self.scale = np.ascontiguousarray(q), np.ascontiguousarray(scale, dtype=np.float32)
        self.shape = q.shape
        self._bind()

    def dequantize(self):
        return dequantize_int8(self.q, self.scale)

    def _kernel_args(self):
        return self.q, self.scale, None, 0, self.shape[1], self.shape[0]

    def arrays(self):
        return {"q": self.q, "scale": self.scale}

    @classmethod
    def from_arrays(cls, meta, a):
        return cls(a["q"], a["scale"])


class Int4Linear(QuantizedLinear):
    """INT4 group-wise asymmetric: W = scale[n, g] * (q - zero[n, g]), two codes per byte.
    act_int8=True makes decode-sized matmuls (M <= 4, G a multiple of 64) quantize each group of x
    to int8 and sum q_w q_x in integers (llama.cpp's approach; matmul_int8_act_reference is its
    spec), trading a small activation rounding error for about 3x fewer instructions per weight."""
    fmt = "int4"

    def __init__(self, packed, scale, zero, group_size, act_int8=False):  # (N, K/2) u8, (N, K/G) f32, u8
        N, K2 = packed.shape
        if packed.dtype != np.uint8:
            raise TypeError(f"packed: expected uint8, got {packed.dtype}")
        if scale.shape != (N, 2 * K2 // group_size) or zero.shape != scale.shape or zero.dtype != np.uint8:
            raise ValueError(f"scale/zero: expected shape ({N}, {2 * K2 // group_size}) (zero uint8), "
                             f"got {scale.shape}, {zero.shape} {zero.dtype}")
        self.packed = np.ascontiguousarray(packed)
        self.scale = np.ascontiguousarray(scale, dtype=np.float32)
        self.zero = np.ascontiguousarray(zero)
        self.group_size = int(group_size)
        self.shape = (N, 2 * K2)
        self.act_int8 = bool(act_int8)
        self._bind()
        self._q8_kernel = None
        if _native.available() and self.group_size % 64 == 0:
            self._q8_kernel = _native.Int4Q8Kernel(self.packed, self.scale, self.zero, self.group_size)

    def dequantize(self):
        return dequantize_int4(self.packed, self.scale, self.zero, self.group_size)

    def matmul_int8_act_reference(self, x):  # (M, K) -> (M, N): x quantized per group, exact int sums
        x = _as_input(x, self.shape[1])
        M, K = x.shape
        G = self.group_size
        qx, d = quantize_x_int8(x, G)                                                # (M, K/G, G), (M, K/G)
        qw = unpack_int4(self.packed).reshape(self.shape[0], K // G, G).astype(np.float64)
        dot = np.einsum("mgk,ngk->mng", qx, qw) - qx.sum(axis=2)[:, None, :] * self.zero[None].astype(np.float64)
        return np.sum(dot * (d[:, None, :].astype(np.float64) * self.scale[None]), axis=2).astype(np.float32)

    def matmul(self, x):
        if self.act_int8 and self._q8_kernel is not None:
            x = _as_input(x, self.shape[1])
            if x.shape[0] <= GEMV_MAX_M:
                return self._q8_kernel.matmul(x)
        return super().matmul(x)

    def gemv_kernel(self):  # the int8-activation path is another kernel
        return None if self.act_int8 and self._q8_kernel is not None else self._kernel

    def _kernel_args(self):
        return self.packed, self.scale, self.zero, self.group_size, self.shape[1] // 2, self.scale.size

    def arrays(self):
        return {"packed": self.packed, "scale": self.scale, "zero": self.zero}

    def meta(self):
        return {**super().meta(), "group_size": self.group_size}

    @classmethod
    def from_arrays(cls, meta, a):
        return cls(a["packed"], a["scale"], a["zero"], meta["group_size"])


class NF4Linear(QuantizedLinear):
    """NF4 with double-quantized block scales (QLoRA): W = absmax[n, b] * NF4_CODE[q], where the
    absmax of each 64-weight block is itself stored as int8 codes: absmax = code2 * scale2 + mean,
    one float scale2 per NF4_DQ_BLOCK absmax values (nf4.py)."""
    fmt = "nf4"

    def __init__(self, packed, absmax_code, absmax_scale, absmax_mean):
        N, K2 = packed.shape
        nblk = N * 2 * K2 // NF4_BLOCK
        if absmax_code.shape != (nblk,) or absmax_code.dtype != np.int8:
            raise ValueError(f"absmax_code: expected int8 shape ({nblk},), got {absmax_code.dtype} {absmax_code.shape}")
        if absmax_scale.shape != (ceil_div(nblk, NF4_DQ_BLOCK),):
            raise ValueError(f"absmax_scale: expected shape ({ceil_div(nblk, NF4_DQ_BLOCK)},), got {absmax_scale.shape}")
        self.packed, self.absmax_code = np.ascontiguousarray(packed), absmax_code
        self.absmax_scale = np.asarray(absmax_scale, dtype=np.float32)
        self.absmax_mean = np.asarray(absmax_mean, dtype=np.float32).reshape(())
        self.shape = (N, 2 * K2)
        self._bind()

    def absmax(self):  # (N, K/64) float32: undo the double quantization (K/64 values per row, cheap)
        s2 = np.repeat(self.absmax_scale, NF4_DQ_BLOCK)[:self.absmax_code.size]
        a = self.absmax_code.astype(np.float32) * s2 + self.absmax_mean
        return a.reshape(self.shape[0], self.shape[1] // NF4_BLOCK).astype(np.float32)

    def dequantize(self):
        N, K = self.shape
        v = NF4_CODE[unpack_int4(self.packed)].reshape(N, K // NF4_BLOCK, NF4_BLOCK)
        return (v * self.absmax()[:, :, None]).reshape(N, K).astype(np.float32)

    def _kernel_args(self):  # the kernel reads the absmax values undone once, here (N * K/64 floats)
        a = self.absmax()
        return self.packed, a, None, 0, self.shape[1] // 2, a.size

    def arrays(self):
        return {"packed": self.packed, "absmax_code": self.absmax_code, "absmax_scale": self.absmax_scale,
                "absmax_mean": self.absmax_mean.reshape(1)}

    @classmethod
    def from_arrays(cls, meta, a):
        return cls(a["packed"], a["absmax_code"], a["absmax_scale"], a["absmax_mean"][0])


class GGMLLinear(QuantizedLinear):
    """A weight stored as ggml blocks of any type in formats.GGML_BLOCKS (F16, BF16, Q4_0, Q4_1, Q5_0,
    Q5_1, Q8_0, Q2_K..Q6_K), row by row as in a GGUF tensor.
    act_int8=True (every type but F16/BF16) makes matmuls of up to INT8_MAX_M rows (decode, and the
    serving engine's batched decode steps) quantize each block of 32 inputs of x to int8 and sum
    u_w q_x in integers, as llama.cpp does for these types (its ggml_vec_dot_*_q8_0/q8_1/q8_K):
    csrc/qgemm.c, whose spec is matmul_int8_act_reference. The one-call decode step runs the same
    kernel. act_int8=False keeps x in float32 (exact up to float32 summation order): slower, and what
    a comparison with a float32 reference (transformers) needs."""
    # a serving batch of 16 decode rows: ggml_blocks.c's two 8-row passes over W beat decoding tiles
    # of W for the GEMM (SmolLM2 Q4_1/Q8_0, Xeon, 2 threads: ffn_down 1.2 vs 6.1 ms, the tied
    # 49152-row Q8_0 head 96 vs 138 ms); at 24+ rows the two are even, at 64 tiles win
    fused_max_m = 2 * FUSED_MAX_M

    def __init__(self, fmt, blocks, act_int8=False):  # blocks (N, K / block) of formats.GGML_BLOCKS[fmt]
        if fmt not in GGML_BLOCKS:
            raise ValueError(f"fmt: expected one of {sorted(GGML_BLOCKS)}, got {fmt!r}")
        dtype, bs = GGML_BLOCKS[fmt]
        if blocks.dtype != dtype or blocks.ndim != 2:
            raise TypeError(f"blocks: expected a 2-D array of the {fmt} block dtype, got {blocks.dtype} {blocks.shape}")
        self.fmt, self.blocks = fmt, np.ascontiguousarray(blocks)
        self.shape = (blocks.shape[0], blocks.shape[1] * bs)
        self.act_int8 = bool(act_int8)
        self._bind()
        self._q8_kernel = None   # csrc/qgemm.c through ggml_blocks.c's entry points (decode_step runs it too)
        if _native.blocks_available() and fmt in _native.INT8_ROWS:
            self._q8_kernel = _native.GGMLBlockKernel(fmt, self.blocks, act_int8=True)

    def _bind(self):  # csrc/ggml_blocks.c's kernels, or quant.c's own for Q4_K and Q6_K (faster today)
        if self.fmt in _native.QUANT_C_BLOCKS:
            super()._bind()
        elif _native.blocks_available():
            self._kernel = _native.GGMLBlockKernel(self.fmt, self.blocks)

    def matmul(self, x):
        if self.act_int8 and self._q8_kernel is not None:
            x = _as_input(x, self.shape[1])
            if x.shape[0] <= INT8_MAX_M:
                return self._q8_kernel.matmul(x)
        return super().matmul(x)

    def gemv_kernel(self):  # what decode_step runs for one row: the int8-activation kernel when on
        return self._q8_kernel if self.act_int8 and self._q8_kernel is not None else self._kernel

    @property
    def row_tiles(self):
        """Whether the int8 products read the weight repacked as row tiles (csrc/qtiles.h; AVX-512
        VNNI or AVX2, Q8_0/Q4_0/Q4_1/Q4_K/Q6_K) rather than its blocks. Settable to False (the block kernels,
        e.g. to compare the two) and back to True where the tiles run."""
        return self._q8_kernel is not None and self._q8_kernel.tiled

    @row_tiles.setter
    def row_tiles(self, on):
        if not isinstance(on, bool):
            raise TypeError(f"row_tiles: expected a bool, got {type(on).__name__}")
        k = self._q8_kernel
        if on and not (k is not None and _native.lib.qtiles_usable(k.type & ~_native.lib.GGML_ACT_INT8)):
            raise ValueError(f"row_tiles: no row-tile kernels for {self.fmt} here (AVX-512 VNNI or AVX2 and "
                             "Q8_0/Q4_0/Q4_1/Q4_K/Q6_K, MINILLM_TILES not 0), got True")
        if k is not None:
            k.tiled = on

    def matmul_int8_act_reference(self, x):  # (M, K) -> (M, N): x quantized per 32 inputs, exact sums
        """The int8-activation path's spec: x quantized per 32 inputs (quantize_x_int8), W as integer
        codes u with a scale s and offset c per 16 weights (ggml_blocks.integer_codes), the dots
        u . q_x and the sums of q_x per 16 exact integers (float64), then
            out[m, n] = sum_b d_x[m, b] sum_{h in b} (s[n, h] (u . q_x)_h + c[n, h] (sum q_x)_h).
        F16/BF16 have no integer codes: x @ W^T with x rounded the same way."""
        x = _as_input(x, self.shape[1])
        M, K = x.shape
        qx, d = quantize_x_int8(x, 32)                                               # (M, K/32, 32), (M, K/32)
        qx16 = qx.reshape(M, K // 16, 16).astype(np.float64)
        d16 = np.repeat(d.astype(np.float64), 2, axis=1)                             # (M, K/16)
        if self.fmt not in INT_CODE_TYPES:
            W = self.dequantize().astype(np.float64).reshape(self.shape[0], K // 16, 16)
            return np.einsum("mgk,ngk,mg->mn", qx16, W, d16).astype(np.float32)
        u, s, c = integer_codes(self.blocks, self.fmt)                               # (N, K), (N, K/16) x 2
        dot = np.einsum("mgk,ngk->mng", qx16, u.reshape(self.shape[0], K // 16, 16).astype(np.float64))
        per16 = dot * s[None].astype(np.float64) + qx16.sum(axis=2)[:, None, :] * c[None].astype(np.float64)
        return np.sum(per16 * d16[:, None, :], axis=2).astype(np.float32)

    def dequantize(self):
        return dequantize_blocks(self.blocks, self.fmt)

    def _kernel_args(self):
        return self.blocks, None, None, 0, self.blocks.shape[1] * self.blocks.dtype.itemsize, 0

    def arrays(self):
        return {"blocks": self.blocks.view(np.uint8).reshape(self.shape[0], -1)}

    @classmethod
    def from_arrays(cls, meta, a):
        dtype, _ = GGML_BLOCKS[meta["fmt"]]
        return cls(meta["fmt"], np.ascontiguousarray(a["blocks"]).view(dtype))


class LLMInt8Linear(QuantizedLinear):
    """LLM.int8() mixed-precision decomposition (Dettmers et al. 2022, Sec. 3.2, eq. 5):
    X W^T = X[:, O] W[:, O]^T (float, the outlier input channels O)
          + diag(s_x) (Q_x Q_w^T) diag(s_w) (vector-wise INT8: per row of x, per row of W).
    The INT8 part is padded with zero columns to a multiple of 64 for the VNNI kernel."""
    fmt = "llm_int8"

    def __init__(self, outliers, w_outlier, q, scale, K):  # (k,), (N, k) f32, (N, Kp) int8, (N,)
        self.outliers = np.asarray(outliers, dtype=np.int64)
        self.keep = np.setdiff1d(np.arange(K), self.outliers)                        # (K - k,)
        self.w_outlier = np.ascontiguousarray(w_outlier, dtype=np.float32)
        self.q, self.scale = np.ascontiguousarray(q), np.ascontiguousarray(scale, dtype=np.float32)
        self.shape = (q.shape[0], int(K))
        if q.shape[1] % 64 or q.shape[1] < len(self.keep):
            raise ValueError(f"q: expected >= {len(self.keep)} columns padded to a multiple of 64, got {q.shape[1]}")

    def _split(self, x):  # x (M, K) -> outlier part (M, k), int8 part padded (M, Kp)
        xr = np.zeros((x.shape[0], self.q.shape[1]), dtype=np.float32)
        xr[:, :len(self.keep)] = x[:, self.keep]
        return x[:, self.outliers], xr

    def dequantize(self):
        N, K = self.shape
        w = np.zeros((N, K), dtype=np.float32)
        w[:, self.outliers] = self.w_outlier
        w[:, self.keep] = dequantize_int8(self.q, self.scale)[:, :len(self.keep)]
        return w

    def int8_reference(self, xr):  # (M, Kp) -> (M, N): vector-wise int8 x int8, exact int sums
        qx, d = quantize_x_int8(xr, xr.shape[1])                                     # (M, 1, Kp), (M, 1)
        qx, d = qx[:, 0], d[:, 0]                                                    # (M, Kp), (M,)
        acc = qx.astype(np.float64) @ self.q.T.astype(np.float64)                    # exact in float64
        return (acc.astype(np.float32) * d[:, None]) * self.scale[None, :]

    def matmul_reference(self, x):
        x = _as_input(x, self.shape[1])
        xo, xr = self._split(x)
        return (xo @ self.w_outlier.T + self.int8_reference(xr)).astype(np.float32)

    def matmul(self, x):
        x = _as_input(x, self.shape[1])
        if not _native.available():
            return self.matmul_reference(x)
        xo, xr = self._split(x)
        return (xo @ self.w_outlier.T + _native.matmul_int8_vnni(xr, self.q, self.scale)).astype(np.float32)

    def gemv_kernel(self):  # a float part plus an int8 x int8 part: no single fused kernel
        return None

    def arrays(self):
        return {"outliers": self.outliers, "w_outlier": self.w_outlier, "q": self.q, "scale": self.scale}

    @classmethod
    def from_arrays(cls, meta, a):
        return cls(a["outliers"], a["w_outlier"], a["q"], a["scale"], meta["shape"][1])


CLASSES = {"int8": Int8Linear, "int4": Int4Linear, "nf4": NF4Linear, "llm_int8": LLMInt8Linear,
           **{f: GGMLLinear for f in GGML_BLOCKS}}


def from_arrays(meta, arrays):
    """Rebuild a quantized linear from .meta() and .arrays() (checkpoint loading)."""
    if meta.get("fmt") not in CLASSES:
        raise ValueError(f"meta: unknown quantized format {meta.get('fmt')!r}")
    obj = CLASSES[meta["fmt"]].from_arrays(meta, arrays)
    if list(obj.shape) != list(meta["shape"]):
        raise ValueError(f"arrays: rebuild a {meta['fmt']} weight of shape {obj.shape}, metadata says {meta['shape']}")
    return obj
