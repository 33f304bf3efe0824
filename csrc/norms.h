/* csrc/norms.h -- LayerNorm and RMSNorm over the last axis of an (N, C) array.
 * Reference: minillm/kernels/reference.py:layernorm_forward, layernorm_backward,
 * rmsnorm_forward, rmsnorm_backward. */
#ifndef MINILLM_NORMS_H
#define MINILLM_NORMS_H
#include <stdint.h>

/* y (N, C), mean (N,), rstd (N,) <- x (N, C), w (C,), b (C,). */
void layernorm_forward(float* y, float* mean, float* rstd, const float* x, const float* w,
                       const float* b, int64_t N, int64_t C, float eps);

/* dx (N, C), dw (C,), db (C,) <- dy (N, C), x (N, C), w (C,), mean (N,), rstd (N,). */
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x,
                        const float* w, const float* mean, const float* rstd, int64_t N, int64_t C);

/* y (N, C), rstd (N,) <- x (N, C), w (C,). */
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* w, int64_t N, int64_t C,
                     float eps);

/* dx (N, C), dw (C,) <- dy (N, C), x (N, C), w (C,), rstd (N,). */
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                      const float* rstd, int64_t N, int64_t C);

#endif
