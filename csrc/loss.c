/* csrc/loss.c -- fused log-softmax cross-entropy with PaLM's z-loss (Chowdhery et al. 2022,
 * Sec. 5).
 * Reference: minillm/kernels/reference.py:cross_entropy.
 *
 *   lse_i    = m_i + log sum_v exp(logits_iv - m_i),   m_i = max_v logits_iv
 *   loss_i   = lse_i - logits[i, t_i] + z_loss lse_i^2
 *   dlogits  = grad_scale (softmax_i (1 + 2 z_loss lse_i) - onehot(t_i))
 *
 * Three passes over a row of V logits: the max; exp(logit - max) written straight into dlogits
 * while summing; one scaling of that row by grad_scale (1 + 2 z lse) / sum. Never forms a
 * separate probability array, which for V = 50257 is 200 KB per row. Rows are independent:
 * threads split them. dlogits may be logits itself (the gradient overwrites the logits, saving a
 * second (N, V) array): the target's logit is read first, and every other element is read before
 * it is written.
 */
#include <math.h>
#include <string.h>
#include "loss.h"
#include "fastmath.inc"

void cross_entropy(float* loss, float* dlogits, const float* logits, const int32_t* targets,
                   int64_t N, int64_t V, float z_loss, float grad_scale) {
    #pragma omp parallel for schedule(static) if (N * V >= 65536)
    for (int64_t i = 0; i < N; i++) {
        const float* x = logits + i * V;                     /* (V,) */
        float* g = dlogits + i * V;                          /* (V,) */
        const int64_t t = targets[i];
        if (t < 0) {                                         /* ignored row */
            loss[i] = 0.0f;
            memset(g, 0, sizeof(float) * V);
            continue;
        }
        const float xt = x[t];                               /* before g (maybe x) is written */
        float m = x[0];
        #pragma omp simd reduction(max : m)
        for (int64_t v = 0; v < V; v++) m = x[v] > m ? x[v] : m;
        float sum = 0.0f;
        #pragma omp simd reduction(+ : sum)
        for (int64_t v = 0; v < V; v++) {
            g[v] = fast_expf(x[v] - m);                      /* subtract the max: no overflow */
            sum += g[v];
        }
        const float lse = m + logf(sum);
        loss[i] = lse - xt + z_loss * lse * lse;
        const float scale = grad_scale * (1.0f + 2.0f * z_loss * lse) / sum;
        #pragma omp simd
        for (int64_t v = 0; v < V; v++) g[v] *= scale;
        g[t] -= grad_scale;
    }
}
