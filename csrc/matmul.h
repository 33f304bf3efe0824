/* csrc/matmul.h -- dense matrix multiply. Reference: minillm/kernels/reference.py:matmul */
#ifndef MINILLM_MATMUL_H
#define MINILLM_MATMUL_H
#include <stdint.h>

/* out (M, N) = x (M, K) @ w (N, K)^T, all float32 row-major (the nn.Linear layout of w). */
void matmul(float* out, const float* x, const float* w, int64_t M, int64_t K, int64_t N);

#endif
