/* csrc/rope.c -- rotary position embedding (Su et al. 2021, RoFormer, eq. 34) in the "rotate half"
 * layout of HF Llama: channel i pairs with i + D/2, and the pair (x1, x2) at time t is rotated by
 * the angle whose cos/sin are cos[t][i], sin[t][i]:
 *     out1 = x1 cos - x2 sin,   out2 = x2 cos + x1 sin.
 * Reference: minillm/kernels/reference.py:rope. Both halves are read before either is written,
 * so out may alias x (rotating in place).
 */
#include "rope.h"
#include "parts.inc"

/* One head vector of D = 2h channels at one position (cos, sin of length h). */
void rope_row(float* o, const float* x, const float* c, const float* s, int64_t h) {
    #pragma omp simd
    for (int64_t i = 0; i < h; i++) {
        const float x1 = x[i], x2 = x[i + h];
        o[i] = x1 * c[i] - x2 * s[i];
        o[i + h] = x2 * c[i] + x1 * s[i];
    }
}

void rope(float* out, const float* x, const float* cos, const float* sin, int64_t R, int64_t T,
          int64_t D) {
    const int64_t h = D / 2;
    #pragma omp parallel for schedule(static) if (R * T * D >= 65536)
    for (int64_t row = 0; row < R * T; row++) {        /* row = (b * H + head) * T + t */
        const int64_t t = row % T;
        rope_row(out + row * D, x + row * D, cos + t * h, sin + t * h, h);
    }
}
