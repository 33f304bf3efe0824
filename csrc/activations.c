/* csrc/activations.c -- GELU, tanh approximation (Hendrycks & Gimpel 2016; GPT-2's form), and
 * SwiGLU (Shazeer 2020). Reference: minillm/kernels/reference.py:gelu_*, swiglu_*.
 *
 *   gelu(x)   = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   gelu'(x)  = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)
 *   swiglu    = silu(a) b = a sigmoid(a) b
 *   d/da      = dy b s (1 + a (1 - s)),  d/db = dy a s,  s = sigmoid(a)
 *
 * One fused pass each, vectorised through fastmath.inc (exp is the whole cost).
 */
#include <math.h>
#include "activations.h"
#include "parts.inc"
#include "fastmath.inc"

#define GELU_C 0.7978845608028654f   /* sqrt(2 / pi) */
#define PAR_MIN 65536                /* elements below which one thread is faster */
#define SPAN 4096                    /* elements per task of the forward loops (stays in L1/L2) */

/* sigmoid(z) = 1 / (1 + exp(-z)) computed from e = exp(-|z|) in (0, 1], so nothing overflows:
 * z >= 0: 1 / (1 + e);  z < 0: e / (1 + e). The numerator is picked without a float branch
 * (which would stop vectorisation): with sg = copysign(1, z), 0.5 ((1 + sg) + (1 - sg) e).
 * Also returns e, from which sigmoid'(z) = e / (1 + e)^2 follows without cancellation. */
static inline float sigmoid_e(float z, float* e_out) {
    const float e = fast_expf(-fabsf(z));
    const float sg = copysignf(1.0f, z);
    *e_out = e;
    return 0.5f * ((1.0f + sg) + (1.0f - sg) * e) / (1.0f + e);
}

/* GELU through the sigmoid: 0.5 (1 + tanh(u)) = sigmoid(2u) and 1 - tanh(u)^2 = 4 e / (1 + e)^2
 * with e = exp(-2|u|). Written this way, neither 1 + t (t -> -1 for x << 0) nor 1 - t^2 (|t| -> 1)
 * cancels, so the small tails of gelu and gelu' keep their relative accuracy. */
void gelu_span(float* y, const float* x, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i], u = GELU_C * (xi + 0.044715f * xi * xi * xi);
        float e;
        y[i] = xi * sigmoid_e(2.0f * u, &e);                     /* 0.5 x (1 + tanh u) */
    }
}

void gelu_forward(float* y, const float* x, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i += SPAN) gelu_span(y + i, x + i, n - i < SPAN ? n - i : SPAN);
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i], u = GELU_C * (xi + 0.044715f * xi * xi * xi);
        const float du = GELU_C * (1.0f + 3.0f * 0.044715f * xi * xi);
        float e;
        const float s = sigmoid_e(2.0f * u, &e);                /* 0.5 (1 + t) */
        const float sech2 = 4.0f * e / ((1.0f + e) * (1.0f + e));    /* 1 - t^2 */
        dx[i] = dy[i] * (s + 0.5f * xi * sech2 * du);
    }
}

void swiglu_span(float* y, const float* a, const float* b, int64_t n) {
    #pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        float e;
        y[i] = a[i] * sigmoid_e(a[i], &e) * b[i];
    }
}

void swiglu_forward(float* y, const float* a, const float* b, int64_t n) {
    #pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i += SPAN) swiglu_span(y + i, a + i, b + i, n - i < SPAN ? n - i : SPAN);
}

void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* b,
                     int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float e;
        const float ai = a[i], s = sigmoid_e(ai, &e);
        db[i] = dy[i] * ai * s;
        da[i] = dy[i] * b[i] * s * (1.0f + ai * (1.0f - s));
    }
}
