/* csrc/optim.c -- fused AdamW update (Loshchilov & Hutter 2019, Alg. 2), and the sum of squares
 * that gradient clipping's global norm adds up.
 * Reference: minillm/kernels/reference.py:adamw_step, sum_squares. One pass over p, g, m, v instead
 * of the seven temporaries NumPy needs; bias corrections are folded into two scalars, and gradient
 * clipping's scale factor into the read of g (no separate pass scaling every gradient). */
#include <math.h>
#include "optim.h"

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int step, float grad_scale) {
    const float bc1 = 1.0f - powf(beta1, (float)step);   /* m_hat = m / bc1 */
    const float bc2 = 1.0f - powf(beta2, (float)step);   /* v_hat = v / bc2 */
    const float inv_bc1 = 1.0f / bc1, inv_bc2 = 1.0f / bc2;
    #pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;          /* gradient clipping's factor, folded in */
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps) + weight_decay * p[i]);
    }
}

/* sum_i x[i]^2 accumulated in double, as the reference's float64 dot: one read of x instead of
 * NumPy's float64 copy of every gradient and a dot over it. */
double sum_squares(const float* x, int64_t n) {
    double total = 0.0;
    #pragma omp parallel for simd reduction(+ : total) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}
