/* csrc/activations.c -- GELU, tanh approximation (Hendrycks & Gimpel 2016; GPT-2's form), and
 * SwiGLU (Shazeer 2020). Reference: minillm/kernels/reference.py:gelu_*, swiglu_*.
 *
 *   gelu(x)   = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
 *   gelu'(x)  = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2),  t = tanh(u)
 *   swiglu    = silu(a) b = a sigmoid(a) b
 *   d/da      = dy b s (1 + a (1 - s)),  d/db = dy a s,  s = sigmoid(a)
 *
 * One fused pass each, vectorised through fastmath.inc (tanh and exp are the whole cost).
 */
#include <math.h>
#include "activations.h"
#include "fastmath.inc"

#define GELU_C 0.7978845608028654f   /* sqrt(2 / pi) */
#define PAR_MIN 65536                /* elements below which one thread is faster */

/* sigmoid(a) = 1 / (1 + exp(-a)) computed from e = exp(-|a|) in (0, 1], so nothing overflows:
 * a >= 0: 1 / (1 + e);  a < 0: e / (1 + e). The numerator is picked without a float branch
 * (which would stop vectorisation): with sg = copysign(1, a), 0.5 ((1 + sg) + (1 - sg) e). */
static inline float sigmoidf_(float a) {
    const float e = fast_expf(-fabsf(a));
    const float sg = copysignf(1.0f, a);
    return 0.5f * ((1.0f + sg) + (1.0f - sg) * e) / (1.0f + e);
}

void gelu_forward(float* y, const float* x, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        const float t = fast_tanhf(GELU_C * (xi + 0.044715f * xi * xi * xi));
        y[i] = 0.5f * xi * (1.0f + t);
    }
}

void gelu_backward(float* dx, const float* dy, const float* x, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        const float t = fast_tanhf(GELU_C * (xi + 0.044715f * xi * xi * xi));
        const float du = GELU_C * (1.0f + 3.0f * 0.044715f * xi * xi);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * xi * (1.0f - t * t) * du);
    }
}

void swiglu_forward(float* y, const float* a, const float* b, int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] * sigmoidf_(a[i]) * b[i];
}

void swiglu_backward(float* da, float* db, const float* dy, const float* a, const float* b,
                     int64_t n) {
    #pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float ai = a[i], s = sigmoidf_(ai);
        db[i] = dy[i] * ai * s;
        da[i] = dy[i] * b[i] * s * (1.0f + ai * (1.0f - s));
    }
}
