"""ggml's block quantizers Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K, producing the same bytes as ggml's reference C
quantizers (ggml-quants.c: quantize_row_*_ref, and quantize_row_*_impl when an importance matrix is
given). Their dequantizers, with those of every other type minillm reads, are in ggml_blocks.py;
layouts in formats.py.

  Q8_0  blocks of 32: d = absmax / 127 (fp16), qs = round(x / d)                           8.5 bits/weight
  Q4_0  blocks of 32: d = -max / 8 where max is the signed value of largest |x|, q in [0, 15]  4.5 bits/weight
  Q4_K  super-blocks of 256 = 8 sub-blocks of 32, each an asymmetric 4-bit grid (scale, min) fitted by
        a weighted least-squares search (make_qkx2_quants); the 8 scales and 8 mins are themselves
        quantized to 6 bits against fp16 super-scales d and dmin                        4.5 bits/weight
  Q6_K  super-blocks of 256 = 16 sub-blocks of 16, symmetric 6-bit codes with an rmse-searched scale
        (make_qx_quants), int8 sub-scales against one fp16 d                            6.5625 bits/weight
  Q4_1, Q5_1  blocks of 32 on the min..max range (16 / 32 levels), fp16 d and min     5.0 / 6.0
  Q5_0  as Q4_0 with 32 levels (d = -max / 16), the fifth bit in qh                    5.5
  Q5_K  as Q4_K with 5-bit codes (make_qkx2_quants, nmax 31)                           5.5
  Q3_K  16 sub-blocks of 16, 3-bit codes fitted by coordinate descent (make_q3_quants), 6-bit
        signed sub-scales against one fp16 d                                           3.4375
  Q2_K  16 sub-blocks of 16, asymmetric 2-bit grid fitted under absolute error, 4-bit scales and
        mins against fp16 d and dmin                                                   2.625

Byte-exactness means float32 arithmetic in ggml's exact order. Each routine is vectorized across
blocks, but every sum runs left to right like the C loop: np.cumsum (np.add.accumulate) is strictly
sequential, unlike np.sum's pairwise summation, and every operand is float32 so nothing is promoted.
nearest_int copies ggml's magic-number rounding (ties to even). The fitting routines (make_*_quants)
run by default as ggml_fit.py's Numba loops, which return the same bits; quantize_blocks(...,
reference=True) runs the NumPy code below instead. Importance weights ("imatrix", the
mean squared activation of each input channel over calibration data, llama.cpp's imatrix tool) switch
every type but Q8_0 to its weighted variant (quantize_row_*_impl), as llama-quantize --imatrix does.
"""
import numpy as np

from .formats import (BLOCK_Q2_K, BLOCK_Q3_K, BLOCK_Q4_0, BLOCK_Q4_1, BLOCK_Q4_K, BLOCK_Q5_0, BLOCK_Q5_1, BLOCK_Q5_K,
                      BLOCK_Q6_K, BLOCK_Q8_0, GGML_BLOCKS, QK_K)
from . import ggml_fit
from .ggml_blocks import dequantize_blocks  # noqa: F401  (re-exported: the reference for every type)

F32 = np.float32
GROUP_MAX_EPS = F32(1e-15)
_CHUNK = 1 << 12  # super-blocks per vectorized step: bounds the temporaries to a few MB
_COMPILED = [True]  # the fitting routines run ggml_fit's Numba versions; quantize_blocks(reference=True) turns it off
_NO_WEIGHTS = np.zeros((0, 0), dtype=F32)


def _rows(a):  # (n, R) columns -> (R, n) contiguous rows for ggml_fit
    return np.ascontiguousarray(np.asarray(a, dtype=F32).T)


def nearest_int(f):  # float32 array -> int32 array
    """ggml's nearest_int: add 1.5 * 2^23 so the float's mantissa holds round(f) (ties to even)."""
    v = (np.asarray(f, dtype=F32) + F32(12582912.0)).view(np.int32)
    return (v & 0x007FFFFF) - 0x00400000


def _seqsum(a):  # (n, R) -> (R,): a[0] + a[1] + ... in exactly that order, in float32
    acc = a[0].astype(F32)                   # the fitting routines keep blocks on the last axis, so
    for i in range(1, len(a)):               # each step is one vectorized add across all R blocks
        acc += a[i]
    return acc


def _fp16(x):
    return np.asarray(x, dtype=F32).astype(np.float16)


def _roundf(v):  # C roundf: halves away from zero (np.rint would round them to even)
    t = np.trunc(v)
    return t + np.sign(v) * (np.abs(v - t) >= F32(0.5))


# ------------------------------------------------------------------ the shared fitting routines
# These take blocks as COLUMNS: x (n, R) holds R blocks of n values, so the sequential sums over a
# block's n values are n vectorized adds across all R blocks (see _seqsum).
def make_qx_quants(x, nmax, qw=None):  # (n, R) -> scale (R,), L (n, R) in [0, 2 nmax)
    """Symmetric grid l in [-nmax, nmax-1] fitted to minimise sum w (x - scale l)^2 (rmse_type 1:
    w = x^2 unless importance weights qw are given): start from iscale = -nmax / max, then try 18
    nearby iscales and keep the least-squares scale of the best."""
    if _COMPILED[0]:
        scale, L = ggml_fit.qx_rows(_rows(x), nmax, _NO_WEIGHTS if qw is None else _rows(qw))
        return scale, L.T
    n, R = x.shape
    idx = np.argmax(np.abs(x), axis=0)                       # first index of the largest |x|, like `>`
    mx = x[idx, np.arange(R)]                                                        # (R,)
    zero = np.abs(mx) < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx).astype(F32)
    w = x * x if qw is None else qw.astype(F32)                                      # (n, R)
    wx = w * x

    def fit(iscale):
        l = np.clip(nearest_int(iscale * x), -nmax, nmax - 1).astype(F32)           # (n, R)
        return l, _seqsum(wx * l), _seqsum(w * l * l)

    l, sumlx, suml2 = fit(F32(-nmax) / mx)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0)).astype(F32)
    L = (l + nmax).astype(np.int8)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        l, sumlx, suml2 = fit(-(F32(nmax) + F32(0.1) * F32(step)) / mx)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(better, sumlx / suml2, scale).astype(F32)
        L = np.where(better, (l + nmax).astype(np.int8), L)
        best = np.where(better, scale * sumlx, best).astype(F32)
    scale[zero] = 0
    L[:, zero] = 0
    return scale, L


def make_qkx_quants(x, w, nmax, rmin, rdelta, nstep, v3=False, use_mad=False):  # (n, R) -> scale, the_min (R,), L
    """Asymmetric grid x ~= scale * l - the_min, l in [0, nmax] (make_qkx2_quants; make_qkx3_quants
    when v3): start from the min/max range, then sweep nstep+1 iscales and for each solve the 2x2
    weighted least-squares problem for (scale, min); keep the fit with the least weighted error
    (squared, or absolute with use_mad as Q2_K's reference does)."""
    if _COMPILED[0]:
        scale, the_min, L = ggml_fit.qkx_rows(_rows(x), _rows(w), nmax, rmin, rdelta, nstep, v3, use_mad)
        return scale, the_min, L.T
    err = (lambda d: np.abs(d)) if use_mad else (lambda d: d * d)
    mn, mx = x.min(axis=0), x.max(axis=0)                                            # (R,)
    sum_w, sum_x = _seqsum(w), _seqsum(w * x)
    mn = np.minimum(mn, F32(0))
    degenerate = (mx <= mn) if v3 else (mx == mn)
    with np.errstate(all="ignore"):
        iscale = F32(nmax) / (mx - mn)
        scale = F32(1) / iscale
        L = np.clip(nearest_int(iscale * (x - mn)), 0, nmax).astype(F32)             # (n, R)
        diff = scale * L + mn - x
        best = _seqsum(w * err(diff))
        for step in range(nstep + 1):
            iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / (mx - mn)
            v = iscale * (x - mn)
            if v3:  # the current min can sit near max: guard inf/nan before rounding
                la = np.where(v > 0, nearest_int(np.minimum(v, F32(nmax))), 0).astype(F32)
            else:
                la = np.clip(nearest_int(v), 0, nmax).astype(F32)
            wl = w * la
            sum_l, sum_l2, sum_xl = _seqsum(wl), _seqsum(wl * la), _seqsum(wl * x)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            pos = this_min > 0
            this_min = np.where(pos, F32(0), this_min).astype(F32)
            this_scale = np.where(pos, sum_xl / sum_l2, this_scale).astype(F32)
            diff = this_scale * la + this_min - x
            cur = _seqsum(w * err(diff))
            better = (D > 0) & (cur < best)
            L = np.where(better, la, L)
            best = np.where(better, cur, best).astype(F32)
            scale = np.where(better, this_scale, scale).astype(F32)
            mn = np.where(better, this_min, mn).astype(F32)
    scale = np.where(degenerate, F32(0), scale).astype(F32)
    L[:, degenerate] = 0
    return scale, (-mn).astype(F32), L.astype(np.uint8)


def make_qp_quants(x, w, nmax):  # (n, R) non-negative -> scale (R,), L (n, R)
    """Unsigned grid for the K-quant sub-block scales under importance weights: a 9-point iscale
    search, then up to 5 passes of coordinate descent on each code (ggml's make_qp_quants)."""
    if _COMPILED[0]:
        scale, L = ggml_fit.qp_rows(_rows(x), _rows(w), nmax)
        return scale, L.T
    n, R = x.shape
    mx = np.maximum(x.max(axis=0), F32(0))
    zero = mx < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx).astype(F32)
    iscale = F32(nmax) / mx
    L = nearest_int(iscale * x).astype(F32)
    scale = F32(1) / iscale
    diff = x - scale * L
    best = _seqsum(w * diff * diff)
    for step in range(-4, 5):
        if step == 0:
            continue
        iscale_s = (F32(0.1) * F32(step) + F32(nmax)) / mx
        scale_s = F32(1) / iscale_s
        l = np.minimum(nmax, nearest_int(iscale_s * x)).astype(F32)
        diff = x - scale_s * l
        mse = _seqsum(w * diff * diff)
        better = mse < best
        best = np.where(better, mse, best).astype(F32)
        iscale = np.where(better, iscale_s, iscale).astype(F32)
    L = np.minimum(nmax, nearest_int(iscale * x)).astype(F32)
    wx = w * x
    sumlx, suml2 = _seqsum(wx * L), _seqsum(w * L * L)
    active = np.ones(R, dtype=bool)
    for _ in range(5):  # each pass changes codes one at a time, in order, so sums stay sequential
        changed = np.zeros(R, dtype=bool)
        for i in range(n):
            wi, xi, li = w[i], x[i], L[i]
            slx = sumlx - wx[i] * li
            sl2 = suml2 - wi * li * li
            with np.errstate(all="ignore"):
                new_l = np.minimum(nmax, nearest_int(xi * sl2 / slx)).astype(F32)
            cand = active & (slx > 0) & (sl2 > 0) & (new_l != li)
            slx2 = slx + wx[i] * new_l
            sl22 = sl2 + wi * new_l * new_l
            take = cand & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            L[i] = np.where(take, new_l, li)
            sumlx = np.where(take, slx2, sumlx).astype(F32)
            suml2 = np.where(take, sl22, suml2).astype(F32)
            changed |= take
        active &= changed
        if not active.any():
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0)).astype(F32)
    scale[zero] = 0
    L[:, zero] = 0
    return scale, L.astype(np.uint8)


# ------------------------------------------------------------------ Q8_0 / Q4_0
def _quantize_q8_0(x, qw=None):  # (nb, 32) -> (nb,) BLOCK_Q8_0; Q8_0 ignores importance weights
    amax = np.abs(x).max(axis=1)
    d = amax / F32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    y = np.zeros(len(x), dtype=BLOCK_Q8_0)
    y["d"] = _fp16(d)
    y["qs"] = _roundf(x * inv[:, None]).astype(np.int8)
    return y


def _quantize_q4_0(x, qw=None, sigma2=None):  # (nb, 32) -> (nb,) BLOCK_Q4_0
    y = np.zeros(len(x), dtype=BLOCK_Q4_0)
    if qw is None:
        mx = x[np.arange(len(x)), np.argmax(np.abs(x), axis=1)]                     # signed max
        d = mx / F32(-8)
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
        q = np.minimum(15, np.trunc(x * inv[:, None] + F32(8.5))).astype(np.uint8)  # (int8_t) truncates
    else:  # quantize_row_q4_0_impl: weight = qw * sqrt(sigma2 + x^2), sigma2 = mean x^2 of the row
        wt = qw * np.sqrt(sigma2[:, None] + x * x)                                  # (nb, 32)
        d, q = make_qx_quants(np.ascontiguousarray(x.T), 8, np.ascontiguousarray(wt.T))
        q = q.T.astype(np.uint8)
    y["d"] = _fp16(d)
    y["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return y


# ------------------------------------------------------------------ Q4_1 / Q5_0 / Q5_1
def _pack_q5(q):  # (nb, 32) 5-bit codes -> qs (nb, 16), qh (nb, 4): bit 4 of code j in bit j of qh
    return q[:, :16] & 0xF | ((q[:, 16:] & 0xF) << 4), np.packbits(q >> 4, axis=1, bitorder="little")


def _minmax_grid(x, nmax):  # (nb, 32) -> d, min, scaled values (x - min) / d as the reference computes them
    mn, mx = x.min(axis=1), x.max(axis=1)
    d = (mx - mn) / F32(nmax)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
    return d, mn, (x - mn[:, None]) * inv[:, None]


def _quantize_q4_1(x, qw=None, sigma2=None):  # (nb, 32) -> (nb,) BLOCK_Q4_1
    y = np.zeros(len(x), dtype=BLOCK_Q4_1)
    if qw is None:  # quantize_row_q4_1_ref: the min/max range on 16 levels
        d, mn, v = _minmax_grid(x, 15)
        q = np.minimum(15, np.trunc(v + F32(0.5))).astype(np.uint8)
    else:  # quantize_row_q4_1_impl: make_qkx3_quants under weights qw * sqrt(sigma2 + x^2)
        wt = (qw * np.sqrt(sigma2[:, None] + x * x)).astype(F32)
        d, the_min, q = make_qkx_quants(np.ascontiguousarray(x.T), np.ascontiguousarray(wt.T), 15, -0.9, 0.05,
                                        36, v3=True)
        mn, q = -the_min, q.T
    y["d"], y["m"] = _fp16(d), _fp16(mn)
    y["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return y


def _quantize_q5_0(x, qw=None, sigma2=None):  # (nb, 32) -> (nb,) BLOCK_Q5_0
    y = np.zeros(len(x), dtype=BLOCK_Q5_0)
    if qw is None:  # quantize_row_q5_0_ref: as Q4_0 with 32 levels
        mx = x[np.arange(len(x)), np.argmax(np.abs(x), axis=1)]
        d = mx / F32(-16)
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, F32(1) / d, F32(0)).astype(F32)
        q = np.minimum(31, np.trunc(x * inv[:, None] + F32(16.5))).astype(np.uint8)
    else:  # quantize_row_q5_0_impl
        wt = qw * np.sqrt(sigma2[:, None] + x * x)
        d, q = make_qx_quants(np.ascontiguousarray(x.T), 16, np.ascontiguousarray(wt.T))
        q = q.T.astype(np.uint8)
    y["d"] = _fp16(d)
    y["qs"], y["qh"] = _pack_q5(q)
    return y


def _quantize_q5_1(x, qw=None, sigma2=None):  # (nb, 32) -> (nb,) BLOCK_Q5_1
    y = np.zeros(len(x), dtype=BLOCK_Q5_1)
    if qw is None:  # quantize_row_q5_1_ref
        d, mn, v = _minmax_grid(x, 31)
        q = np.trunc(v + F32(0.5)).astype(np.uint8)
    else:  # quantize_row_q5_1_impl
        wt = (qw * np.sqrt(sigma2[:, None] + x * x)).astype(F32)
        d, the_min, q = make_qkx_quants(np.ascontiguousarray(x.T), np.ascontiguousarray(wt.T), 31, -0.9, 0.05,
                                        36, v3=True)
        mn, q = -the_min, q.T
    y["d"], y["m"] = _fp16(d), _fp16(mn)
    y["qs"], y["qh"] = _pack_q5(q)
    return y


# ------------------------------------------------------------------ Q4_K / Q5_K
def _pack_scales_k4(ls, lm):  # (nb, 8) uint8 6-bit scales and mins -> (nb, 12) uint8
    s = np.zeros((len(ls), 12), dtype=np.uint8)
    s[:, 0:4] = ls[:, 0:4]
    s[:, 4:8] = lm[:, 0:4]
    s[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    s[:, 0:4] |= (ls[:, 4:8] >> 4) << 6
    s[:, 4:8] |= (lm[:, 4:8] >> 4) << 6
    return s


def _fit_k8(x, qw, nmax, rmin, rdelta, nstep):  # (nb, 256) -> d, dmin (nb,) fp16, ls, lm (nb, 8), L (nb, 8, 32)
    """Q4_K / Q5_K: 8 sub-blocks of 32 on an asymmetric nmax grid, their scales and mins on 6 bits
    against fp16 d and dmin (quantize_row_q{4,5}_K_ref; quantize_row_q{4,5}_K_impl with qw)."""
    nb = len(x)
    xs = np.ascontiguousarray(x.reshape(nb * 8, 32).T)                               # (32, nb*8) sub-blocks
    if qw is None:  # the reference: weights av_x + |x|, make_qkx2_quants, max-based 6-bit scales
        av_x = np.sqrt(_seqsum(xs * xs) / F32(32))
        w = av_x + np.abs(xs)
        scales, mins, L = make_qkx_quants(xs, w, nmax, rmin, rdelta, nstep)
        scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
        max_scale = np.maximum(scales.max(axis=1), F32(0))
        max_min = np.maximum(mins.max(axis=1), F32(0))
        with np.errstate(divide="ignore"):
            inv_scale = np.where(max_scale > 0, F32(63) / max_scale, F32(0)).astype(F32)
            inv_min = np.where(max_min > 0, F32(63) / max_min, F32(0)).astype(F32)
        ls = np.minimum(63, nearest_int(inv_scale[:, None] * scales) & 0xFF).astype(np.uint8)  # uint8 cast
        lm = np.minimum(63, nearest_int(inv_min[:, None] * mins) & 0xFF).astype(np.uint8)
        d, dmin = _fp16(max_scale / F32(63)), _fp16(max_min / F32(63))
    else:  # the importance-weighted variant: make_qkx3_quants, then make_qp_quants on the scales
        xt = np.ascontiguousarray(x.T)                                               # (256, nb)
        sigma2 = F32(2) * _seqsum(xt * xt) / F32(QK_K)                               # (nb,)
        qwt = np.ascontiguousarray(qw.reshape(-1, 32).T)                             # (32, nb*8)
        w = (qwt * np.sqrt(np.repeat(sigma2, 8) + xs * xs)).astype(F32)
        sw = np.ascontiguousarray(_seqsum(w).reshape(nb, 8).T)                       # (8, nb)
        scales, mins, L = make_qkx_quants(xs, w, nmax, -0.9, 0.05, 36, v3=True)
        d_block, ls = make_qp_quants(np.ascontiguousarray(scales.reshape(nb, 8).T), sw, 63)
        m_block, lm = make_qp_quants(np.ascontiguousarray(mins.reshape(nb, 8).T), sw, 63)
        ls, lm = ls.T, lm.T
        d, dmin = _fp16(d_block), _fp16(m_block)
    dj = d.astype(F32)[:, None] * ls.astype(F32)                                     # (nb, 8)
    dm = dmin.astype(F32)[:, None] * lm.astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int((x.reshape(nb, 8, 32) + dm[:, :, None]) / dj[:, :, None]), 0, nmax)
    L = np.where(dj[:, :, None] != 0, l, L.T.reshape(nb, 8, 32)).astype(np.uint8)    # d == 0: keep the fit
    return d, dmin, ls, lm, L


def _quantize_q4_k(x, qw=None):  # (nb, 256) -> (nb,) BLOCK_Q4_K
    nb = len(x)
    d, dmin, ls, lm, L = _fit_k8(x, qw, 15, -1.0, 0.1, 20)
    y = np.zeros(nb, dtype=BLOCK_Q4_K)
    y["d"], y["dmin"] = d, dmin
    y["scales"] = _pack_scales_k4(ls, lm)
    L = L.reshape(nb, 4, 2, 32)                                                      # 64-chunks, low/high
    y["qs"] = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(nb, 128)
    return y


def _quantize_q5_k(x, qw=None):  # (nb, 256) -> (nb,) BLOCK_Q5_K
    nb = len(x)
    d, dmin, ls, lm, L = _fit_k8(x, qw, 31, -0.5, 0.1, 15)
    y = np.zeros(nb, dtype=BLOCK_Q5_K)
    y["d"], y["dmin"] = d, dmin
    y["scales"] = _pack_scales_k4(ls, lm)
    lo, hi = (L & 0xF).reshape(nb, 4, 2, 32), (L >> 4).reshape(nb, 8, 32)            # sub-block j: qh bit j
    y["qs"] = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(nb, 128)
    y["qh"] = np.packbits(hi.transpose(0, 2, 1), axis=2, bitorder="little").reshape(nb, 32)
    return y


# ------------------------------------------------------------------ Q2_K / Q3_K
def _pack_crumbs(L):  # (nb, 256) 2-bit codes -> (nb, 64): byte l of 128-chunk c holds 4 runs of 32
    L = L.reshape(len(L), 2, 4, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)).reshape(len(L), 64)


def _quantize_q2_k(x, qw=None):  # (nb, 256) -> (nb,) BLOCK_Q2_K
    """16 sub-blocks of 16 on an asymmetric 2-bit grid; scale and min of each on 4 bits against fp16
    d and dmin (quantize_row_q2_K_ref: make_qkx2_quants with weights |x| and absolute error;
    quantize_row_q2_K_impl with importance weights: make_qkx3_quants, then make_qp_quants)."""
    nb = len(x)
    xs = np.ascontiguousarray(x.reshape(nb * 16, 16).T)                              # (16, nb*16)
    if qw is None:
        scales, mins, L = make_qkx_quants(xs, np.abs(xs), 3, -0.5, 0.1, 15, use_mad=True)
        scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
        max_scale = np.maximum(scales.max(axis=1), F32(0))
        max_min = np.maximum(mins.max(axis=1), F32(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            ls = nearest_int((F32(15) / max_scale)[:, None] * scales) & 0xFF
            lm = nearest_int((F32(15) / max_min)[:, None] * mins) & 0xFF
        ls = np.where((max_scale > 0)[:, None], ls, 0)
        lm = np.where((max_min > 0)[:, None], lm, 0)
        d, dmin = _fp16(max_scale / F32(15)), _fp16(max_min / F32(15))
    else:
        xt = np.ascontiguousarray(x.T)                                               # (256, nb)
        sigma2 = _seqsum(xt * xt) / F32(QK_K)                                        # (nb,)
        qwt = np.ascontiguousarray(qw.reshape(-1, 16).T)                             # (16, nb*16)
        w = (qwt * np.sqrt(np.repeat(sigma2, 16) + xs * xs)).astype(F32)
        sw = np.ascontiguousarray(_seqsum(w).reshape(nb, 16).T)                      # (16, nb)
        scales, mins, L = make_qkx_quants(xs, w, 3, -0.9, 0.05, 36, v3=True)
        dm, ls = make_qp_quants(np.ascontiguousarray(scales.reshape(nb, 16).T), sw, 15)
        mm, lm = make_qp_quants(np.ascontiguousarray(mins.reshape(nb, 16).T), sw, 15)
        ls, lm = ls.T, lm.T
        d, dmin = _fp16(dm), _fp16(mm)
    sc = ((ls & 0xFF) | ((lm << 4) & 0xFF)).astype(np.uint8)                         # (nb, 16)
    dj = d.astype(F32)[:, None] * (sc & 0xF).astype(F32)
    mj = dmin.astype(F32)[:, None] * (sc >> 4).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int((x.reshape(nb, 16, 16) + mj[:, :, None]) / dj[:, :, None]), 0, 3)
    L = np.where(dj[:, :, None] != 0, l, L.T.reshape(nb, 16, 16)).astype(np.uint8)
    y = np.zeros(nb, dtype=BLOCK_Q2_K)
    y["scales"], y["d"], y["dmin"] = sc, d, dmin
    y["qs"] = _pack_crumbs(L.reshape(nb, QK_K))
    return y


def make_q3_quants(x, nmax):  # (n, R) -> scale (R,), L (n, R) in [0, 2 nmax)
    """Symmetric grid l in [-nmax, nmax-1] from iscale = -nmax / max, then up to 5 passes of
    coordinate descent on each code under weights x^2 (ggml's make_q3_quants, do_rmse)."""
    if _COMPILED[0]:
        scale, L = ggml_fit.q3_rows(_rows(x), nmax)
        return scale, L.T
    n, R = x.shape
    mx = x[np.argmax(np.abs(x), axis=0), np.arange(R)]
    zero = np.abs(mx) < GROUP_MAX_EPS
    mx = np.where(zero, F32(1), mx).astype(F32)
    L = np.clip(nearest_int((F32(-nmax) / mx) * x), -nmax, nmax - 1).astype(F32)     # (n, R)
    w = x * x
    wx = w * x
    sumlx, suml2 = _seqsum(wx * L), _seqsum(w * L * L)
    for _ in range(5):  # a pass that changes nothing leaves the block as it is: extra passes are no-ops
        for i in range(n):
            wi, li = w[i], L[i]
            slx = sumlx - wx[i] * li
            sl2 = suml2 - wi * li * li
            with np.errstate(all="ignore"):
                new_l = np.clip(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1).astype(F32)
            slx2 = slx + wx[i] * new_l
            sl22 = sl2 + wi * new_l * new_l
            take = (slx > 0) & (new_l != li) & (sl22 > 0) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            L[i] = np.where(take, new_l, li)
            sumlx = np.where(take, slx2, sumlx).astype(F32)
            suml2 = np.where(take, sl22, suml2).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(suml2 > 0, sumlx / suml2, F32(0)).astype(F32)
    L = (L + nmax).astype(np.int8)
    scale[zero] = 0
    L[:, zero] = 0
    return scale, L


def _quantize_q3_k(x, qw=None):  # (nb, 256) -> (nb,) BLOCK_Q3_K
    """16 sub-blocks of 16, symmetric 3-bit codes (2 bits in qs, the third in hmask), 6-bit signed
    sub-scales against one fp16 d (quantize_row_q3_K_ref: make_q3_quants and a max-based scale grid;
    quantize_row_q3_K_impl with importance weights: make_qx_quants at both levels)."""
    nb = len(x)
    xs = np.ascontiguousarray(x.reshape(nb * 16, 16).T)                              # (16, nb*16)
    if qw is None:
        scales, L = make_q3_quants(xs, 4)
        scales = scales.reshape(nb, 16)
        max_scale = scales[np.arange(nb), np.argmax(np.abs(scales), axis=1)]
        ok = max_scale != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            iscale = np.where(ok, F32(-32) / max_scale, F32(0)).astype(F32)
            d = _fp16(np.where(ok, F32(1) / iscale, F32(0)))
        l = (nearest_int(iscale[:, None] * scales) & 0xFF).astype(np.uint8).view(np.int8)  # (int8_t) cast
        ls = np.where(ok[:, None], np.clip(l, -32, 31) + 32, 0).astype(np.uint8)
    else:
        xt = np.ascontiguousarray(x.T)
        sigma2 = F32(2) * _seqsum(xt * xt) / F32(QK_K)
        qwt = np.ascontiguousarray(qw.reshape(-1, 16).T)
        w = (qwt * np.sqrt(np.repeat(sigma2, 16) + xs * xs)).astype(F32)
        sw = np.ascontiguousarray(_seqsum(w).reshape(nb, 16).T)                      # (16, nb)
        scales, L = make_qx_quants(xs, 4, w)
        d_block, ls = make_qx_quants(np.ascontiguousarray(scales.reshape(nb, 16).T), 32, sw)
        ls, d = ls.T.astype(np.uint8), _fp16(d_block)
    s = np.zeros((nb, 12), dtype=np.uint8)
    s[:, 0:8] = (ls[:, 0:8] & 0xF) | ((ls[:, 8:16] & 0xF) << 4)
    hi = (ls >> 4).reshape(nb, 4, 4)                                                 # [j // 4, j % 4]
    s[:, 8:12] = hi[:, 0] | (hi[:, 1] << 2) | (hi[:, 2] << 4) | (hi[:, 3] << 6)
    dj = d.astype(F32)[:, None] * (ls.astype(np.int8) - np.int8(32)).astype(F32)      # (nb, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int(x.reshape(nb, 16, 16) / dj[:, :, None]), -4, 3) + 4
    L = np.where(dj[:, :, None] != 0, l, L.T.reshape(nb, 16, 16)).astype(np.uint8).reshape(nb, QK_K)
    y = np.zeros(nb, dtype=BLOCK_Q3_K)
    y["scales"], y["d"] = s, d
    y["hmask"] = np.packbits((L > 3).reshape(nb, 8, 32).transpose(0, 2, 1), axis=2, bitorder="little").reshape(nb, 32)
    y["qs"] = _pack_crumbs(L & 3)
    return y


# ------------------------------------------------------------------ Q6_K
def _quantize_q6_k(x, qw=None):  # (nb, 256) -> (nb,) BLOCK_Q6_K
    nb = len(x)
    qws = None if qw is None else np.ascontiguousarray(qw.reshape(-1, 16).T)
    scales, L = make_qx_quants(np.ascontiguousarray(x.reshape(nb * 16, 16).T), 32, qws)
    scales, L = scales.reshape(nb, 16), L.T.reshape(nb, 16, 16)
    idx = np.argmax(np.abs(scales), axis=1)
    max_scale = scales[np.arange(nb), idx]
    empty = np.abs(max_scale) < GROUP_MAX_EPS
    max_scale = np.where(empty, F32(1), max_scale).astype(F32)
    iscale = F32(-128) / max_scale
    d = _fp16(F32(1) / iscale)
    sc = (np.minimum(127, nearest_int(iscale[:, None] * scales)) & 0xFF).astype(np.uint8).view(np.int8)
    dj = d.astype(F32)[:, None] * sc.astype(F32)                                     # (nb, 16)
    with np.errstate(divide="ignore", invalid="ignore"):
        l = np.clip(nearest_int(x.reshape(nb, 16, 16) / dj[:, :, None]), -32, 31) + 32
    L = np.where(dj[:, :, None] != 0, l, L).astype(np.uint8).reshape(nb, 2, 4, 32)  # 128-chunks of 4 runs
    y = np.zeros(nb, dtype=BLOCK_Q6_K)
    lo = L & 0xF
    y["ql"] = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)],
                             axis=2).reshape(nb, 128)
    hi = L >> 4
    y["qh"] = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(nb, 64)
    y["scales"] = sc
    y["d"] = d
    y[empty] = np.zeros(1, dtype=BLOCK_Q6_K)
    return y


# the block types minillm writes (it reads every type in formats.GGML_BLOCKS: ggml_blocks.py)
QUANTIZERS = {"q8_0": _quantize_q8_0, "q4_0": _quantize_q4_0, "q4_1": _quantize_q4_1, "q5_0": _quantize_q5_0,
              "q5_1": _quantize_q5_1, "q2_K": _quantize_q2_k, "q3_K": _quantize_q3_k, "q4_K": _quantize_q4_k,
              "q5_K": _quantize_q5_k, "q6_K": _quantize_q6_k}
ROW_IMATRIX = ("q4_0", "q4_1", "q5_0", "q5_1")   # their weights use sigma2 = mean x^2 of the whole row


def _check_fmt(fmt):
    if fmt not in QUANTIZERS:
        raise ValueError(f"fmt: expected one of {sorted(QUANTIZERS)}, got {fmt!r}")
    return GGML_BLOCKS[fmt]


def quantize_blocks(w, fmt, imatrix=None, reference=False):  # (N, K) float -> (N, K/block) structured blocks
    """Quantize each row of w into ggml blocks of format fmt. imatrix (K,): optional importance of
    each input channel (e.g. mean x^2 over calibration activations); Q8_0 ignores it, as ggml does.
    reference=True runs the NumPy fitting routines instead of their Numba versions (same bytes)."""
    _COMPILED[0] = not reference
    try:
        return _quantize_blocks(w, fmt, imatrix)
    finally:
        _COMPILED[0] = True


def _quantize_blocks(w, fmt, imatrix):
    dtype, bs = _check_fmt(fmt)
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype.kind != "f":
        raise ValueError(f"w: expected a 2-D float array, got shape {w.shape} dtype {w.dtype}")
    N, K = w.shape
    if K % bs:
        raise ValueError(f"w: {fmt} needs the row length to be a multiple of {bs}, got {K}")
    w = np.ascontiguousarray(w, dtype=F32)
    if not np.all(np.isfinite(w)):
        raise ValueError("w: contains NaN or Inf")
    qw = None
    if imatrix is not None and fmt != "q8_0":
        qw = np.asarray(imatrix, dtype=F32)
        if qw.shape != (K,):
            raise ValueError(f"imatrix: expected shape ({K},), got {qw.shape}")
    out = np.empty((N, K // bs), dtype=dtype)
    rows = max(1, _CHUNK * QK_K // K)
    for r0 in range(0, N, rows):
        x = w[r0:r0 + rows]                                                          # (n, K)
        n = len(x)
        if qw is None:
            y = QUANTIZERS[fmt](x.reshape(-1, bs))
        elif fmt in ROW_IMATRIX:
            sigma2 = np.repeat(_seqsum(np.ascontiguousarray((x * x).T)) / F32(K), K // bs)
            y = QUANTIZERS[fmt](x.reshape(-1, bs), np.tile(qw, n).reshape(-1, bs), sigma2)
        else:
            y = QUANTIZERS[fmt](x.reshape(-1, bs), np.tile(qw, n))
        out[r0:r0 + n] = y.reshape(n, K // bs)
    return out
