/* csrc/matmul.h -- dense matrix multiply. Reference: minillm/kernels/reference.py:matmul */
#ifndef MINILLM_MATMUL_H
#define MINILLM_MATMUL_H
#include <stdint.h>

/* out (M, N) = x (M, K) @ w (N, K)^T, all float32 row-major (the nn.Linear layout of w). */
void matmul(float* out, const float* x, const float* w, int64_t M, int64_t K, int64_t N);

/* outs[i] (M, Ns[i]) = x (M, K) @ ws[i] (Ns[i], K)^T for i < count, in one parallel region when
 * M is small (decode): the projections of a layer that share their input. */
void matmul_group(float* const* outs, const float* x, const float* const* ws, const int64_t* Ns,
                  int64_t count, int64_t M, int64_t K);

#endif
