/* csrc/norms.c -- LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019), one row of C
 * channels at a time. Reference: minillm/kernels/reference.py:layernorm_*, rmsnorm_*.
 *
 * Forward is two passes over a row (mean, then the centred variance: the one-pass E[x^2] - E[x]^2
 * cancels catastrophically when |mean| >> std). Backward, with n = (x - mean) * rstd and
 * dn = dy * w, is
 *     LayerNorm: dx = rstd * (dn - mean(dn) - n * mean(dn * n))
 *     RMSNorm:   dx = rstd * (dn - n * mean(dn * n))
 * and dw = sum_rows dy * n (db = sum_rows dy). The column sums run across rows, so with several
 * threads each sums its own rows into a private (C,) buffer and the buffers are added at the end
 * (same order every run for a fixed thread count: deterministic, no atomics).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include "norms.h"
#include "parts.inc"

#define PAR_MIN 32768   /* below N * C elements one thread is faster than waking the others */

/* One row: y = (x - mean) * rstd * w + b; returns its mean and rstd through the pointers. */
void layernorm_row(float* y, float* mean, float* rstd, const float* x, const float* w,
                   const float* b, int64_t C, float eps) {
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < C; c++) sum += x[c];
    const float mu = sum / (float)C;
    float var = 0.0f;
    #pragma omp simd reduction(+ : var)
    for (int64_t c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
    const float rs = 1.0f / sqrtf(var / (float)C + eps);
    #pragma omp simd
    for (int64_t c = 0; c < C; c++) y[c] = (x[c] - mu) * rs * w[c] + b[c];
    *mean = mu;
    *rstd = rs;
}

void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t N, int64_t C, float eps) {
    #pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t r = 0; r < N; r++) layernorm_row(y + r * C, mean + r, rstd + r, x + r * C, w, b, C, eps);
}

/* Adds the per-thread partial column sums part[t][0:C] into dst (C,). */
static void sum_partials(float* dst, const float* part, int nthreads, int64_t C) {
    memset(dst, 0, sizeof(float) * C);
    for (int t = 0; t < nthreads; t++)
        for (int64_t c = 0; c < C; c++) dst[c] += part[t * C + c];
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t N,
                        int64_t C) {
    const int nthreads = N * C >= PAR_MIN ? omp_get_max_threads() : 1;
    float* dw_part = calloc((size_t)(nthreads * C) + 1, sizeof(float));  /* (threads, C) */
    float* db_part = calloc((size_t)(nthreads * C) + 1, sizeof(float));
    if (dw_part == NULL || db_part == NULL) abort();
    #pragma omp parallel num_threads(nthreads)
    {
        float* dwp = dw_part + omp_get_thread_num() * C;
        float* dbp = db_part + omp_get_thread_num() * C;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            const float mu = mean[r], rs = rstd[r];
            float dn_sum = 0.0f, dn_n_sum = 0.0f;       /* sum dn, sum dn * n over the row */
            #pragma omp simd reduction(+ : dn_sum, dn_n_sum)
            for (int64_t c = 0; c < C; c++) {
                const float n = (xr[c] - mu) * rs, dn = dyr[c] * w[c];
                dn_sum += dn;
                dn_n_sum += dn * n;
                dwp[c] += dyr[c] * n;
                dbp[c] += dyr[c];
            }
            const float dn_mean = dn_sum / (float)C, dn_n_mean = dn_n_sum / (float)C;
            float* dxr = dx + r * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++) {
                const float n = (xr[c] - mu) * rs;
                dxr[c] = rs * (dyr[c] * w[c] - dn_mean - n * dn_n_mean);
            }
        }
    }
    sum_partials(dw, dw_part, nthreads, C);
    sum_partials(db, db_part, nthreads, C);
    free(dw_part);
    free(db_part);
}

/* One row: y = x * rstd * w; returns rstd through the pointer. */
void rmsnorm_row(float* y, float* rstd, const float* x, const float* w, int64_t C, float eps) {
    float ss = 0.0f;
    #pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
    const float rs = 1.0f / sqrtf(ss / (float)C + eps);
    #pragma omp simd
    for (int64_t c = 0; c < C; c++) y[c] = x[c] * rs * w[c];
    *rstd = rs;
}

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int64_t C,
                     float eps) {
    #pragma omp parallel for schedule(static) if (N * C >= PAR_MIN)
    for (int64_t r = 0; r < N; r++) rmsnorm_row(y + r * C, rstd + r, x + r * C, w, C, eps);
}

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                      const float* rstd, int64_t N, int64_t C) {
    const int nthreads = N * C >= PAR_MIN ? omp_get_max_threads() : 1;
    float* dw_part = calloc((size_t)(nthreads * C) + 1, sizeof(float));  /* (threads, C) */
    if (dw_part == NULL) abort();
    #pragma omp parallel num_threads(nthreads)
    {
        float* dwp = dw_part + omp_get_thread_num() * C;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < N; r++) {
            const float *xr = x + r * C, *dyr = dy + r * C;
            const float rs = rstd[r];
            float dn_n_sum = 0.0f;
            #pragma omp simd reduction(+ : dn_n_sum)
            for (int64_t c = 0; c < C; c++) {
                const float n = xr[c] * rs;
                dn_n_sum += dyr[c] * w[c] * n;
                dwp[c] += dyr[c] * n;
            }
            const float dn_n_mean = dn_n_sum / (float)C;
            float* dxr = dx + r * C;
            #pragma omp simd
            for (int64_t c = 0; c < C; c++)
                dxr[c] = rs * (dyr[c] * w[c] - xr[c] * rs * dn_n_mean);
        }
    }
    sum_partials(dw, dw_part, nthreads, C);
    free(dw_part);
}
