"""Numba versions of ggml_quants' fitting routines (make_qx_quants, make_qkx2/3_quants,
make_qp_quants, make_q3_quants): the same float32 operations in the same order, written as ggml's
scalar loops over each block instead of NumPy operations across blocks, so that a 135M-parameter
model quantizes in seconds. ggml_quants.py holds the NumPy references, and
tests/quant/test_ggml_fit.py checks these return identical bits.

Each takes blocks as ROWS (R, n) (the NumPy references take columns) and returns the same values.
Every scalar is float32 (np.float32 literals, integer codes converted before they meet a float), so
nothing is promoted to float64; Numba compiles without fast-math, so nothing is reassociated or fused.
"""
import numba
import numpy as np

F32 = np.float32
MAGIC = F32(12582912.0)       # 1.5 * 2^23: nearest_int's rounding constant
EPS = F32(1e-15)              # GROUP_MAX_EPS


@numba.njit(cache=True, error_model="numpy")
def _nint(buf_f, buf_i, v):  # ggml's nearest_int through a float32/int32 view pair
    buf_f[0] = v + MAGIC
    return (buf_i[0] & 0x007FFFFF) - 0x00400000


@numba.njit(cache=True, error_model="numpy")
def qx_rows(x, nmax, qw):  # (R, n) float32, int, (R, n) float32 or empty -> scale (R,), L (R, n) int8
    R, n = x.shape
    scale_out, L = np.zeros(R, np.float32), np.zeros((R, n), np.int8)
    bf = np.zeros(1, np.float32)
    bi = bf.view(np.int32)
    use_qw = qw.shape[0] > 0
    for r in range(R):
        mx, amax = F32(0), F32(0)
        for i in range(n):
            ax = abs(x[r, i])
            if ax > amax:
                amax, mx = ax, x[r, i]
        if amax < EPS:
            continue
        best, scale = F32(0), F32(0)
        for k in range(19):
            iscale = F32(-nmax) / mx if k == 0 else -(F32(nmax) + F32(0.1) * F32(k - 10 if k <= 9 else k - 9)) / mx
            sumlx, suml2 = F32(0), F32(0)
            for i in range(n):
                l = min(nmax - 1, max(-nmax, _nint(bf, bi, iscale * x[r, i])))
                w = qw[r, i] if use_qw else x[r, i] * x[r, i]
                fl = F32(l)
                sumlx += w * x[r, i] * fl
                suml2 += w * fl * fl
            if k == 0:
                scale = sumlx / suml2 if suml2 != 0 else F32(0)
                best = scale * sumlx
            elif not (suml2 > 0 and sumlx * sumlx > best * suml2):
                continue
            else:
                scale = sumlx / suml2
                best = scale * sumlx
            for i in range(n):
                L[r, i] = nmax + min(nmax - 1, max(-nmax, _nint(bf, bi, iscale * x[r, i])))
        scale_out[r] = scale
    return scale_out, L


@numba.njit(cache=True, error_model="numpy")
def qkx_rows(x, w, nmax, rmin, rdelta, nstep, v3, use_mad):  # (R, n) x2 -> scale, the_min (R,), L (R, n) uint8
    R, n = x.shape
    scale_out, min_out, L = np.zeros(R, np.float32), np.zeros(R, np.float32), np.zeros((R, n), np.uint8)
    Laux = np.zeros(n, np.uint8)
    bf = np.zeros(1, np.float32)
    bi = bf.view(np.int32)
    for r in range(R):
        mn, mx, sum_w = x[r, 0], x[r, 0], w[r, 0]
        sum_x = sum_w * x[r, 0]
        for i in range(1, n):
            mn, mx = min(mn, x[r, i]), max(mx, x[r, i])
            sum_w += w[r, i]
            sum_x += w[r, i] * x[r, i]
        if mn > 0:
            mn = F32(0)
        if (v3 and mx <= mn) or (not v3 and mx == mn):
            min_out[r] = -mn
            continue
        iscale = F32(nmax) / (mx - mn)
        scale = F32(1) / iscale
        best = F32(0)
        for i in range(n):
            L[r, i] = max(0, min(nmax, _nint(bf, bi, iscale * (x[r, i] - mn))))
            diff = scale * F32(L[r, i]) + mn - x[r, i]
            best += w[r, i] * (abs(diff) if use_mad else diff * diff)
        for step in range(nstep + 1):
            iscale = (F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / (mx - mn)
            sum_l, sum_l2, sum_xl = F32(0), F32(0), F32(0)
            for i in range(n):
                v = iscale * (x[r, i] - mn)
                if v3:
                    l = _nint(bf, bi, min(v, F32(nmax))) if v > 0 else 0
                else:
                    l = max(0, min(nmax, _nint(bf, bi, v)))
                Laux[i] = l
                fl = F32(l)
                sum_l += w[r, i] * fl
                sum_l2 += w[r, i] * fl * fl
                sum_xl += w[r, i] * fl * x[r, i]
            D = sum_w * sum_l2 - sum_l * sum_l
            if D > 0:
                this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
                this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
                if this_min > 0:
                    this_min = F32(0)
                    this_scale = sum_xl / sum_l2
                cur = F32(0)
                for i in range(n):
                    diff = this_scale * F32(Laux[i]) + this_min - x[r, i]
                    cur += w[r, i] * (abs(diff) if use_mad else diff * diff)
                if cur < best:
                    L[r, :] = Laux
                    best, scale, mn = cur, this_scale, this_min
        scale_out[r], min_out[r] = scale, -mn
    return scale_out, min_out, L


@numba.njit(cache=True, error_model="numpy")
def qp_rows(x, qw, nmax):  # (R, n) non-negative, (R, n) -> scale (R,), L (R, n) uint8
    R, n = x.shape
    scale_out, L = np.zeros(R, np.float32), np.zeros((R, n), np.uint8)
    Li = np.zeros(n, np.int64)
    bf = np.zeros(1, np.float32)
    bi = bf.view(np.int32)
    for r in range(R):
        mx = F32(0)
        for i in range(n):
            mx = max(mx, x[r, i])
        if mx < EPS:
            continue
        iscale = F32(nmax) / mx
        scale = F32(1) / iscale
        best = F32(0)
        for i in range(n):
            diff = x[r, i] - scale * F32(_nint(bf, bi, iscale * x[r, i]))
            best += qw[r, i] * diff * diff
        for k in range(-4, 5):
            if k == 0:
                continue
            iscale_k = (F32(0.1) * F32(k) + F32(nmax)) / mx
            scale_k = F32(1) / iscale_k
            mse = F32(0)
            for i in range(n):
                diff = x[r, i] - scale_k * F32(min(nmax, _nint(bf, bi, iscale_k * x[r, i])))
                mse += qw[r, i] * diff * diff
            if mse < best:
                best, iscale = mse, iscale_k
        sumlx, suml2 = F32(0), F32(0)
        for i in range(n):
            Li[i] = min(nmax, _nint(bf, bi, iscale * x[r, i]))
            fl = F32(Li[i])
            sumlx += qw[r, i] * x[r, i] * fl
            suml2 += qw[r, i] * fl * fl
        for _ in range(5):
            changed = 0
            for i in range(n):
                w, fl = qw[r, i], F32(Li[i])
                slx = sumlx - w * x[r, i] * fl
                sl2 = suml2 - w * fl * fl
                if slx > 0 and sl2 > 0:
                    new_l = min(nmax, _nint(bf, bi, x[r, i] * sl2 / slx))
                    if new_l != Li[i]:
                        fn = F32(new_l)
                        slx += w * x[r, i] * fn
                        sl2 += w * fn * fn
                        if slx * slx * suml2 > sumlx * sumlx * sl2:
                            Li[i], sumlx, suml2 = new_l, slx, sl2
                            changed += 1
            if changed == 0:
                break
        for i in range(n):
            L[r, i] = Li[i]
        scale_out[r] = sumlx / suml2 if suml2 > 0 else F32(0)
    return scale_out, L


@numba.njit(cache=True, error_model="numpy")
def q3_rows(x, nmax):  # (R, n) -> scale (R,), L (R, n) int8 in [0, 2 nmax)
    R, n = x.shape
    scale_out, L = np.zeros(R, np.float32), np.zeros((R, n), np.int8)
    Li = np.zeros(n, np.int64)
    bf = np.zeros(1, np.float32)
    bi = bf.view(np.int32)
    for r in range(R):
        mx, amax = F32(0), F32(0)
        for i in range(n):
            if abs(x[r, i]) > amax:
                amax, mx = abs(x[r, i]), x[r, i]
        if amax < EPS:
            continue
        iscale = F32(-nmax) / mx
        sumlx, suml2 = F32(0), F32(0)
        for i in range(n):
            Li[i] = max(-nmax, min(nmax - 1, _nint(bf, bi, iscale * x[r, i])))
            w, fl = x[r, i] * x[r, i], F32(Li[i])
            sumlx += w * x[r, i] * fl
            suml2 += w * fl * fl
        for _ in range(5):
            changed = 0
            for i in range(n):
                w, fl = x[r, i] * x[r, i], F32(Li[i])
                slx = sumlx - w * x[r, i] * fl
                if slx > 0:
                    sl2 = suml2 - w * fl * fl
                    new_l = max(-nmax, min(nmax - 1, _nint(bf, bi, x[r, i] * sl2 / slx)))
                    if new_l != Li[i]:
                        fn = F32(new_l)
                        slx += w * x[r, i] * fn
                        sl2 += w * fn * fn
                        if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                            Li[i], sumlx, suml2 = new_l, slx, sl2
                            changed += 1
            if changed == 0:
                break
        for i in range(n):
            L[r, i] = Li[i] + nmax
        scale_out[r] = sumlx / suml2 if suml2 > 0 else F32(0)
    return scale_out, L
